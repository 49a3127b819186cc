"""LIBERO-Spatial, -Object, -Goal and -90 beside LIBERO-Long: task lists, protocols and, per suite, a short
bitwise check against hf-libero's OffScreenRenderEnv and an order-independence check (a few steps each)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest

import vla_gym
from tasks.libero_long import BENCHMARK as LONG
from tasks.libero_long import instruction
from tasks.libero_tasks import MAX_STEPS, SUITE_TASKS
from tasks.registry import get_benchmark
from vla_gym.libero import suite as suite_files
from vla_gym.libero.assets import import_libero, resolve_assets

NEW_SUITES = {
    "libero_spatial": ("VLA/LiberoSpatial-v0", 10, 220),
    "libero_object": ("VLA/LiberoObject-v0", 10, 280),
    "libero_goal": ("VLA/LiberoGoal-v0", 10, 300),
    "libero_90": ("VLA/Libero90-v0", 90, 400),
}
NOOP = [0, 0, 0, 0, 0, 0, -1]  # OpenVLA's get_libero_dummy_action


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vla_gym_cache")


@pytest.fixture(scope="module")
def libero(cache):
    return import_libero(resolve_assets(), cache_dir=cache)


def test_task_lists_are_hf_libero_default_order(libero) -> None:
    from libero.libero import benchmark

    suites = benchmark.get_benchmark_dict()
    for suite, names in SUITE_TASKS.items():
        task_suite = suites[suite]()  # default task_order_index 0
        assert tuple(task_suite.get_task_names()) == names, suite
        assert [instruction(n) for n in names] == [t.language for t in task_suite.tasks], suite


@pytest.mark.parametrize("name", sorted(NEW_SUITES))
def test_suite_benchmark_protocols_and_plan(name: str) -> None:
    env_id, tasks, limit = NEW_SUITES[name]
    bench = get_benchmark(name)
    assert bench.env_id == env_id and vla_gym.ENV_IDS[name] == env_id and env_id in gym.registry
    assert len(bench.task_names) == tasks and MAX_STEPS[name] == limit
    for protocol_name in ("vlm4vla", "vlm4vla_fast", "openvla", "openpi"):
        p = bench.protocol(protocol_name)
        assert (p.benchmark, p.suite, p.max_steps, p.init_states_per_task) == (name, name, limit, 50)
        # same loop as LIBERO-Long's protocol of that name, only the suite and its limit differ
        long_p = LONG.protocol(protocol_name)
        assert p.replace(benchmark="libero_long", suite="libero_10", max_steps=520) == long_p
        assert p.digest != long_p.digest
    plan = bench.episode_plan(bench.protocol())
    assert len(plan) == tasks * 50 and plan[51].task == bench.task_names[1] and plan[51].within_task == 1
    with pytest.raises(TypeError, match="suite"):
        bench.episode_plan(LONG.protocol())


@pytest.mark.parametrize("suite", sorted(SUITE_TASKS))
def test_every_task_has_its_files_and_50_init_states(suite: str) -> None:
    for name in SUITE_TASKS[suite]:
        assert suite_files.bddl_path(name, suite).is_file()
        states = suite_files.load_init_states(name, suite)
        assert states.shape[0] == 50 and states.dtype == np.float64


def _image(raw: np.ndarray) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(raw[::-1, ::-1]), (224, 224), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("name", sorted(NEW_SUITES))
def test_bitwise_equal_to_hf_libero_and_order_independent(name: str, cache, libero) -> None:
    """OpenVLA's loop on hf-libero's own env (env.seed(0), 10 no-ops, then policy steps as action.tolist())
    against ``openvla`` with a 3-step limit; then the same episode again after another one, unchanged."""
    from libero.libero.envs import OffScreenRenderEnv

    env_id = NEW_SUITES[name][0]
    bench = get_benchmark(name)
    task, init_state, steps = 1, 4, 3
    env = gym.make(env_id, protocol="openvla", protocol_overrides={"max_steps": steps}, cache_dir=cache)
    bddl = os.path.join(libero.get_libero_path("bddl_files"), name, f"{bench.task_names[task]}.bddl")
    raw = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    actions = np.random.default_rng(1).uniform(-0.5, 0.5, size=(steps, 7))
    actions[:, 6] = [1.0, -1.0, -1.0]
    try:
        raw.seed(0)
        raw.reset()
        raw_obs = raw.set_init_state(suite_files.load_init_states(bench.task_names[task], name)[init_state])
        for _ in range(10):
            raw_obs, _, _, _ = raw.step(list(NOOP))
        obs, info = env.reset(options={"episode": task * 50 + init_state})
        assert info["task"] == bench.task_names[task] and obs["language"] == instruction(bench.task_names[task])
        start = env.unwrapped.sim_snapshot()
        for action in actions:
            assert np.array_equal(env.unwrapped.sim_snapshot()["state"], raw.sim.get_state().flatten())
            assert np.array_equal(obs["image"], _image(raw_obs["agentview_image"]))
            assert np.array_equal(obs["wrist_image"], _image(raw_obs["robot0_eye_in_hand_image"]))
            obs, _, terminated, truncated, info = env.step(action)
            native = action.copy()
            native[6] = -native[6]
            raw_obs, _, done, _ = raw.step(native.tolist())
            assert terminated == bool(done)
        assert truncated and info["policy_steps"] == steps
        assert np.array_equal(env.unwrapped.sim_snapshot()["state"], raw.sim.get_state().flatten())

        env.reset(options={"episode": task * 50 + 9})  # another episode, stepped
        env.step(actions[0])
        env.reset(options={"episode": task * 50 + init_state})
        again = env.unwrapped.sim_snapshot()
        for key in start:
            assert np.array_equal(start[key], again[key]), key
    finally:
        env.close()
        raw.close()
