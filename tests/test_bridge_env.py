"""VLA/SimplerBridge-v0 on real ManiSkill3 scenes (stand-in assets from the test data folder).

One env (``fast`` protocol: 224x224 renders) is shared by the module; the default 640x480 protocol gets
one env of its own for the resize check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401  (registers the envs)
from tasks.simpler_bridge import INSTRUCTIONS, TASK_NAMES
from vla_gym.bridge.layouts import LAYOUTS
from vla_gym.contract import EpisodeOverError

OPEN = np.array([0, 0, 0, 0, 0, 0, 1.0])


def _tree_state(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.fixture(scope="module")
def bridge_tree(shared_data: Path) -> Path:
    return shared_data / "bridge"


@pytest.fixture(scope="module")
def env(bridge_tree: Path) -> Iterator[gym.Env]:
    before = _tree_state(bridge_tree)
    e = gym.make("VLA/SimplerBridge-v0", protocol="fast", assets_dir=bridge_tree, proprio=True)
    yield e
    e.close()
    assert _tree_state(bridge_tree) == before, (
        "building and running scenes must not write into the asset folder"
    )


def _run_to_end(env: gym.Env, action: np.ndarray = OPEN) -> tuple[list[bool], dict]:
    successes, truncated, info = [], False, {}
    while not truncated:
        _, reward, terminated, truncated, info = env.step(action)
        assert terminated is False  # the protocol runs every episode to truncation
        assert reward == float(info["success"])
        successes.append(info["success"])
    return successes, info


def test_env_attributes_record_assets_and_protocol(env: gym.Env) -> None:
    u = env.unwrapped
    assert u.benchmark == "simpler_bridge"
    assert u.protocol.name == "vlm4vla_fast" and u.protocol_digest == u.protocol.digest
    assert len(u.episode_plan) == 96
    assert u.assets_are_standins and len(u.standin_files) == 3
    assert len(u.asset_digest) == 16
    assert "wrist_image" not in env.observation_space.spaces
    assert env.observation_space["proprio"].shape == (7,)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_builds_resets_to_layouts_and_steps(env: gym.Env, task: str) -> None:
    u = env.unwrapped
    layouts = LAYOUTS[task]
    builds = None
    for episode_id in (0, 1, 23):
        obs, info = env.reset(options={"task": task, "episode_id": episode_id})
        assert obs["image"].shape == (224, 224, 3) and obs["image"].dtype == np.uint8
        assert obs["language"] == INSTRUCTIONS[task]
        assert obs["proprio"].shape == (7,) and np.all(np.isfinite(obs["proprio"]))
        assert env.observation_space.contains(obs)
        assert (info["task"], info["episode_id"], info["episode"], info["success"]) == (
            task,
            episode_id,
            -1,
            False,
        )
        builds = u.scene_builds if builds is None else builds
        state = u.privileged_state()
        expected = layouts.pose(episode_id)
        # objects settle where SimplerEnv's layout for this id puts them (within settling drift)
        for name in (layouts.source, layouts.target):
            if name == "dummy_sink_target_plane":
                continue  # the invisible target plane drops into the basket from above
            got = state["object_poses"][name][:2]
            # the eggplant, dropped with SimplerEnv's bare-yaw orientations, rolls up to ~8 cm once its
            # rotation is unlocked; the other objects drop close to rest
            tol = 0.09 if task == "eggplant_in_basket" else 0.02
            assert np.linalg.norm(got - expected[name][0][:2]) < tol, (task, episode_id, name, got)
    # the plan index reaches the same layout
    k = TASK_NAMES.index(task) * 24 + 23
    _, info = env.reset(options={"episode": k})
    assert (info["task"], info["episode_id"], info["episode"]) == (task, 23, k)
    np.testing.assert_array_equal(
        u.privileged_state()["object_poses"][layouts.source], state["object_poses"][layouts.source]
    )
    for _ in range(3):
        obs, _, _, truncated, info = env.step(np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.05, 1.0]))
        assert not truncated and info["elapsed_steps"] >= 1
    assert u.scene_builds == builds  # one scene per task, reused for every episode


@pytest.mark.parametrize("task", TASK_NAMES)
def test_teleporting_source_onto_target_succeeds_at_final_step(env: gym.Env, task: str) -> None:
    u = env.unwrapped
    env.reset(options={"task": task, "episode_id": 7})
    state = u.privileged_state()
    lift = abs(state["target_bbox_size"][2]) / 2 + abs(state["source_bbox_size"][2]) / 2 + 0.01
    u.teleport_object(state["source_name"], state["target_pose"][:3] + [0.0, 0.0, lift])
    successes, info = _run_to_end(env)
    assert len(successes) == u.protocol.max_steps_for(task)
    assert info["success"] is True
    assert info["episode_metrics"] == {
        "grasped_any": False,
        "grasped_consecutive": False,
        "gripper_clipped_steps": 0,
        "action_out_of_range_steps": 0,
        "asset_digest": u.asset_digest,
        "assets_are_standins": True,  # the test asset tree has stand-in files
    }
    with pytest.raises(EpisodeOverError):
        env.step(OPEN)


@pytest.mark.parametrize(
    "task", [*TASK_NAMES[:3], pytest.param("eggplant_in_basket", marks=pytest.mark.slow)]
)
def test_do_nothing_episode_stays_unsuccessful(env: gym.Env, task: str) -> None:
    env.reset(options={"task": task, "episode_id": 2})
    successes, info = _run_to_end(env)
    assert len(successes) == env.unwrapped.protocol.max_steps_for(task)
    assert not any(successes)
    assert info["episode_metrics"]["grasped_any"] is False


def test_reused_env_matches_fresh_env_bitwise(env: gym.Env, bridge_tree: Path) -> None:
    rng = np.random.default_rng(0)
    env.reset(options={"episode": 30})
    for _ in range(10):  # move the arm and close the gripper, so the next reset has something to undo
        env.step(np.r_[rng.uniform(-0.03, 0.03, 3), rng.uniform(-0.2, 0.2, 3), -1.0])
    reused_obs, _ = env.reset(options={"episode": 29})
    reused = env.unwrapped.privileged_state()
    fresh_env = gym.make("VLA/SimplerBridge-v0", protocol="fast", assets_dir=bridge_tree)
    try:
        fresh_obs, _ = fresh_env.reset(options={"episode": 29})
        fresh = fresh_env.unwrapped.privileged_state()
    finally:
        fresh_env.close()
    np.testing.assert_array_equal(reused_obs["image"], fresh_obs["image"])
    for key in ("source_pose", "target_pose", "tcp_pose", "gripper_qpos"):
        np.testing.assert_array_equal(reused[key], fresh[key], err_msg=key)


def test_contract_rotation_equals_native_axis_angle(env: gym.Env) -> None:
    u = env.unwrapped
    rpy = np.array([0.05, -0.04, 0.1])
    contract = np.r_[0.01, -0.01, 0.005, rpy, -1.0]
    native = u.to_native_action(contract)
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(native[3:6], Rotation.from_euler("xyz", rpy).as_rotvec(), atol=1e-6)
    np.testing.assert_array_equal(native[[0, 1, 2, 6]], contract[[0, 1, 2, 6]].astype(np.float32))
    env.reset(options={"episode": 24})
    for _ in range(3):
        env.step(contract)
    tcp_contract = u.privileged_state()["tcp_pose"]
    u.action_mode = "native"
    try:
        env.reset(options={"episode": 24})
        for _ in range(3):
            env.step(native)
        tcp_native = u.privileged_state()["tcp_pose"]
    finally:
        u.action_mode = "contract"
    np.testing.assert_array_equal(tcp_contract, tcp_native)
    assert u.privileged_state()["gripper_openness"] < 0.9  # -1 closed the gripper


def test_gripper_beyond_one_is_counted(env: gym.Env) -> None:
    env.reset(options={"episode": 25})
    _, _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, 2.0]))
    assert info["gripper_clipped_steps"] == 1
    _, _, _, _, info = env.step(OPEN)
    assert info["gripper_clipped_steps"] == 1


def test_bad_input_gives_clear_errors(env: gym.Env) -> None:
    env.reset(options={"episode": 26})
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match=r"not in the \w+ plan of simpler_bridge"):
        env.reset(options={"episode": 96})
    with pytest.raises(KeyError, match="unknown simpler_bridge task"):
        env.reset(options={"task": "sponge_on_towel", "episode_id": 0})
    with pytest.raises(ValueError, match="needs 'task'"):
        env.reset(options={"episode_id": 3})
    with pytest.raises(ValueError, match="episode_id must be in 0..23"):
        env.reset(options={"task": "stack_cube", "episode_id": 24})
    with pytest.raises(KeyError, match="unknown reset option"):
        env.reset(options={"episodes": 3})


def test_seed_picks_the_same_episode(env: gym.Env) -> None:
    _, a = env.reset(seed=123)
    _, b = env.reset(seed=123)
    assert a["episode"] == b["episode"] >= 0
    assert a["task"] == TASK_NAMES[a["episode"] // 24]


def test_default_protocol_renders_640x480_and_resizes_with_area(bridge_tree: Path) -> None:
    e = gym.make("VLA/SimplerBridge-v0", assets_dir=bridge_tree, render_mode="rgb_array")
    try:
        assert e.unwrapped.protocol.name == "vlm4vla"
        obs, _ = e.reset(options={"episode": 24})
        frame = e.render()
        assert frame.shape == (480, 640, 3)
        np.testing.assert_array_equal(
            obs["image"], cv2.resize(frame, (224, 224), interpolation=cv2.INTER_AREA)
        )
        obs, *_ = e.step(OPEN)
        assert obs["image"].shape == (224, 224, 3)
    finally:
        e.close()


def test_task_cache_size_one_rebuilds_on_task_change(bridge_tree: Path) -> None:
    e = gym.make("VLA/SimplerBridge-v0", protocol="fast", assets_dir=bridge_tree, task_cache_size=1)
    try:
        u = e.unwrapped
        e.reset(options={"episode": 24})
        e.reset(options={"episode": 25})
        assert u.scene_builds == 1
        e.reset(options={"episode": 48})
        e.reset(options={"episode": 26})
        assert u.scene_builds == 3 and list(u._scenes) == ["carrot_on_plate"]
    finally:
        e.close()


def test_gymnasium_env_checker_passes(env: gym.Env) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(env.unwrapped, skip_render_check=True)  # seeded resets pick, and reproduce, plan episodes
