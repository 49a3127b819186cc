"""CALVIN fidelity: replaying the reference traces reproduces the original environment bit for bit.

Each trace was recorded from the original environment (calvin_env 1431a46) in a fresh process: reset to a
chain's initial condition, 150 relative actions sent as float32 arrays, robot_obs / scene_obs after every step,
the 34 task checks (start = state after the reset) after every step, and images (static 200, gripper 84) every
30 steps from two runs: TinyRenderer (``rgb_static``/``rgb_gripper``) and EGL (``rgb_static_egl``/...).
Trace i starts from the initial condition of evaluation chain i.
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
from vla_gym.calvin.conditions import load_chains, scene_obs_for
from vla_gym.calvin.world import CalvinWorld
from vla_gym.images import resize_square

TRACES = ("trace_0_sine.npz", "trace_1_button.npz", "trace_2_grasp_red.npz")
IMAGE_KEYS = {"tiny": ("rgb_static", "rgb_gripper"), "egl": ("rgb_static_egl", "rgb_gripper_egl")}


@pytest.fixture(scope="module")
def calvin_dir(shared_data: Path) -> Path:
    return shared_data / "calvin"


def _load(calvin_dir: Path, name: str) -> dict:
    with np.load(calvin_dir / "golden" / name) as data:
        return {k: data[k] for k in data.files}


def _flags(start: predicates.Snapshot, now: predicates.Snapshot, names: np.ndarray) -> np.ndarray:
    return np.array([predicates.CHECKS[str(n)](start, now) for n in names])


def _replay_world(world: CalvinWorld, trace: dict) -> None:
    """Reset to the trace's condition, replay its actions and assert every recorded quantity exactly.

    Both cameras are rendered after every step, as the original does (EGL's images depend on the render count).
    """
    world.reset_to(scene_obs_for(json.loads(str(trace["initial_condition"]))))
    snap = lambda: predicates.snapshot(world.cid, world.robot.uid, world.table)  # noqa: E731
    start = snap()
    img_steps = [int(s) for s in trace["img_steps"]]
    static_key, gripper_key = IMAGE_KEYS[world.renderer]

    def check_state(step: int) -> None:
        np.testing.assert_array_equal(world.robot.observation(), trace["robot_obs"][step], err_msg=f"robot_obs step {step}")
        np.testing.assert_array_equal(world.table.observation(), trace["scene_obs"][step], err_msg=f"scene_obs step {step}")
        images = world.observe_images(gripper=True)
        if step in img_steps:
            k = img_steps.index(step)
            np.testing.assert_array_equal(images["static"], trace[static_key][k], err_msg=f"{static_key} step {step}")
            np.testing.assert_array_equal(images["gripper"], trace[gripper_key][k], err_msg=f"{gripper_key} step {step}")

    check_state(0)
    for i, action in enumerate(trace["actions"]):
        assert action.dtype == np.float32
        world.step(action)
        check_state(i + 1)
        flags = _flags(start, snap(), trace["task_names"])
        np.testing.assert_array_equal(flags, trace["solved"][i], err_msg=f"task checks step {i + 1}")


def _chain_of(calvin_dir: Path, trace: dict) -> int:
    condition = json.loads(str(trace["initial_condition"]))
    return next(k for k, (cond, _) in enumerate(load_chains(calvin_dir)) if cond == condition)


def test_trace_task_names_are_ours(calvin_dir: Path) -> None:
    trace = _load(calvin_dir, TRACES[0])
    assert tuple(str(n) for n in trace["task_names"]) == TASK_NAMES
    assert set(predicates.CHECKS) == set(TASK_NAMES)
    assert str(trace["action_dtype"]) == "float32"


@pytest.mark.parametrize("renderer", ["egl", "tiny"])
@pytest.mark.parametrize("name", TRACES)
def test_golden_trace_exact(calvin_dir: Path, name: str, renderer: str) -> None:
    trace = _load(calvin_dir, name)
    # The traces solve some tasks: the comparison covers positives as well as negatives.
    assert trace["solved"].any()
    world = CalvinWorld(calvin_dir, renderer=renderer)
    try:
        _replay_world(world, trace)
    finally:
        world.close()


@pytest.mark.parametrize("renderer", ["egl", "tiny"])
def test_history_does_not_leak_into_the_next_episode(calvin_dir: Path, renderer: str) -> None:
    """Chain k's physics and images must not depend on what ran before in the same world (stale contacts,
    EGL's render count)."""
    world = CalvinWorld(calvin_dir, renderer=renderer)
    try:
        first, second = _load(calvin_dir, TRACES[2]), _load(calvin_dir, TRACES[1])
        world.reset_to(scene_obs_for(json.loads(str(first["initial_condition"]))))
        for action in first["actions"][:60]:  # grasp and start lifting: leaves contacts behind
            world.step(action)
            world.observe_images(gripper=True)
        _replay_world(world, second)
        _replay_world(world, second)  # and the same chain twice in a row
    finally:
        world.close()


@pytest.mark.parametrize("name", TRACES)
def test_golden_trace_through_the_public_api(calvin_dir: Path, name: str) -> None:
    """The default protocol through gym.make / reset(episode=k) / step with contract actions: robot_obs,
    scene_obs, proprio and both EGL images (as the 224 observations) at every recorded step."""
    trace = _load(calvin_dir, name)
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), proprio=True)
    base = env.unwrapped
    assert base.protocol.name == "vlm4vla" and base.protocol.renderer == "egl"
    img_steps = [int(s) for s in trace["img_steps"]]
    size, interp = base.protocol.image_size, base.protocol.resize_interpolation

    def check(step: int, obs: dict) -> None:
        state = base.privileged_state()
        np.testing.assert_array_equal(state["robot_obs"], trace["robot_obs"][step], err_msg=f"robot_obs step {step}")
        np.testing.assert_array_equal(state["scene_obs"], trace["scene_obs"][step], err_msg=f"scene_obs step {step}")
        np.testing.assert_array_equal(obs["proprio"], trace["robot_obs"][step].astype(np.float32))
        if step in img_steps:
            k = img_steps.index(step)
            want_static = resize_square(trace["rgb_static_egl"][k], size, interp)
            want_gripper = resize_square(trace["rgb_gripper_egl"][k], size, interp)
            np.testing.assert_array_equal(obs["image"], want_static, err_msg=f"image step {step}")
            np.testing.assert_array_equal(obs["wrist_image"], want_gripper, err_msg=f"wrist_image step {step}")

    try:
        env.reset(options={"episode": 0})  # another chain first: the trace's chain must not see it
        env.step(np.zeros(7, dtype=np.float32))
        obs, info = env.reset(options={"episode": _chain_of(calvin_dir, trace)})
        check(0, obs)
        for i, action in enumerate(trace["actions"]):
            sent = action.copy()
            obs, _, terminated, truncated, _ = env.step(sent)
            np.testing.assert_array_equal(sent, action)  # the caller's action is never modified
            check(i + 1, obs)
            assert not truncated
            if terminated:  # a chain that ends inside the trace (never for the shared traces)
                break
    finally:
        env.close()


