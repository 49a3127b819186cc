"""Execute an action chunk per ``step``, the way VLAs that predict several actions per query are scored."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_gym.contract import ACTION_DIM, validate_action


class ChunkedActions(gym.Wrapper):
    """``step(chunk)`` with ``chunk`` of shape (k, 7), 1 <= k <= ``chunk_size``: executes its first
    ``execute_steps`` actions (all of them when None) open-loop.

    Stops early when the episode ends or when a CALVIN subtask changes (``info["subtask_changed"]``: actions
    planned for the old instruction must not run under the new one). Returns the last observation, the summed
    reward, and ``info["executed_steps"]``.
    """

    def __init__(self, env: gym.Env, chunk_size: int, execute_steps: int | None = None) -> None:
        super().__init__(env)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if execute_steps is not None and not 1 <= execute_steps <= chunk_size:
            raise ValueError(f"execute_steps must be in 1..{chunk_size}, got {execute_steps}")
        self.chunk_size = chunk_size
        self.execute_steps = execute_steps
        inner = env.action_space
        assert isinstance(inner, spaces.Box) and inner.shape == (ACTION_DIM,), inner
        self.action_space = spaces.Box(
            np.tile(inner.low, (chunk_size, 1)), np.tile(inner.high, (chunk_size, 1)), dtype=np.float32
        )

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        chunk = np.asarray(action)
        if chunk.ndim != 2 or not 1 <= chunk.shape[0] <= self.chunk_size:
            raise ValueError(f"action chunk must have shape (k, {ACTION_DIM}) with 1 <= k <= {self.chunk_size}, "
                             f"got {chunk.shape}")  # fmt: skip
        # validate the whole chunk first: a bad row must not leave the env half-way through it
        rows = [validate_action(row, name=f"action chunk row {i}") for i, row in enumerate(chunk)]
        rows = rows[: self.execute_steps] if self.execute_steps is not None else rows
        total, executed = 0.0, 0
        for row in rows:
            obs, reward, terminated, truncated, info = self.env.step(row)
            total += float(reward)
            executed += 1
            if terminated or truncated or info.get("subtask_changed"):
                break
        info = dict(info)
        info["executed_steps"] = executed
        return obs, total, terminated, truncated, info
