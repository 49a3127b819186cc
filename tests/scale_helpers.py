"""Test-only envs and agents for the scheduler and watchdog tests (on top of the toy benchmark)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import toy_env

from policies.base import Agent

JITTER_ENV_ID = "VLA/ToyJitter-v0"


class JitterToyEnv(toy_env.ToyEnv):
    """The toy env with step times that vary by episode and step (so envs drift apart and batches differ
    between schedulers), and a hang: at ``hang_step`` of ``hang_episode`` the step sleeps for an hour (once per
    ``hang_marker`` file)."""

    def __init__(
        self,
        jitter_s: float = 0.0,
        hang_episode: int | None = None,
        hang_step: int = 2,
        hang_marker: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._jitter = jitter_s
        self._hang = (hang_episode, hang_step, hang_marker)

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        assert self._key is not None
        episode, step, marker = self._hang
        if episode == self._key.index and step == self._t + 1:
            if marker is None or not Path(marker).exists():
                if marker is not None:
                    Path(marker).write_text("hung")
                time.sleep(3600)
        if self._jitter:
            time.sleep(self._jitter * ((self._key.index * 7 + self._t * 3) % 5))
        return super().step(action)


def install() -> None:
    import gymnasium as gym

    toy_env.install()
    if JITTER_ENV_ID not in gym.registry:
        gym.register(id=JITTER_ENV_ID, entry_point=f"{__name__}:JitterToyEnv")


class StatefulAgent(Agent):
    """Deterministic, with per-env state: the push of each action depends on the env's calls since its reset,
    the image and the instruction, so an episode's outcome changes if its state leaked into another env's.
    ``hang_on_call`` (1-based, over all calls of this object) sleeps ``hang_s`` in that call."""

    def __init__(
        self, w: float = 0.3, chunk_size: int = 1, execute_steps: int = 1, hang_on_call: int | None = None,
        hang_s: float = 3600.0,
    ) -> None:  # fmt: skip
        self.w, self.chunk_size, self.execute_steps = w, chunk_size, execute_steps
        self.hang_on_call, self.hang_s = hang_on_call, hang_s
        self.count: dict[int, int] = {}
        self.batch_sizes: list[int] = []

    def reset(self, env_ids: Sequence[int]) -> None:
        for env_id in env_ids:
            self.count[int(env_id)] = 0

    def act(self, obs: dict[str, Any], env_ids: Sequence[int]) -> np.ndarray:
        self.batch_sizes.append(len(env_ids))
        if self.hang_on_call is not None and len(self.batch_sizes) == self.hang_on_call:
            time.sleep(self.hang_s)
        out = np.zeros((len(env_ids), self.chunk_size, 7), dtype=np.float32)
        for row, env_id in enumerate(env_ids):
            n = self.count[int(env_id)]  # KeyError: act before reset
            self.count[int(env_id)] = n + 1
            bias = (int(obs["image"][row].mean()) + len(obs["language"][row])) % 3
            out[row, :, 0] = self.w * (1.0 + 0.2 * ((n + bias) % 4)) + 0.01 * np.arange(self.chunk_size)
            out[row, :, 6] = 1.0
        return out

    def episode_info(self, env_id: int) -> dict[str, Any]:
        return {"calls": self.count.get(int(env_id), -1)}
