"""Vector envs and tianshou on the toy env (no simulator): the instruction through shared memory, per-env
episode assignment, AgentPolicy's chunk queues and resets, exact plan walking, fixed-shape info."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import toy_env
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv, ShmemVectorEnv

from vla_gym import rl
from vla_gym.checker import check_vla_env
from vla_gym.contract import language_space
from vla_gym.instruction_space import InstructionText, SharedInstructions
from wrappers.episodes import AssignedEpisodes, assign_episodes

toy_env.install()


class _Speaker(gym.Env):
    """Says ``texts[k]`` after its k-th reset/step (k counted per env)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.observation_space = gym.spaces.Dict(
            {"image": gym.spaces.Box(0, 255, (4, 4, 3), np.uint8), "language": language_space()}
        )
        self.action_space = gym.spaces.Box(-1, 1, (7,), np.float32)
        self.k = 0

    def _obs(self) -> dict[str, Any]:
        return {"image": np.full((4, 4, 3), self.k, np.uint8), "language": self.texts[self.k % len(self.texts)]}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.k = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        self.k += 1
        return self._obs(), 0.0, False, False, {}


TEXTS_A = ["put the spoon on the towel", "Take the red block from the drawer", ""]
TEXTS_B = ["stack the green block on the yellow block.", "x" * 512, "a, b; c: (d)!"]


def test_async_vector_env_defaults_carry_every_instruction_exactly() -> None:
    env = gym.vector.AsyncVectorEnv([lambda: _Speaker(TEXTS_A), lambda: _Speaker(TEXTS_B)])
    try:
        assert isinstance(env.single_observation_space["language"], InstructionText)
        obs, _ = env.reset()
        assert obs["language"] == (TEXTS_A[0], TEXTS_B[0]) and type(obs["language"]) is tuple
        kept = obs["language"]
        for k in (1, 2):
            obs, *_ = env.step(np.zeros((2, 7), np.float32))
            assert obs["language"] == (TEXTS_A[k], TEXTS_B[k])
            assert obs["image"][0, 0, 0, 0] == k
        assert kept == (TEXTS_A[0], TEXTS_B[0])  # a returned batch is a copy: later steps leave it alone
    finally:
        env.close()


def test_async_without_copy_returns_a_live_view_and_refuses_what_it_cannot_carry() -> None:
    env = gym.vector.AsyncVectorEnv([lambda: _Speaker(TEXTS_B)], copy=False)
    try:
        obs, _ = env.reset()
        view = obs["language"]
        assert isinstance(view, SharedInstructions) and view == (TEXTS_B[0],)
        env.step(np.zeros((1, 7), np.float32))
        assert view[0] == TEXTS_B[1] and list(view) == [TEXTS_B[1]] and copy.deepcopy(view) == (TEXTS_B[1],)
    finally:
        env.close()
    bad = gym.vector.AsyncVectorEnv([lambda: _Speaker(["fine", "y" * 513])])
    try:
        bad.reset()
        with pytest.raises(ValueError, match="not in the language space"):
            bad.step(np.zeros((1, 7), np.float32))
    finally:
        bad.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_make_vec_keeps_the_toy_instruction(mode: str) -> None:
    env = gym.make_vec(toy_env.ENV_ID, num_envs=2, vectorization_mode=mode)
    try:
        obs, info = env.reset(options={"episode": 5})
        assert obs["language"] == (toy_env.INSTRUCTIONS["reach_mid"],) * 2
        assert list(info["episode"]) == [5, 5]
    finally:
        env.close()


def test_assign_episodes_and_the_wrapper_use_episodes_up_only_when_they_end() -> None:
    assert assign_episodes(range(5), 2) == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="repeat"):
        assign_episodes([1, 1], 2)
    env = AssignedEpisodes(gym.make(toy_env.ENV_ID), [4, 9])
    try:
        for _ in range(2):  # resets mid-episode start the same episode again
            _, info = env.reset()
            assert info["episode"] == 4 and info["assigned_position"] == 0 and not info["assignment_done"]
            env.step(np.array([0.1, 0, 0, 0, 0, 0, 1]))
        done = False
        while not done:
            *_, terminated, truncated, info = env.step(np.array([1.0, 0, 0, 0, 0, 0, 1]))
            done = terminated or truncated
        assert info["episode"] == 4 and not info["assignment_done"]
        _, info = env.reset()
        assert info["episode"] == 9 and info["assigned_position"] == 1
        while True:
            *_, terminated, truncated, info = env.step(np.array([1.0, 0, 0, 0, 0, 0, 1]))
            if terminated or truncated:
                break
        assert info["assignment_done"] and env.done
        _, info = env.reset()  # used up: the last episode again, flagged
        assert info["episode"] == 9 and info["assignment_done"]
        _, info = env.reset(options={"episode": 1})  # explicit options pass through
        assert info["episode"] == 1
    finally:
        env.close()
    with pytest.raises(ValueError, match="not in the env's plan"):
        AssignedEpisodes(gym.make(toy_env.ENV_ID), [99])


