"""A tiny test-only benchmark ("toy") that keeps the env contract, for fast harness tests.

Each episode has a target distance; the arm position starts at 0 and every step adds ``action[0]``. The
episode succeeds (terminates) once the position reaches the target and is truncated after ``max_steps``.
So an agent that pushes ``w`` per step succeeds exactly on the episodes with ``ceil(target / w) <= max_steps``:
outcomes are deterministic per episode and depend on the agent.

Test hooks (env kwargs, never part of the protocol): ``crash_episode`` kills the worker process with SIGKILL
at ``crash_step`` of that episode (once per ``crash_marker`` file, or every time without a marker),
``die_on_reset`` kills it on every reset, ``subtask_at`` announces a new subtask (CALVIN style) at that step,
``step_sleep`` slows steps down.
Call :func:`install` to register the benchmark and the env in this process.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from policies.base import Agent
from tasks.plan import EpisodeKey
from tasks.protocol import Protocol
from tasks.scoring import Scoring
from vla_gym import contract

ENV_ID = "VLA/Toy-v0"
TASKS = ("reach_near", "reach_mid", "reach_far")
INSTRUCTIONS = {
    "reach_near": "reach the near target, then stop.",
    "reach_mid": "reach the middle target (carefully)!",
    "reach_far": "reach the far target: go, go, go.",
}
SECOND_PART = "now hold still, please."


@dataclasses.dataclass(frozen=True)
class ToyProtocol(Protocol):
    benchmark: str = "toy"
    name: str = "default"
    episodes_per_task: int = 4
    max_steps: int = 8


def target_of(episode: int, protocol: ToyProtocol) -> float:
    task_index, within = divmod(episode, protocol.episodes_per_task)
    return 0.5 + 1.0 * task_index + 0.25 * within


def expected_success(episode: int, w: float, protocol: ToyProtocol) -> bool:
    """What the env must report for an agent pushing ``w`` every step (hand-computed reference)."""
    return w > 0 and math.ceil(target_of(episode, protocol) / w - 1e-9) <= protocol.max_steps


class ToyBenchmark(Scoring):
    name = "toy"
    env_id = ENV_ID
    task_names = TASKS

    def protocol(self, name: str | None = None, **overrides: Any) -> ToyProtocol:
        if name not in (None, "default"):
            raise KeyError(f"unknown toy protocol {name!r}; known: ['default']")
        return ToyProtocol().replace(**overrides)  # type: ignore[return-value]

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        assert isinstance(protocol, ToyProtocol)
        n = protocol.episodes_per_task
        return [
            EpisodeKey(index=t * n + j, task_index=t, task=TASKS[t], within_task=j)
            for t in range(len(TASKS))
            for j in range(n)
        ]


BENCHMARK = ToyBenchmark()


class ToyEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        protocol: str | ToyProtocol | None = None,
        protocol_overrides: dict | None = None,
        action_mode: str = "contract",
        crash_episode: int | None = None,
        crash_step: int = 2,
        crash_marker: str | None = None,
        subtask_at: int | None = None,
        step_sleep: float = 0.0,
        die_on_reset: bool = False,
    ) -> None:
        if isinstance(protocol, ToyProtocol):
            self.protocol = protocol.replace(**(protocol_overrides or {}))
        else:
            self.protocol = BENCHMARK.protocol(protocol, **(protocol_overrides or {}))
        contract.check_action_mode(action_mode)
        self.benchmark = "toy"
        self.protocol_digest = self.protocol.digest
        self.episode_plan = BENCHMARK.episode_plan(self.protocol)
        self.observation_space = contract.observation_space(wrist=False)
        self.action_space = contract.action_space()
        self._crash = (crash_episode, crash_step, crash_marker)
        self._subtask_at = subtask_at
        self._sleep = step_sleep
        self._die_on_reset = die_on_reset
        self._key: EpisodeKey | None = None
        self._pos = 0.0
        self._t = 0
        self._over = True
        self._language = ""

    def _obs(self) -> dict[str, Any]:
        assert self._key is not None
        image = np.full((224, 224, 3), 20 * self._key.index % 256, dtype=np.uint8)
        image[:, : min(223, int(self._pos * 40)), 1] = 200  # progress bar, so videos show motion
        return {"image": image, "language": self._language}

    def _info(self) -> dict[str, Any]:
        assert self._key is not None
        return {
            "success": self._pos >= target_of(self._key.index, self.protocol),
            "task": self._key.task,
            "task_index": self._key.task_index,
            "episode": self._key.index,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        if self._die_on_reset:
            os.kill(os.getpid(), signal.SIGKILL)
        opts = contract.check_reset_options(options, {"episode": int})
        index = opts.get("episode", int(self.np_random.integers(len(self.episode_plan))))
        if not 0 <= index < len(self.episode_plan):
            raise ValueError(f"reset option episode={index} is not in the toy plan (0..{len(self.episode_plan) - 1})")
        self._key = self.episode_plan[index]
        self._pos, self._t, self._over = 0.0, 0, False
        self._language = INSTRUCTIONS[self._key.task]
        return self._obs(), self._info()

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if self._over:
            raise contract.EpisodeOverError()
        assert self._key is not None
        action = contract.validate_action(action)
        if self._sleep:
            time.sleep(self._sleep)
        self._t += 1
        crash_episode, crash_step, marker = self._crash
        if crash_episode == self._key.index and crash_step == self._t:
            if marker is None or not Path(marker).exists():
                if marker is not None:
                    Path(marker).write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        self._pos += float(action[0])
        info = self._info()
        if self._subtask_at is not None and self._t == self._subtask_at:
            info["subtask_changed"] = True
            self._language = SECOND_PART
        terminated = bool(info["success"])
        truncated = not terminated and self._t >= self.protocol.max_steps
        if terminated or truncated:
            self._over = True
            info["episode_metrics"] = {"policy_steps": self._t, "final_pos": round(self._pos, 6)}
        return self._obs(), float(terminated), terminated, truncated, info


def install() -> None:
    """Register the toy benchmark (for planning) and env (for gym.make) in this process."""
    from tasks import registry

    registry.BENCHMARKS["toy"] = __name__
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=f"{__name__}:ToyEnv")


# ---- test agents -------------------------------------------------------------------------------------


class ConstantAgent(Agent):
    """Pushes ``w`` every step; records every call so tests can check what the harness did."""

    def __init__(self, w: float = 1.0, chunk_size: int = 1, execute_steps: int = 1) -> None:
        self.w = float(w)
        self.chunk_size = chunk_size
        self.execute_steps = execute_steps
        self.resets: list[list[int]] = []
        self.calls: list[tuple[list[int], list[str]]] = []
        self.configured: tuple[str, dict] | None = None

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        self.configured = (benchmark, protocol)

    def reset(self, env_ids: Sequence[int]) -> None:
        self.resets.append(list(env_ids))

    def act(self, obs: dict[str, Any], env_ids: Sequence[int]) -> np.ndarray:
        self.calls.append((list(env_ids), list(obs["language"])))
        out = np.zeros((len(env_ids), self.chunk_size, 7), dtype=np.float32)
        out[:, :, 0] = self.w
        out[:, :, 6] = 1.0
        return out


class WeightsAgent(ConstantAgent):
    """Reads ``w`` from a checkpoint file holding one number: behaviour depends on the weights."""

    def __init__(self, checkpoint: str | None = None, **kwargs: Any) -> None:
        super().__init__(w=0.0, **kwargs)
        self.loaded: list[str] = []
        if checkpoint is not None:
            self.load_weights(checkpoint)

    def load_weights(self, checkpoint: str) -> None:
        self.w = float(Path(checkpoint).read_text().strip())
        self.loaded.append(checkpoint)


class RaisingAgent(ConstantAgent):
    """Raises on observations of one task; acts like ConstantAgent elsewhere."""

    def __init__(self, bad_task: str = "reach_mid", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bad_instruction = INSTRUCTIONS[bad_task]

    def act(self, obs: dict[str, Any], env_ids: Sequence[int]) -> np.ndarray:
        if self.bad_instruction in obs["language"]:
            raise RuntimeError("agent exploded on purpose")
        return super().act(obs, env_ids)
