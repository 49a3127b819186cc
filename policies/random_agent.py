"""The random agent: uniform motion, random gripper; seeded so that each episode's actions are reproducible.

Each episode gets its own random stream, keyed by the seed and the episode's first observation (its image
bytes and instruction), so the actions of an episode do not depend on which env slot ran it or what ran
before: results are the same for any number of envs and any order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from policies.base import Agent, Observation
from vla_gym.contract import ACTION_DIM


class RandomAgent(Agent):
    def __init__(
        self, seed: int = 0, scale: float = 1.0, chunk_size: int = 1, execute_steps: int = 1
    ) -> None:
        if scale < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        self.seed = int(seed)
        self.scale = float(scale)
        self.chunk_size = int(chunk_size)
        self.execute_steps = int(execute_steps)
        self._rngs: dict[int, np.random.Generator] = {}

    def reset(self, env_ids: Sequence[int]) -> None:
        for env_id in env_ids:
            self._rngs.pop(int(env_id), None)  # a new stream is drawn at the next act

    def _rng(self, env_id: int, obs: Observation, row: int) -> np.random.Generator:
        if env_id not in self._rngs:
            digest = hashlib.sha256()
            for key in sorted(obs):
                value = obs[key][row]
                digest.update(key.encode())
                digest.update(value.encode() if isinstance(value, str) else np.ascontiguousarray(value).tobytes())
            entropy = int.from_bytes(digest.digest()[:8], "little")
            self._rngs[env_id] = np.random.default_rng([self.seed, entropy])
        return self._rngs[env_id]

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        out = np.empty((len(env_ids), self.chunk_size, ACTION_DIM), dtype=np.float32)
        for row, env_id in enumerate(env_ids):
            rng = self._rng(int(env_id), obs, row)
            out[row, :, :-1] = rng.uniform(-self.scale, self.scale, size=(self.chunk_size, ACTION_DIM - 1))
            out[row, :, -1] = rng.choice([-1.0, 1.0], size=self.chunk_size)
        return out
