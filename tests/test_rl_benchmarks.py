"""Every registered env through Gymnasium's vector envs and tianshou's collectors, on cheap settings (3 steps
per episode, small images where the protocol allows).

Per benchmark: ``gym.make_vec`` sync and async (2 envs) keep the exact instruction; tianshou's ``Collector``
collects 2 full episodes of the plan over ``DummyVectorEnv`` (2 envs), ``SubprocVectorEnv`` and
``ShmemVectorEnv`` (1 env walking 2 episodes each) with the instruction, shapes and returns checked in the
replay buffer; ``check_vla_env`` passes. The worker-process half of LIBERO and Bridge is marked slow.
Worker processes start with ``spawn``: a parent that has made an EGL context (CALVIN's renderer, LIBERO's)
cannot safely fork, and tianshou's ``ShmemVectorEnv`` builds one env in the parent and then forks:
``rl.SpawnShmemVectorEnv`` is the same class with a start method.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv, ShmemVectorEnv, SubprocVectorEnv

import vla_gym
from policies.noop import NoopAgent
from tasks import calvin, libero_long, simpler_bridge
from tasks.registry import get_benchmark
from vla_gym import rl
from vla_gym.calvin.conditions import load_chains
from vla_gym.checker import check_vla_env
from wrappers.episodes import AssignedEpisodes

STEPS = 3
EPISODES = [0, 1]


def _calvin(data: Path) -> tuple[dict[str, Any], list[str], tuple[int, ...]]:
    kwargs = {
        "data_dir": str(data / "calvin"),
        "protocol": "vlm4vla_static",
        "protocol_overrides": {"max_steps_per_subtask": STEPS, "static_size": 64, "image_size": 64},
    }
    chains = load_chains(data / "calvin")
    return kwargs, [calvin.instruction(chains[k][1][0]) for k in EPISODES], (64, 64, 3)


def _bridge(data: Path) -> tuple[dict[str, Any], list[str], tuple[int, ...]]:
    kwargs = {
        "assets_dir": str(data / "bridge"),
        "protocol": "fast",
        "protocol_overrides": {"max_steps": STEPS, "image_size": 64},  # the knob, exercised
    }
    plan = simpler_bridge.BENCHMARK.episode_plan(simpler_bridge.BENCHMARK.protocol("fast"))
    return kwargs, [simpler_bridge.instruction(plan[k].task) for k in EPISODES], (64, 64, 3)


def _libero_suite(name: str) -> Callable[[Path], tuple[dict[str, Any], list[str], tuple[int, ...]]]:
    def case(data: Path) -> tuple[dict[str, Any], list[str], tuple[int, ...]]:
        kwargs = {
            "protocol": "vlm4vla_fast",
            "protocol_overrides": {"max_steps": STEPS, "settle_steps": 0, "render_size": 64, "image_size": 64},
        }
        bench = get_benchmark(name)
        plan = bench.episode_plan(bench.protocol())
        return kwargs, [libero_long.instruction(bench.task_names[plan[k].task_index]) for k in EPISODES], (64, 64, 3)

    return case


CASES: dict[str, Callable[[Path], tuple[dict[str, Any], list[str], tuple[int, ...]]]] = {
    "calvin": _calvin,
    "simpler_bridge": _bridge,
    **{name: _libero_suite(name) for name in ("libero_long", "libero_spatial", "libero_object", "libero_goal",
                                               "libero_90")},
}


def test_every_registered_id_is_covered() -> None:
    assert sorted(CASES) == sorted(vla_gym.ENV_IDS)


def _noop_action(n: int) -> np.ndarray:
    act = np.zeros((n, 7), dtype=np.float32)
    act[:, 6] = 1.0
    return act


def _check_buffer(collector: Collector, expected: list[str], shape: tuple[int, ...], benchmark: str) -> None:
    buf = collector.buffer
    data = buf[buf.sample_indices(0)]  # every stored step (the storage behind it is larger)
    assert len(data) == STEPS * len(EPISODES)  # both episodes ran their 3 steps and nothing else
    ends = np.flatnonzero(data.done)
    assert sorted(int(e) for e in data.info.episode[ends]) == EPISODES
    for i in range(len(data)):
        k = int(data.info.episode[i])
        assert rl.decode_language(data.obs.language[i]) == expected[k]
        assert rl.decode_language(data.obs_next.language[i]) == expected[k]
    assert data.obs.image.shape == (len(data), *shape) and data.obs.image.dtype == np.uint8
    assert data.obs.image.any()  # rendered, not blank
    assert data.act.shape == (len(data), 7)
    np.testing.assert_array_equal(data.rew, np.zeros(len(data)))  # holding still solves nothing
    if benchmark == "simpler_bridge":
        assert data.truncated[ends].all() and not data.terminated.any()
    else:  # CALVIN: the subtask fails at its step limit; LIBERO: truncated at max_steps
        assert (data.terminated[ends] | data.truncated[ends]).all()
    assert all(str(m).startswith("{") for m in data.info[rl.METRICS_KEY][ends])


def _collect(venv: Any, episodes: list[list[int]]) -> Collector:
    policy = rl.AgentPolicy(NoopAgent(), venv.action_space[0])
    collector = Collector(policy, venv, VectorReplayBuffer(4 * STEPS * len(episodes), len(episodes)))
    stats = rl.collect_plan(collector, episodes)
    assert sum(s.n_collected_episodes for s in stats) == len(EPISODES)
    assert all(np.all(s.returns == 0.0) and np.all(s.lens == STEPS) for s in stats)
    return collector


# Worker processes import and build a simulator each: cheap for CALVIN, a few minutes on two loaded CPU cores
# for LIBERO and Bridge, which therefore run with -m slow (their in-process test below stays in the default run).
WORKER_CASES = [
    pytest.param(b, marks=[] if b == "calvin" else [pytest.mark.slow]) for b in sorted(CASES)
]


@pytest.mark.parametrize("benchmark", WORKER_CASES)
def test_worker_vector_envs_keep_the_instruction(benchmark: str, shared_data: Path) -> None:
    """make_vec async (2 spawned workers), SubprocVectorEnv and ShmemVectorEnv (1 env walking 2 episodes)."""
    kwargs, expected, shape = CASES[benchmark](shared_data)
    env_id = vla_gym.ENV_IDS[benchmark]
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="async", vector_kwargs={"context": "spawn"}, **kwargs)
    try:
        obs, info = envs.reset(options={"episode": EPISODES[1]})
        assert obs["language"] == (expected[1], expected[1]) and list(info["episode"]) == [1, 1]
        obs, *_ = envs.step(_noop_action(2))
        assert obs["language"] == (expected[1], expected[1]) and obs["image"].shape == (2, *shape)
    finally:
        envs.close()

    for venv in (
        SubprocVectorEnv(rl.env_factories(env_id, 1, episodes=EPISODES, **kwargs), context="spawn"),
        rl.SpawnShmemVectorEnv(rl.env_factories(env_id, 1, episodes=EPISODES, **kwargs)),
    ):
        assert isinstance(venv, SubprocVectorEnv | ShmemVectorEnv)
        try:
            _check_buffer(_collect(venv, [EPISODES]), expected, shape, benchmark)
        finally:
            venv.close()


@pytest.mark.parametrize("benchmark", sorted(CASES))
def test_in_process_vector_envs_keep_the_instruction(benchmark: str, shared_data: Path) -> None:
    """make_vec sync (2 envs); the same envs in tianshou's DummyVectorEnv (one plan episode each); checker."""
    kwargs, expected, shape = CASES[benchmark](shared_data)
    env_id = vla_gym.ENV_IDS[benchmark]
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", **kwargs)
    try:
        obs, info = envs.reset(options={"episode": EPISODES[0]})
        assert obs["language"] == (expected[0], expected[0])
        obs, *_ = envs.step(_noop_action(2))
        assert obs["language"] == (expected[0], expected[0]) and obs["image"].shape == (2, *shape)
        # the same two envs, each walking one episode of the plan, in tianshou's DummyVectorEnv
        singles = list(envs.envs)
        venv = DummyVectorEnv(
            [
                lambda i=i: rl.TianshouReady(AssignedEpisodes(singles[i], [EPISODES[i]]), index=i)
                for i in range(2)
            ]
        )
        _check_buffer(_collect(venv, [[EPISODES[0]], [EPISODES[1]]]), expected, shape, benchmark)
        report = check_vla_env(singles[0], episodes=2, reset_options=[{"episode": k} for k in EPISODES])
        assert report["steps"] == STEPS * len(EPISODES) and report["returns"] == [0.0, 0.0]
        assert "action_out_of_range_steps" in report["info_keys"]
    finally:
        envs.close()


