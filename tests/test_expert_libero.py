"""The LIBERO-Long scripted expert on the real simulator.

Pinned outcomes were measured by running the expert (bench/expert_scores.py) at the default protocol;
a change in the env's physics, success check or action conversion (or in the expert) shows up here.
The default run plays one short episode to success with the cameras blanked (the expert reads no
images; rendering changes no simulator state) and checks that a replay is bitwise the same; longer pins
are marked slow.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("robosuite")
gym = pytest.importorskip("gymnasium")

import vla_gym  # noqa: E402,F401
from policies.expert import PRIVILEGED_KEY, ExpertAgent  # noqa: E402
from policies.experts.libero import Planner, grasp_spec  # noqa: E402
from policies.experts.libero_scene import EXTRA_KEYS, privileged  # noqa: E402
from policies.experts.motion import quat_wxyz_to_mat  # noqa: E402
from policies.experts.rollout import cameras_blanked, run_expert_episode  # noqa: E402

PER_TASK = 50
# (task, init state) -> success, measured with the expert at the default protocol ("vlm4vla")
FAST_EPISODE = (0, 0)
# measured through the harness (10 tasks x init states 0-9, cameras off: 85/100) and in-process
SLOW_PINS: dict[tuple[int, int], bool] = {
    (1, 0): True,
    (1, 1): False,  # the cream cheese box is not lifted, twice
    (2, 0): True,
    (2, 2): True,
    (3, 0): True,
    (3, 1): True,
    (4, 0): True,
    (4, 1): False,  # the yellow-and-white mug is not lifted
    (5, 0): True,
    (6, 0): True,
    (7, 0): True,
    (7, 4): False,  # the alphabet soup can is not lifted
    (8, 0): True,
    (9, 0): False,  # the mug ends on top of the microwave: its region is under the roof (not handled)
}


@pytest.fixture(scope="module")
def env():
    e = gym.make("VLA/LiberoLong-v0")
    yield e
    e.close()


def test_planner_refuses_a_privileged_state_without_scene_keys(env) -> None:
    env.reset(options={"episode": 0})
    planner = Planner(env.unwrapped.protocol.to_dict())
    with pytest.raises(KeyError, match="scene geometry"):
        planner.act({}, {"objects": {}, "robot": {}})
    state = privileged(env)  # the env's own privileged_state(), checked to carry the scene geometry
    assert set(EXTRA_KEYS) <= set(state)
    assert "basket_1_contain_region" in state["sites"]
    assert state["boxes"]["alphabet_soup_1"]["half"].shape == (3,)
    assert np.all(state["boxes"]["alphabet_soup_1"]["half"] > 0.005)
    # eef_quat is wxyz: the hand at its home pose points down (its z axis is -world z)
    assert quat_wxyz_to_mat(state["robot"]["eef_quat"])[2, 2] < -0.95
    # copies: editing the returned arrays does not move anything in the simulator
    state["sites"]["basket_1_contain_region"]["pos"][:] = 99.0
    state["robot_base"][:] = 99.0
    again = env.unwrapped.privileged_state()
    assert np.all(again["sites"]["basket_1_contain_region"]["pos"] < 10) and np.all(again["robot_base"] < 10)
    with pytest.raises(KeyError, match="scene geometry"):
        privileged(type("Bare", (), {"unwrapped": type("E", (), {"privileged_state": lambda self: {}})()})())
    # a can is grasped across its short side, near its top
    local, yaw = grasp_spec(state, "alphabet_soup_1", 0.0)
    assert np.isfinite(yaw) and abs(yaw) <= np.pi / 2 + 1e-9
    assert local.shape == (3,)


def test_expert_solves_an_episode_and_replays_bitwise(env) -> None:
    task, init = FAST_EPISODE
    episode = task * PER_TASK + init
    first = run_expert_episode(env, episode, render=False)
    assert first.success, (first.stage, first.failure, first.steps)
    assert first.failure is None
    assert first.steps < env.unwrapped.protocol.max_steps
    # the env's own camera switch (what `+env.kwargs.render_cameras=false` gives the harness): same actions
    with pytest.warns(UserWarning, match="every image is black"):
        env_off = gym.make("VLA/LiberoLong-v0", render_cameras=False)
    try:
        off = run_expert_episode(env_off, episode)
        assert np.array_equal(off.actions, first.actions) and off.success
        obs, _ = env_off.reset(options={"episode": episode})
        assert obs["image"].shape == obs["wrist_image"].shape == (224, 224, 3) and obs["image"].max() == 0
    finally:
        env_off.close()
    # replay the first 40 steps: the same plan gives bitwise the same actions
    agent = ExpertAgent()
    agent.configure("libero_long", env.unwrapped.protocol.to_dict())
    with cameras_blanked(env):
        obs, _ = env.reset(options={"episode": episode})
        agent.reset([0])
        for step in range(40):
            batch = {k: [v] if isinstance(v, str) else np.asarray(v)[None] for k, v in obs.items()}
            batch[PRIVILEGED_KEY] = [env.unwrapped.privileged_state()]
            action = agent.act(batch, [0])[0, 0]
            assert np.array_equal(action, first.actions[step]), step
            obs, *_ = env.step(action)
            assert obs["image"].max() == 0, "the cameras were not blanked"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(SLOW_PINS))
def test_pinned_outcomes(env, key: tuple[int, int]) -> None:
    task, init = key
    result = run_expert_episode(env, task * PER_TASK + init, render=False)
    assert result.success is SLOW_PINS[key], (result.stage, result.failure, result.steps)


@pytest.mark.slow
def test_rendering_does_not_change_the_outcome(env) -> None:
    task, init = FAST_EPISODE
    blanked = run_expert_episode(env, task * PER_TASK + init, render=False)
    rendered = run_expert_episode(env, task * PER_TASK + init, render=True)
    assert rendered.success == blanked.success
    assert np.array_equal(rendered.actions, blanked.actions)