def test_static_only_protocol_renders_the_same_static_images(calvin_dir: Path) -> None:
    """Without the gripper camera, EGL's render count is kept as if it were rendered: same static images."""
    trace = _load(calvin_dir, TRACES[0])
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static")
    base = env.unwrapped
    try:
        obs, _ = env.reset(options={"episode": _chain_of(calvin_dir, trace)})
        assert "wrist_image" not in obs
        want = [resize_square(img, 224, "linear") for img in trace["rgb_static_egl"][:2]]
        np.testing.assert_array_equal(obs["image"], want[0])
        for action in trace["actions"][:30]:
            obs, *_ = env.step(action)
        np.testing.assert_array_equal(obs["image"], want[1])
        assert base.protocol_digest != gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir)).unwrapped.protocol_digest
    finally:
        env.close()


def test_warm_renderer_state_has_shadows_from_the_first_image(calvin_dir: Path) -> None:
    """``vlm4vla_warm``: the first image of a chain is rendered as a long-running original renders its later
    chains (shadows), unlike the recorded first image; from the next render on both agree."""
    trace = _load(calvin_dir, TRACES[0])
    world = CalvinWorld(calvin_dir, renderer="egl", renderer_state="warm")
    try:
        world.reset_to(scene_obs_for(json.loads(str(trace["initial_condition"]))))
        first = world.observe_images(gripper=True)
        changed = (first["static"] != trace["rgb_static_egl"][0]).any(-1).sum()
        assert changed > 1000  # the shadows of the robot and the table
        for action in trace["actions"][:30]:
            world.step(action)
            images = world.observe_images(gripper=True)
        np.testing.assert_array_equal(images["static"], trace["rgb_static_egl"][1])
        np.testing.assert_array_equal(images["gripper"], trace["rgb_gripper_egl"][1])
    finally:
        world.close()
