"""CALVIN fidelity: replaying the reference traces reproduces the original environment bit for bit.

Each trace was recorded from the original environment in a fresh process: reset to a chain's initial
condition, 150 relative actions, robot_obs / scene_obs after every step, the 34 task checks (start = state
after the reset) after every step, and TinyRenderer images (static 200, gripper 84) every 30 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401 - registers the envs
from tasks.calvin import TASK_NAMES
from vla_gym.calvin import predicates
from vla_gym.calvin.conditions import scene_obs_for
from vla_gym.calvin.world import CalvinWorld

TRACES = ("trace_0_sine.npz", "trace_1_button.npz", "trace_2_grasp_red.npz")


@pytest.fixture(scope="module")
def calvin_dir(shared_data: Path) -> Path:
    return shared_data / "calvin"


def _load(calvin_dir: Path, name: str) -> dict:
    with np.load(calvin_dir / "golden" / name) as data:
        return {k: data[k] for k in data.files}


def _flags(start: predicates.Snapshot, now: predicates.Snapshot, names: np.ndarray) -> np.ndarray:
    return np.array([predicates.CHECKS[str(n)](start, now) for n in names])


def _replay_world(world: CalvinWorld, trace: dict) -> None:
    """Reset to the trace's condition, replay its actions and assert every recorded quantity exactly."""
    world.reset_to(scene_obs_for(json.loads(str(trace["initial_condition"]))))
    snap = lambda: predicates.snapshot(world.cid, world.robot.uid, world.table)  # noqa: E731
    start = snap()
    img_steps = [int(s) for s in trace["img_steps"]]

    def check_state(step: int) -> None:
        np.testing.assert_array_equal(world.robot.observation(), trace["robot_obs"][step], err_msg=f"robot_obs step {step}")
        np.testing.assert_array_equal(world.table.observation(), trace["scene_obs"][step], err_msg=f"scene_obs step {step}")
        if step in img_steps:
            k = img_steps.index(step)
            assert world.cameras is not None
            np.testing.assert_array_equal(world.cameras.static(), trace["rgb_static"][k], err_msg=f"static step {step}")
            np.testing.assert_array_equal(world.cameras.gripper(), trace["rgb_gripper"][k], err_msg=f"gripper step {step}")

    check_state(0)
    for i, action in enumerate(trace["actions"]):
        world.step(action.astype(np.float32))
        check_state(i + 1)
        flags = _flags(start, snap(), trace["task_names"])
        np.testing.assert_array_equal(flags, trace["solved"][i], err_msg=f"task checks step {i + 1}")


def test_trace_task_names_are_ours(calvin_dir: Path) -> None:
    trace = _load(calvin_dir, TRACES[0])
    assert tuple(str(n) for n in trace["task_names"]) == TASK_NAMES
    assert set(predicates.CHECKS) == set(TASK_NAMES)


@pytest.mark.parametrize("name", TRACES)
def test_golden_trace_exact(calvin_dir: Path, name: str) -> None:
    trace = _load(calvin_dir, name)
    # The traces solve some tasks: the comparison covers positives as well as negatives.
    assert trace["solved"].any()
    world = CalvinWorld(calvin_dir)
    try:
        _replay_world(world, trace)
    finally:
        world.close()


def test_history_does_not_leak_into_the_next_episode(calvin_dir: Path) -> None:
    """Chain k's physics must not depend on what ran before in the same world (stale contacts)."""
    world = CalvinWorld(calvin_dir)
    try:
        first, second = _load(calvin_dir, TRACES[2]), _load(calvin_dir, TRACES[1])
        world.reset_to(scene_obs_for(json.loads(str(first["initial_condition"]))))
        for action in first["actions"][:60]:  # grasp and start lifting: leaves contacts behind
            world.step(action.astype(np.float32))
        _replay_world(world, second)
        _replay_world(world, second)  # and the same chain twice in a row
    finally:
        world.close()


def test_golden_trace_through_env_step(calvin_dir: Path) -> None:
    """The same exactness through gym.make / reset(options) / step, with float32 actions."""
    trace = _load(calvin_dir, TRACES[1])
    condition = json.loads(str(trace["initial_condition"]))
    env = gym.make(
        "VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static", action_mode="native",
        protocol_overrides={"max_steps_per_subtask": 1000},
    )
    try:
        env.reset(options={"condition": condition, "task": "stack_block"})
        base = env.unwrapped
        np.testing.assert_array_equal(base.privileged_state()["robot_obs"], trace["robot_obs"][0])
        for i, action in enumerate(trace["actions"]):
            sent = action.astype(np.float32)
            before = sent.copy()
            _, _, terminated, truncated, _ = env.step(sent)
            assert not (terminated or truncated)
            np.testing.assert_array_equal(sent, before)  # the caller's action is never modified
            state = base.privileged_state()
            np.testing.assert_array_equal(state["robot_obs"], trace["robot_obs"][i + 1], err_msg=f"step {i + 1}")
            np.testing.assert_array_equal(state["scene_obs"], trace["scene_obs"][i + 1], err_msg=f"step {i + 1}")
        np.testing.assert_array_equal(base.world.cameras.static(), trace["rgb_static"][-1])
    finally:
        env.close()
