"""The runner interface: planned episodes + an agent source in, one result per finished episode out.

A runner owns env workers (kept across ``run`` calls, so a sweep only swaps the agent's weights) and yields
results in completion order; callers key them by episode. ``runner: local`` is :mod:`harness.local_runner`;
other runners (e.g. ``runner: ray`` in ``harness.ray_runner``) plug in through :data:`RUNNERS`.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np

from harness.records import EpisodeRecord
from harness.workers import EnvSpec
from policies.base import Agent
from tasks.plan import EpisodeKey

# runner name -> "module:Class"; the class is called as
# Class(env: EnvSpec, benchmark: str, protocol: dict, seed=..., num_envs=..., **the rest of conf/runner/<name>.yaml)
RUNNERS = {
    "local": "harness.local_runner:LocalRunner",
    "ray": "harness.ray_runner:RayRunner",
}


@dataclasses.dataclass(frozen=True)
class AgentSource:
    """How to get the agent: ``factory()`` builds it (picklable, so remote runners can build their own);
    ``checkpoint`` (sweeps) is loaded with ``agent.load_weights`` before the episodes run."""

    factory: Callable[[], Agent]
    checkpoint: str | None = None


@dataclasses.dataclass
class EpisodeResult:
    record: EpisodeRecord
    #: main-camera frames (uint8 HxWx3) of the episode when a video was asked for it, else None
    frames: list[np.ndarray] | None = None


class Runner(abc.ABC):
    """Runs episodes of one env spec. Subclasses take ``(env, benchmark, protocol, **options)``."""

    def __init__(self, env: EnvSpec, benchmark: str, protocol: dict[str, Any], *, seed: int = 0) -> None:
        self.env = env
        self.benchmark = benchmark
        self.protocol = protocol
        self.seed = seed

    @abc.abstractmethod
    def run(
        self, episodes: Sequence[EpisodeKey], agent: AgentSource, video_episodes: Collection[int] = ()
    ) -> Iterator[EpisodeResult]:
        """Run each episode once (a worker that dies re-runs it); yield results as they finish."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the workers and release the agent."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_runner(
    name: str, env: EnvSpec, benchmark: str, protocol: dict[str, Any], seed: int, **options: Any
) -> Runner:
    if name not in RUNNERS:
        raise KeyError(f"unknown runner {name!r}; known: {sorted(RUNNERS)}")
    module_name, class_name = RUNNERS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise KeyError(f"runner {name!r} is not available in this install ({module_name} is missing)") from exc
        raise
    return getattr(module, class_name)(env, benchmark, protocol, seed=seed, **options)