def test_collect_plan_walks_exactly_the_plan_with_uneven_episode_lengths() -> None:
    # episode k needs ceil(target_k / 0.3) steps, or is truncated at 8: lengths differ between envs
    plan = [0, 1, 2, 5, 6, 8, 9]
    venv = DummyVectorEnv(rl.env_factories(toy_env.ENV_ID, 3, episodes=plan))
    agent = toy_env.ConstantAgent(w=0.3, chunk_size=3, execute_steps=2)
    policy = rl.AgentPolicy(agent, venv.action_space[0], benchmark="toy", protocol={"max_steps": 8})
    collector = Collector(policy, venv, VectorReplayBuffer(300, 3))
    try:
        stats = rl.collect_plan(collector, assign_episodes(plan, 3))
    finally:
        venv.close()
    assert [s.n_collected_episodes for s in stats] == [3, 3, 1]
    buf = collector.buffer
    ends = np.flatnonzero(buf.done)
    finished = sorted(int(e) for e in buf.info.episode[ends])
    assert finished == plan  # every planned episode exactly once, nothing else
    protocol = toy_env.ToyProtocol()
    for i in ends:
        k = int(buf.info.episode[i])
        assert bool(buf.terminated[i]) == toy_env.expected_success(k, 0.3, protocol)
    returns = np.concatenate([s.returns for s in stats])
    assert sorted(returns.tolist()) == sorted(float(toy_env.expected_success(k, 0.3, protocol)) for k in plan)
    # the agent saw the decoded instruction, was configured once and reset at every episode start
    assert agent.configured == ("toy", {"max_steps": 8})
    assert all(lang in toy_env.INSTRUCTIONS.values() for _, langs in agent.calls for lang in langs)
    assert sum(len(r) for r in agent.resets) >= len(plan)
    # chunks: 2 actions executed per query, so about half as many queries as steps
    steps = len(buf)
    assert policy.agent_calls <= steps // 2 + 3 * len(plan)
    assert rl.decode_language(buf.obs.language[ends[0]]) in toy_env.INSTRUCTIONS.values()
    assert buf.obs.language.dtype == np.uint8 and buf.obs.image.shape[1:] == (224, 224, 3)


def test_shmem_vector_env_carries_the_instruction_as_bytes() -> None:
    venv = ShmemVectorEnv(rl.env_factories(toy_env.ENV_ID, 2, episodes=[3, 7]))
    try:
        obs, info = venv.reset()
        assert rl.decode_language(np.stack([o["language"] for o in obs])) == [
            toy_env.INSTRUCTIONS["reach_near"],
            toy_env.INSTRUCTIONS["reach_mid"],
        ]
        assert [i["env_index"] for i in info] == [0, 1]
    finally:
        venv.close()


def test_tianshou_ready_refuses_info_that_changes_shape() -> None:
    class Growing(toy_env.ToyEnv):
        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            obs, info = super().reset(seed=seed, options=options)
            return obs, {**info, "done_tasks": []}

        def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
            obs, reward, terminated, truncated, info = super().step(action)
            info["done_tasks"] = ["a"] * self._t
            return obs, reward, terminated, truncated, info

    env = rl.TianshouReady(Growing())
    env.reset(options={"episode": 0})
    with pytest.raises(ValueError, match="done_tasks"):  # () at reset, (1,) now
        env.step(np.zeros(7))


def test_checker_accepts_the_toy_env_and_names_a_growing_info_value() -> None:
    class Bounded(toy_env.ToyEnv):
        def __init__(self, grow: bool = False) -> None:
            super().__init__()
            self.grow = grow
            self.action_space = gym.spaces.Box(-1, 1, (7,), np.float32)

        def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
            obs, reward, terminated, truncated, info = super().step(action)
            if self.grow:
                info["steps_so_far"] = list(range(self._t))
            return obs, reward, terminated, truncated, info

    report = check_vla_env(Bounded(), episodes=2, reset_options=[{"episode": 0}, {"episode": 11}],
                           action_fn=lambda t: np.array([0.2, 0, 0, 0, 0, 0, 1.0]))
    assert report["steps"] == 3 + 8 and report["returns"] == [1.0, 0.0]
    with pytest.raises(AssertionError, match="steps_so_far"):
        check_vla_env(Bounded(grow=True), episodes=1, reset_options=[{"episode": 11}])
    unbounded = Bounded()
    unbounded.action_space = gym.spaces.Box(-np.inf, np.inf, (7,), np.float32)
    with pytest.raises(AssertionError, match="bounded"):
        check_vla_env(unbounded, episodes=1)
