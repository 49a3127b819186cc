"""The agent interface: small, batch-first, benchmark-aware.

The harness calls, for a rollout over N envs:

1. ``agent.configure(benchmark, protocol)`` once, before any episode (choose the output mapping).
2. ``agent.reset(env_ids)`` whenever those envs start an episode (or a CALVIN subtask): drop any per-env state.
3. ``agent.act(obs, env_ids)`` with the observations of the envs that need an action, stacked on axis 0
   (``image`` (B, 224, 224, 3) uint8, ``wrist_image`` likewise, ``language`` a list of B strings,
   ``proprio`` (B, D) float32 when the env provides it). It returns an action chunk per env:
   float array (B, chunk, 7) in the env contract (gripper +1 open / -1 close); float32, or float64 where the
   values carry more (the harness keeps them exact up to the env, which casts as its original does).
   The harness executes the first ``execute_steps`` actions of each chunk open-loop (fewer if the chunk is
   shorter) before asking again; that logic lives in one place (``harness.chunking``).
   Agents that set ``needs_privileged = True`` (scripted experts only) also get ``obs["privileged"]``, a list
   of each env's ``env.unwrapped.privileged_state()``: simulator ground truth no real policy may use.
   Agents that set ``needs_native_image`` (True, or the benchmarks on which they need it) also get
   ``obs["image_native"]`` (B, S, S, 3) uint8: the upright camera image at the env's render size S (256 on
   LIBERO), before the resize to 224, for policies that preprocess the render themselves (a crop). The
   harness reads the declaration from the agent's class when it builds the env spec and turns the env's
   ``native_image`` option on; an env that cannot give it is refused before any episode runs.
   When an episode ends, ``agent.episode_info(env_id)`` is stored in its record (e.g. an expert's failed skill).
4. ``agent.close()`` at the end.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

import numpy as np

Observation = dict[str, Any]


class Agent(abc.ABC):
    """Base class for every policy. Subclasses set ``chunk_size`` and ``execute_steps``."""

    #: actions the agent returns per query
    chunk_size: int = 1
    #: how many of them the harness executes open-loop before querying again (<= chunk_size)
    execute_steps: int = 1
    #: scripted experts only: receive obs["privileged"] (simulator ground truth)
    needs_privileged: bool = False
    #: receive obs["image_native"] (the render before the resize to 224): True on every benchmark, or the
    #: names of the benchmarks that need it, e.g. ("libero_long",). Read from the class, before it is built.
    needs_native_image: bool | tuple[str, ...] = False

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Called once before rollouts with the benchmark name and the protocol dict."""

    def reset(self, env_ids: Sequence[int]) -> None:  # noqa: B027 - optional hook
        """A new episode (or CALVIN subtask) starts in these envs."""

    @abc.abstractmethod
    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        """Return float actions of shape (len(env_ids), chunk, 7)."""

    def episode_info(self, env_id: int) -> dict[str, Any]:
        """Notes on the episode that just ended in ``env_id``, stored in its record (JSON-serialisable)."""
        return {}

    def load_weights(self, checkpoint: str) -> None:
        """Swap in another checkpoint's weights (used by sweeps); agents without weights refuse."""
        raise NotImplementedError(f"{type(self).__name__} has no weights to load")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


def batch_size(obs: Observation) -> int:
    return len(obs["language"])


def needs_native_image_on(agent_class: type[Agent], benchmark: str) -> bool:
    """Whether ``agent_class`` declares that it needs ``obs["image_native"]`` on ``benchmark``."""
    declared = agent_class.needs_native_image
    if isinstance(declared, bool):
        return declared
    if isinstance(declared, str) or not all(isinstance(name, str) for name in declared):
        raise TypeError(
            f"{agent_class.__name__}.needs_native_image must be a bool or a tuple of benchmark names, "
            f"got {declared!r}"
        )
    return benchmark in declared
