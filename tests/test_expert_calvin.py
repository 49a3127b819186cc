"""The CALVIN scripted expert: real PyBullet rollouts with pinned outcomes (a regression oracle for the env).

The pinned numbers were measured by running the expert (``bench/expert_scores_calvin_bridge.py calvin``);
a change to the env's physics, success checks or action conversion, or to the expert, shows up here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401
from policies.experts import planner_class
from policies.experts.calvin import Planner, current_task, plan
from policies.experts.calvin_scene import SceneView
from policies.experts.local_loop import run_episode


@pytest.fixture(scope="module")
def calvin_env(shared_data: Path):
    env = gym.make("VLA/Calvin-v0", protocol="vlm4vla_static", data_dir=str(shared_data / "calvin"))
    yield env
    env.close()


def test_planner_is_registered() -> None:
    assert planner_class("calvin") is Planner


def test_chain0_first_subtasks_pinned(calvin_env) -> None:
    """Chain 0 (rendered images): rotate_blue_block_right then move_slider_right, in pinned step counts."""
    out = run_episode(calvin_env, Planner, 0, max_steps=153)
    got = [(s.task, s.success, s.steps) for s in out.subtasks]
    assert got[:2] == [("rotate_blue_block_right", True, 82), ("move_slider_right", True, 71)]
    assert all(s.failure is None for s in out.subtasks)


def test_every_task_gets_a_plan(calvin_env) -> None:
    """From chain 0's scene every one of the 34 tasks yields phases (or a named 'plan' failure)."""
    from tasks.calvin import TASK_NAMES

    calvin_env.reset(options={"episode": 0})
    view = SceneView.from_privileged(calvin_env.unwrapped.privileged_state())
    needs_held = {"place_in_slider", "place_in_drawer", "stack_block", "unstack_block"}
    for task in TASK_NAMES:
        if task in needs_held:
            continue  # nothing is held or stacked at a chain's start
        phases = plan(task, view)
        assert phases, task


def _push_scene(state: dict, x: float) -> SceneView:
    """``state`` with the drawer reported open, block_red alone on the table at ``x`` and the others elsewhere."""
    state = copy.deepcopy(state)
    table = state["body_ids"]["table"]
    for block in state["blocks"].values():
        block["contacts"] = [(table, state["table_links"]["plank_link"])]  # in the compartment: not pushable
    state["blocks"]["block_red"].update(pos=np.array([x, -0.12, 0.46]), orn=np.array([0.0, 0.0, 0.0, 1.0]),
                                        contacts=[(table, -1)])
    return SceneView.from_privileged(state)


def test_push_into_drawer_takes_blocks_over_the_drawer_inside(calvin_env) -> None:
    """A block at the usual table spot x = 0.05 is over the drawer's inside (0.004 .. 0.356): it gets a plan;
    one at x = -0.05 would land beside the drawer: a named 'plan' failure."""
    calvin_env.reset(options={"episode": 0})
    state = calvin_env.unwrapped.privileged_state()
    for x in (0.05, 0.18, 0.37):  # 0.37: over the right wall, it lands on or brushes it
        assert plan("push_into_drawer", _push_scene(state, x)), x
    with pytest.raises(Exception, match="no block on the table in front of the drawer"):
        plan("push_into_drawer", _push_scene(state, -0.05))


def test_fixture_geometry_follows_the_links(calvin_env) -> None:
    """The env's fixture points move with their joints, and the drawer's inside matches its collision walls."""
    import pybullet as p

    calvin_env.reset(options={"episode": 0})
    env = calvin_env.unwrapped
    a = SceneView.from_privileged(env.privileged_state())
    # step with the arm still: the doors do not move, and reading the state twice changes nothing
    for _ in range(2):
        calvin_env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    b = SceneView.from_privileged(env.privileged_state())
    np.testing.assert_allclose(b.drawer_handle(), a.drawer_handle(b.drawer), atol=1e-6)
    np.testing.assert_allclose(a.drawer_handle(a.drawer + 0.1) - a.drawer_handle(), [0.0, -0.1, 0.0], atol=1e-6)
    np.testing.assert_allclose(a.slide_knob(a.slide + 0.1) - a.slide_knob(), [-0.1, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a.switch_axis), 1.0, atol=1e-6)
    assert a.switch_knob()[2] < a.switch_knob(a.switch + 0.05)[2]  # the switch knob slides up its slope to turn on
    assert a.button_top[2] > 0.46 and a.fixtures["button"].threshold == pytest.approx(0.01)
    # a ray across the drawer at mid-height hits its side walls at the reported inside x-extent
    lo, hi = a.drawer_inside()
    mid = (lo + hi) / 2 + np.array([0.0, 0.0, 0.02])
    cid = env.world.table.cid
    for wall_x, far in ((lo[0], -1.0), (hi[0], 1.0)):
        hit = p.rayTest(mid.tolist(), (mid + np.array([far, 0.0, 0.0])).tolist(), physicsClientId=cid)[0]
        assert hit[0] == env.world.table.table and abs(hit[3][0] - wall_x) < 0.003, (hit, wall_x)


def test_bad_input_is_named() -> None:
    with pytest.raises(KeyError, match="privileged state lacks"):
        SceneView.from_privileged({"tcp_pos": [0, 0, 0]})
    with pytest.raises(KeyError, match="cannot tell the CALVIN task"):
        current_task({"language": "dance"}, {})
    assert current_task({"language": "pull the handle to open the drawer"}, {}) == "open_drawer"


def test_no_plan_is_reported_as_failure(calvin_env) -> None:
    calvin_env.reset(options={"episode": 0, "task": "place_in_drawer"})
    planner = Planner({})
    action = planner.act({"language": ""}, calvin_env.unwrapped.privileged_state())
    assert planner.failure == "plan"
    assert action.shape == (7,) and np.all(action[:6] == 0)


@pytest.mark.slow
def test_first_chains_pinned_and_deterministic(calvin_env) -> None:
    """Chains 0..4 end with pinned lengths; a second run sends bitwise the same actions."""
    outs = [run_episode(calvin_env, Planner, k) for k in range(5)]
    assert [o.metrics["chain_length"] for o in outs] == [5, 3, 5, 5, 5]
    again = run_episode(calvin_env, Planner, 1)
    assert again.actions_digest == outs[1].actions_digest
