"""The SimplerEnv-Bridge scripted expert: real ManiSkill3 rollouts with pinned outcomes.

Runs on the assets under the test data folder (three of its files are stand-ins: flat table boxes and the
eggplant's visual mesh), with the ``vlm4vla_fast`` protocol (224x224 rendering). Outcomes were measured by
running the expert.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401
from policies.experts import planner_class
from policies.experts.local_loop import run_episode
from policies.experts.simpler_bridge import BridgeView, Planner


@pytest.fixture(scope="module")
def bridge_env(shared_data: Path):
    env = gym.make("VLA/SimplerBridge-v0", protocol="vlm4vla_fast", assets_dir=str(shared_data / "bridge"))
    yield env
    env.close()


def test_planner_is_registered() -> None:
    assert planner_class("simpler_bridge") is Planner


def test_missing_state_is_named() -> None:
    with pytest.raises(KeyError, match="privileged state lacks"):
        BridgeView.from_privileged({"tcp_pose_in_base": np.zeros(7)})


def test_carrot_episode_succeeds(bridge_env) -> None:
    """carrot_on_plate episode 0 (plan index 24): grasped, placed, success at the final (60th) step."""
    out = run_episode(bridge_env, Planner, 24)
    assert out.success
    assert out.metrics["grasped_any"] is True
    assert out.subtasks[-1].steps == 60 and out.subtasks[-1].stage == "done" and out.subtasks[-1].failure is None
    state = bridge_env.unwrapped.privileged_state()
    assert np.linalg.norm(state["source_pose"][:2] - state["target_pose"][:2]) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("episode", [0, 1, 23, 25, 48, 49, 72, 74, 95])
def test_more_episodes_succeed(bridge_env, episode: int) -> None:
    """Episodes of each task (spoon, carrot turned 90 degrees, stack, eggplant; 23 and 95: the last spoon and
    eggplant episodes) end in success, as 91 of the 4 x 24 did through the harness (the eggplant's
    episode_ids 1, 4, 7, 16 and 19 fail: there the eggplant has rolled where the top-down grasp misses)."""
    out = run_episode(bridge_env, Planner, episode)
    assert out.success, (episode, out.subtasks[-1])