def test_bridge_terminate_on_success_has_its_own_digest_and_ends_at_the_first_success(shared_data: Path) -> None:
    protocols = simpler_bridge.PROTOCOLS
    rl_protocol = simpler_bridge.BENCHMARK.protocol("vlm4vla_terminate")
    # the option is a value of an existing field: the published protocols' dicts (and digests) are untouched,
    # and the new protocol differs from the default in its name and that value only
    assert rl_protocol.replace(name="vlm4vla", success="final_step").digest == protocols["vlm4vla"].digest
    assert all("terminate" not in key for key in protocols["vlm4vla"].to_dict())
    assert rl_protocol.name == "terminate_on_success" and rl_protocol.success == "first_step"
    assert rl_protocol.digest not in {p.digest for n, p in protocols.items() if n != "terminate_on_success"}
    with pytest.raises(ValueError, match="success"):
        simpler_bridge.BENCHMARK.protocol("fast", success="any_step")

    env = gym.make(
        "VLA/SimplerBridge-v0",
        assets_dir=str(shared_data / "bridge"),
        protocol="fast",
        protocol_overrides={"success": "first_step", "max_steps": 5},
    )
    try:
        u = env.unwrapped
        assert u.action_space.high[0] == 1.0 and u.action_space.high[3] == pytest.approx(np.pi / 2)
        env.reset(options={"task": "carrot_on_plate", "episode_id": 7})
        state = u.privileged_state()
        lift = abs(state["target_bbox_size"][2]) / 2 + abs(state["source_bbox_size"][2]) / 2 + 0.01
        u.teleport_object(state["source_name"], state["target_pose"][:3] + [0.0, 0.0, lift])
        rewards = []
        for _ in range(5):
            action = _noop_action(1)[0]
            action[0] = 2.0  # outside the declared [-1, 1] m: runs as before (ManiSkill does not clip), counted
            _, reward, terminated, truncated, info = env.step(action if not rewards else _noop_action(1)[0])
            rewards.append(reward)
            if terminated or truncated:
                break
        assert terminated and not truncated and info["success"] is True
        assert sum(rewards) == 1.0 and rewards[-1] == 1.0  # the return of a solved episode is exactly 1
        assert info["episode_metrics"]["action_out_of_range_steps"] == 1
    finally:
        env.close()
