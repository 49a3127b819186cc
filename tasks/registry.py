"""Benchmarks by name. Each ``tasks/<name>.py`` defines ``BENCHMARK`` (a :class:`Benchmark`); none of them
imports a simulator, so the harness can plan episodes without building an env."""

from __future__ import annotations

import importlib
from typing import Any
from typing import Protocol as TypingProtocol

from tasks.plan import EpisodeKey
from tasks.protocol import Protocol

BENCHMARKS = {
    "libero_long": "tasks.libero_long",
    "calvin": "tasks.calvin",
    "simpler_bridge": "tasks.simpler_bridge",
}


class Benchmark(TypingProtocol):
    name: str  # key in BENCHMARKS
    env_id: str  # gymnasium id, e.g. "VLA/LiberoLong-v0"
    task_names: tuple[str, ...]

    def protocol(self, name: str | None = None, **overrides: Any) -> Protocol:
        """The named protocol (the benchmark's default when None) with field overrides applied."""
        ...

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Every episode the protocol defines, in order; ``plan[k].index == k``."""
        ...


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name]).BENCHMARK
