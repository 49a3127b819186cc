"""Tiny deterministic agents for the wire tests: their actions reveal what reached them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from policies.base import Agent, Observation


class EchoAgent(Agent):
    """Action row t of env b: [image mean / 255, wrist mean / 255 (or -1), len(prompt), proprio sum (or 0),
    env id, t, gripper +1 on even t and -1 on odd t]."""

    def __init__(self, chunk_size: int = 4, execute_steps: int = 2) -> None:
        self.chunk_size, self.execute_steps = chunk_size, execute_steps
        self.configured: list[tuple[str, dict[str, Any]]] = []
        self.resets: list[list[int]] = []

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        self.configured.append((benchmark, protocol))

    def reset(self, env_ids: Sequence[int]) -> None:
        self.resets.append([int(i) for i in env_ids])

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        batch = len(env_ids)
        out = np.zeros((batch, self.chunk_size, 7), dtype=np.float32)
        for b in range(batch):
            out[b, :, 0] = obs["image"][b].mean() / 255.0
            out[b, :, 1] = obs["wrist_image"][b].mean() / 255.0 if "wrist_image" in obs else -1.0
            out[b, :, 2] = len(obs["language"][b])
            out[b, :, 3] = float(np.sum(obs["proprio"][b])) if "proprio" in obs else 0.0
            out[b, :, 4] = env_ids[b]
            out[b, :, 5] = np.arange(self.chunk_size)
            out[b, :, 6] = np.where(np.arange(self.chunk_size) % 2 == 0, 1.0, -1.0)
        return out


class SlowAgent(EchoAgent):
    def __init__(self, delay_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delay_s = delay_s

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        time.sleep(self.delay_s)
        return super().act(obs, env_ids)


class FailingAgent(EchoAgent):
    """Raises on prompts containing 'fail'; returns a wrong shape on prompts containing 'shape'."""

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if any("fail" in s for s in obs["language"]):
            raise RuntimeError("this agent fails on purpose")
        if any("shape" in s for s in obs["language"]):
            return np.zeros((len(env_ids), 6), dtype=np.float32)
        return super().act(obs, env_ids)
