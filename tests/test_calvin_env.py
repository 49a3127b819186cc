"""CALVIN env API: chains, subtask hand-over, the single-task form, observations, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401 - registers the envs
from tasks.calvin import INSTRUCTIONS, TASK_NAMES
from vla_gym.calvin.conditions import load_chains, scene_obs_for
from vla_gym.calvin.world import CalvinWorld


@pytest.fixture(scope="module")
def calvin_dir(shared_data: Path) -> Path:
    return shared_data / "calvin"


@pytest.fixture(scope="module")
def env(calvin_dir: Path):
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol_overrides={"max_steps_per_subtask": 4})
    yield env
    env.close()


@pytest.fixture(scope="module")
def trace0(calvin_dir: Path) -> dict:
    with np.load(calvin_dir / "golden" / "trace_0_sine.npz") as data:
        return {k: data[k] for k in data.files}


def test_spaces_attributes_and_first_observation(env, calvin_dir: Path) -> None:
    base = env.unwrapped
    assert base.benchmark == "calvin" and base.protocol.name == "vlm4vla"
    assert len(base.episode_plan) == 1000 and base.episode_plan[7].within_task == 7
    assert base.protocol_digest == base.protocol.digest
    obs, info = env.reset(options={"episode": 3})
    condition, tasks = load_chains(calvin_dir)[3]
    assert obs["image"].shape == (224, 224, 3) and obs["image"].dtype == np.uint8
    assert obs["wrist_image"].shape == (224, 224, 3)
    assert obs["language"] == INSTRUCTIONS[tasks[0]]
    assert env.observation_space.contains(obs)
    assert info["episode"] == 3 and info["task"] == tasks[0] and info["task_index"] == TASK_NAMES.index(tasks[0])
    assert info["success"] is False and info["subtask_index"] == 0 and info["subtask_changed"] is True
    assert env.unwrapped.chain_tasks == tuple(tasks) and "chain_tasks" not in info  # info is fixed-shape
    # The image is the static camera's 200x200 render resized to 224 (not black, not constant).
    assert obs["image"].std() > 10


def test_failed_subtask_ends_the_chain_with_metrics(env, calvin_dir: Path) -> None:
    _, info = env.reset(options={"episode": 5})
    tasks = load_chains(calvin_dir)[5][1]
    for step in range(1, 5):
        _, reward, terminated, truncated, info = env.step(np.zeros(7))
        assert not truncated and reward == 0.0
        assert terminated == (step == 4)
        assert info["subtask_step"] == step and info["steps"] == step
    assert info["success"] is False
    assert info["episode_metrics"] == {
        "chain_length": 0, "chain_tasks": list(tasks), "subtask_success": [False], "subtask_steps": [4],
        "action_out_of_range_steps": 0,
    }
    json.dumps(info["episode_metrics"])
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))


def test_chain_hands_over_subtasks_without_reset(calvin_dir: Path, trace0: dict) -> None:
    """Reference trace 0 turns the lightbulb off at step 26 and closes the drawer by step 90."""
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static", action_mode="native")
    try:
        condition = json.loads(str(trace0["initial_condition"]))
        obs, info = env.reset(options={"condition": condition, "tasks": ["turn_off_lightbulb", "close_drawer"]})
        assert "wrist_image" not in obs and info["episode"] == -1
        changes = []
        for i, action in enumerate(trace0["actions"]):
            obs, reward, terminated, _, info = env.step(action)
            if info["subtask_changed"]:
                changes.append(i + 1)
                assert obs["language"] == INSTRUCTIONS["close_drawer"] and reward == 1.0
                assert info["chain_length"] == 1 and info["task"] == "close_drawer"
                assert info["subtask_step"] == 0 and info["subtask_index"] == 1
            if terminated:
                break
        assert changes == [26]
        assert terminated and info["success"] is True and i + 1 == 90
        assert info["episode_metrics"] == {
            "chain_length": 2, "chain_tasks": ["turn_off_lightbulb", "close_drawer"],
            "subtask_success": [True, True], "subtask_steps": [26, 64],
            # the reference trace's sine actions leave [-1, 1] at times: they ran as they are, and are counted
            "action_out_of_range_steps": int(np.sum(np.any(np.abs(trace0["actions"][:90]) > 1.0, axis=1))),
        }
        assert info["episode_metrics"]["action_out_of_range_steps"] > 0
    finally:
        env.close()


def test_single_task_form_and_seeded_choice(env, calvin_dir: Path) -> None:
    obs, info = env.reset(options={"task": "open_drawer", "episode": 2})
    assert obs["language"] == "pull the handle to open the drawer"
    assert info["episode"] == 2 and env.unwrapped.chain_tasks == ("open_drawer",)
    first = env.unwrapped.privileged_state()["scene_obs"]
    np.testing.assert_array_equal(first, env.unwrapped.privileged_state()["scene_obs"])
    _, info_a = env.reset(seed=11)
    _, info_b = env.reset(seed=11)
    assert info_a["episode"] == info_b["episode"] and 0 <= info_a["episode"] < 1000


def test_gripper_threshold_is_counted_and_proprio(calvin_dir: Path) -> None:
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static", proprio=True)
    try:
        obs, _ = env.reset(options={"episode": 0})
        assert obs["proprio"].shape == (15,) and obs["proprio"].dtype == np.float32
        obs, _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, -0.3]))
        assert info["gripper_thresholded"] == 1
        assert obs["proprio"][14] == -1.0  # last gripper command: closed
        _, _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.int64))
        assert info["gripper_thresholded"] == 1
        # declared range [-1, 1]: outside it the action still runs unclipped, and is counted
        assert env.action_space.low.tolist() == [-1.0] * 7 and env.action_space.high.tolist() == [1.0] * 7
        before = env.unwrapped.world.robot.target_pos.copy()
        _, _, _, _, info = env.step(np.array([1.5, 0, 0, 0, 0, 0, 1]))
        assert info["action_out_of_range_steps"] == 1
        assert env.unwrapped.world.robot.target_pos[0] - before[0] == pytest.approx(1.5 * 0.02, abs=1e-6)
    finally:
        env.close()


@pytest.mark.parametrize(
    "action, error",
    [
        (np.array([0, 0, 0, 0, 0, np.nan, 1.0]), "non-finite"),
        (np.zeros(6), "shape"),
        (np.zeros((1, 7)), "shape"),
        (["a"] * 7, "real numbers"),
    ],
)
def test_bad_actions(env, action, error) -> None:
    env.reset(options={"episode": 0})
    with pytest.raises(ValueError, match=error):
        env.step(action)


def test_native_mode_needs_exact_gripper(calvin_dir: Path) -> None:
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static", action_mode="native")
    try:
        env.reset(options={"episode": 0})
        with pytest.raises(ValueError, match="exactly"):
            env.step(np.array([0, 0, 0, 0, 0, 0, 0.5]))
    finally:
        env.close()


@pytest.mark.parametrize(
    "options, exc, match",
    [
        ({"episode": 1000}, ValueError, "not in the vlm4vla plan of calvin"),
        ({"episode": -1}, ValueError, "not in the vlm4vla plan of calvin"),
        ({"task": "open_the_fridge"}, KeyError, "unknown CALVIN task"),
        ({"tasks": ["open_drawer", "fly"]}, KeyError, "unknown CALVIN task"),
        ({"condition": {"led": 1}}, ValueError, "needs 'task'"),
        ({"condition": {"led": 1}, "task": "open_drawer"}, KeyError, "lacks"),
        ({"episod": 3}, KeyError, "unknown reset option"),
    ],
)
def test_bad_reset_options(env, options, exc, match) -> None:
    with pytest.raises(exc, match=match):
        env.reset(options=options)


def test_privileged_state(env) -> None:
    env.reset(options={"episode": 0})
    state = env.unwrapped.privileged_state()
    assert set(state["blocks"]) == {"block_red", "block_blue", "block_pink"}
    assert state["body_ids"] == {"robot": 0, "table": 5, "plane": 6, "block_red": 2, "block_blue": 3, "block_pink": 4}
    np.testing.assert_allclose(state["tcp_pos"], state["robot_obs"][:3])
    assert state["lights"]["lightbulb"] in (0, 1) and state["tasks"] == list(env.unwrapped.chains[0][1])


def test_button_modes(calvin_dir: Path) -> None:
    """Trace 1 presses the button with the LED on: at 1431a46 the first press re-'turns on' the LED, with the
    fix it turns it off."""
    with np.load(calvin_dir / "golden" / "trace_1_button.npz") as data:
        actions, condition = data["actions"], json.loads(str(data["initial_condition"]))
    led = {}
    for mode in ("1431a46", "fixed"):
        world = CalvinWorld(calvin_dir, button_mode=mode)
        world.reset_to(scene_obs_for(condition))
        states = []
        for action in actions:
            world.step(action)
            states.append(world.table.lights["led"].state)
        world.close()
        led[mode] = states
    assert condition["led"] == 1
    assert set(led["1431a46"]) == {1}
    assert led["fixed"][-1] == 0 and led["fixed"][0] == 1


def test_check_env_contract(calvin_dir: Path) -> None:
    from gymnasium.utils.env_checker import check_env

    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def _reset_in_child(data_dir: str, queue) -> None:  # noqa: ANN001 - a multiprocessing queue
    env = gym.make("VLA/Calvin-v0", data_dir=data_dir, protocol="vlm4vla_static")
    try:
        env.reset(options={"episode": 0})
        queue.put("reset")
    except Exception as exc:  # noqa: BLE001 - the error is what the test reads
        queue.put(f"{type(exc).__name__}: {exc}")


def test_egl_is_not_started_by_construction_and_a_forked_child_is_told_why_it_cannot_render(calvin_dir) -> None:
    """gymnasium's AsyncVectorEnv builds an env in the parent and then forks: construction must not start EGL.
    A child forked after the parent rendered gets a clear error instead of hanging."""
    import multiprocessing

    from vla_gym.calvin import world as world_module

    ctx = multiprocessing.get_context("fork")
    env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static")
    assert env.unwrapped._world is None  # nothing rendered, no EGL context yet
    queue = ctx.Queue()
    env.reset(options={"episode": 0})
    assert world_module._EGL_PID is not None
    child = ctx.Process(target=_reset_in_child, args=(str(calvin_dir), queue))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    message = queue.get(timeout=5)
    assert message.startswith("EGLUnavailableError") and "spawn" in message
    env.close()


def test_cameras_off_changes_nothing_but_the_images(calvin_dir) -> None:
    rng = np.random.default_rng(3)
    actions = rng.uniform(-1, 1, size=(12, 7)).astype(np.float32)
    actions[:, 6] = 1.0
    states = []
    for render in (True, False):
        env = gym.make("VLA/Calvin-v0", data_dir=str(calvin_dir), protocol="vlm4vla_static", render_cameras=render)
        obs, _ = env.reset(options={"episode": 5})
        assert obs["image"].any() == render
        for action in actions:
            obs, *_ = env.step(action)
        assert obs["image"].shape == (224, 224, 3) and obs["image"].any() == render
        states.append(env.unwrapped.privileged_state()["scene_obs"].tolist()
                      + env.unwrapped.privileged_state()["robot_obs"].tolist())
        env.close()
    assert states[0] == states[1]
