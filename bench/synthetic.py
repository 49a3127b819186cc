"""Synthetic parts for throughput benches: an agent that costs like a GPU forward and an env that costs like a
CPU simulator on a machine with a given number of cores, both by sleeping (they predict GPU-box behaviour on a
small CPU machine without using its CPU).

- :class:`SyntheticLatencyAgent`: each ``act`` sleeps ``fixed_s + per_item_s * batch`` (a batched forward pass:
  launch and weight reads once, then per-sample compute), returns a constant chunk; deterministic.
- :class:`SimCpuEnv`: each step (reset) holds one of ``cores`` shared slots (a multiprocessing semaphore) for
  ``step_s`` (``reset_s``), so N workers on C simulated cores step at most C at a time, like CPU-bound envs.
  Observations keep the env contract (two 224x224 images and an instruction, as LIBERO's).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from policies.base import Agent
from tasks.plan import EpisodeKey
from tasks.protocol import Protocol
from vla_gym import contract

ENV_ID = "Bench/SimCpu-v0"


class SyntheticLatencyAgent(Agent):
    """Sleeps ``fixed_s + per_item_s * B`` per call of B observations; pushes ``w`` along x."""

    def __init__(
        self, fixed_s: float = 0.02, per_item_s: float = 0.002, chunk_size: int = 1, execute_steps: int = 1,
        w: float = 0.0,
    ) -> None:  # fmt: skip
        self.fixed_s, self.per_item_s = float(fixed_s), float(per_item_s)
        self.chunk_size, self.execute_steps, self.w = int(chunk_size), int(execute_steps), float(w)
        self.batch_sizes: list[int] = []

    def act(self, obs: dict[str, Any], env_ids: Sequence[int]) -> np.ndarray:
        batch = len(env_ids)
        self.batch_sizes.append(batch)
        time.sleep(self.fixed_s + self.per_item_s * batch)
        out = np.zeros((batch, self.chunk_size, 7), dtype=np.float32)
        out[..., 0] = self.w
        out[..., 6] = 1.0
        return out

    def cost(self, batch: int) -> float:
        return self.fixed_s + self.per_item_s * batch


def agent_bound(fixed_s: float, per_item_s: float, execute_steps: int, max_batch: int) -> float:
    """Env steps per second the agent can feed at best: full batches back to back."""
    return execute_steps * max_batch / (fixed_s + per_item_s * max_batch)


@dataclasses.dataclass(frozen=True)
class SimProtocol(Protocol):
    benchmark: str = "simcpu"
    name: str = "default"
    max_steps: int = 40


def plan(episodes: int) -> list[EpisodeKey]:
    return [EpisodeKey(index=k, task_index=0, task="sim", within_task=k) for k in range(episodes)]


class SimCpuEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self, protocol: SimProtocol, cores: Any = None, step_s: float = 0.04, reset_s: float = 0.1
    ) -> None:
        self.protocol, self.protocol_digest = protocol, protocol.digest
        self.observation_space = contract.observation_space(wrist=True)
        self.action_space = contract.action_space()
        self._cores, self._step_s, self._reset_s = cores, float(step_s), float(reset_s)
        rng = np.random.default_rng(0)
        self._image = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
        self._t, self._episode = 0, 0

    def _busy(self, seconds: float) -> None:
        if self._cores is None:
            time.sleep(seconds)
            return
        with self._cores:
            time.sleep(seconds)

    def _obs(self) -> dict[str, Any]:
        return {"image": self._image.copy(), "wrist_image": self._image.copy(), "language": "put the bowl on the plate"}

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._busy(self._reset_s)
        self._t, self._episode = 0, int((options or {}).get("episode", 0))
        return self._obs(), {"success": False, "episode": self._episode}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        contract.validate_action(action)
        self._busy(self._step_s)
        self._t += 1
        return self._obs(), 0.0, False, self._t >= self.protocol.max_steps, {"success": False}


def register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=f"{__name__}:SimCpuEnv")
