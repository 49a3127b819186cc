"""The instruction as a fixed-length uint8 array (UTF-8, zero-padded) instead of a ``Text`` observation."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def decode_language(array: np.ndarray) -> str | list[str]:
    """Inverse of the encoding: one string for shape (n,), a list for a batch (B, n)."""
    arr = np.asarray(array, dtype=np.uint8)
    if arr.ndim == 2:
        return [str(decode_language(row)) for row in arr]
    return bytes(arr).rstrip(b"\0").decode("utf-8")


class LanguageAsArray(gym.ObservationWrapper):
    """``obs["language"]`` becomes uint8 (max_length,). Longer instructions raise: nothing is cut silently."""

    def __init__(self, env: gym.Env, max_length: int = 512) -> None:
        super().__init__(env)
        if "language" not in env.observation_space.spaces:
            raise KeyError("LanguageAsArray needs a Dict observation space with a 'language' key")
        self.max_length = max_length
        parts = dict(env.observation_space.spaces)
        parts["language"] = spaces.Box(0, 255, shape=(max_length,), dtype=np.uint8)
        self.observation_space = spaces.Dict(parts)

    def observation(self, observation: dict[str, Any]) -> dict[str, Any]:
        raw = str(observation["language"]).encode("utf-8")
        if len(raw) > self.max_length:
            raise ValueError(f"instruction of {len(raw)} bytes exceeds max_length={self.max_length}: {raw[:60]!r}...")
        encoded = np.zeros(self.max_length, dtype=np.uint8)
        encoded[: len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        return {**observation, "language": encoded}
