"""The no-op agent: holds still with the gripper open. For smoke runs and harness overhead benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policies.base import Agent, Observation
from vla_gym.contract import ACTION_DIM, GRIPPER_CLOSE, GRIPPER_OPEN


class NoopAgent(Agent):
    """Returns zero motion and a fixed gripper command (+1 open by default, -1 close)."""

    def __init__(self, gripper: float = GRIPPER_OPEN, chunk_size: int = 1, execute_steps: int = 1) -> None:
        if gripper not in (GRIPPER_OPEN, GRIPPER_CLOSE):
            raise ValueError(f"gripper must be {GRIPPER_OPEN} (open) or {GRIPPER_CLOSE} (close), got {gripper}")
        self.gripper = float(gripper)
        self.chunk_size = int(chunk_size)
        self.execute_steps = int(execute_steps)

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        out = np.zeros((len(env_ids), self.chunk_size, ACTION_DIM), dtype=np.float32)
        out[..., -1] = self.gripper
        return out
