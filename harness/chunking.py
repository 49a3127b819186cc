"""Action-chunk execution, in one place for every agent.

The agent returns a chunk of actions per env; the harness executes the first ``execute_steps`` of it
open-loop (fewer if the chunk is shorter), then queries the agent again. Queues are flushed when an episode
or a CALVIN subtask starts, so no action planned for one instruction leaks into the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np

from policies.base import Agent
from vla_gym.contract import ACTION_DIM


class AgentOutputError(ValueError):
    """The agent returned something that is not a valid action chunk."""


def check_agent_chunking(agent: Agent) -> tuple[int, int]:
    """Validate ``chunk_size``/``execute_steps`` of an agent; returns them."""
    chunk, execute = agent.chunk_size, agent.execute_steps
    name = type(agent).__name__
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{name}.chunk_size must be an int >= 1, got {chunk!r}")
    if not isinstance(execute, int) or not 1 <= execute <= chunk:
        raise ValueError(f"{name}.execute_steps must be an int in 1..chunk_size ({chunk}), got {execute!r}")
    return chunk, execute


class ChunkExecutor:
    """Per-env queues of actions still to execute."""

    def __init__(self, num_envs: int, execute_steps: int) -> None:
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
        self.execute_steps = execute_steps
        self._queues: list[deque[np.ndarray]] = [deque() for _ in range(num_envs)]

    def flush(self, env_ids: Iterable[int]) -> None:
        for env_id in env_ids:
            self._queues[env_id].clear()

    def needs_action(self, env_ids: Iterable[int]) -> list[int]:
        """The envs among ``env_ids`` whose queue is empty (the agent must be asked)."""
        return [env_id for env_id in env_ids if not self._queues[env_id]]

    def push(self, env_ids: Sequence[int], chunks: object) -> dict[int, str]:
        """Queue the agent's chunks (B, chunk, 7) for ``env_ids``.

        Returns ``{env_id: reason}`` for envs whose chunk is invalid (non-finite values); those queues stay
        empty. A wrong shape or dtype invalidates the whole batch and raises :class:`AgentOutputError`.
        """
        try:
            arr = np.asarray(chunks)
        except Exception as exc:
            raise AgentOutputError(f"agent returned {type(chunks).__name__}, not an array") from exc
        numeric = np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        if arr.dtype == np.bool_ or not numeric:
            raise AgentOutputError(f"agent returned dtype {arr.dtype}; expected float actions")
        if arr.ndim != 3 or arr.shape[0] != len(env_ids) or arr.shape[1] < 1 or arr.shape[2] != ACTION_DIM:
            raise AgentOutputError(
                f"agent returned shape {arr.shape}; expected ({len(env_ids)}, chunk >= 1, {ACTION_DIM}) "
                f"for a batch of {len(env_ids)} envs"
            )
        # Kept in float64 (exact for float32 input): LIBERO's published loops hand robosuite float64 values,
        # and each env casts to what its original receives.
        arr = arr.astype(np.float64)
        bad: dict[int, str] = {}
        for row, env_id in enumerate(env_ids):
            executed = arr[row, : self.execute_steps]
            if not np.all(np.isfinite(executed)):
                bad[env_id] = f"agent returned non-finite actions {executed.tolist()}"
                continue
            self._queues[env_id].extend(executed)
        return bad

    def pop(self, env_id: int) -> np.ndarray:
        return self._queues[env_id].popleft()
