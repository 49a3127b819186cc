"""Benchmarks by name. Each ``tasks/<name>.py`` defines ``BENCHMARK`` (a :class:`Benchmark`; a module may define
several, named in :data:`BENCHMARKS`); none of them
imports a simulator, so the harness can plan episodes without building an env."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from tasks.plan import EpisodeKey
from tasks.protocol import Protocol
from tasks.scoring import BarPlot, MetricField, Record, Section

if TYPE_CHECKING:
    from tasks.suite_sets import BenchmarkSet

# name -> "module" (its BENCHMARK) or "module:ATTRIBUTE"
BENCHMARKS = {
    "libero_long": "tasks.libero_long",
    "calvin": "tasks.calvin",
    "simpler_bridge": "tasks.simpler_bridge",
    "libero_spatial": "tasks.libero_suites:SPATIAL",
    "libero_object": "tasks.libero_suites:OBJECT",
    "libero_goal": "tasks.libero_suites:GOAL",
    "libero_90": "tasks.libero_suites:LIBERO_90",
}

# Benchmark sets (tasks.suite_sets.BenchmarkSet): several benchmarks run and reported together; same form
BENCHMARK_SETS = {
    "libero": "tasks.suite_sets:LIBERO",
}


class Benchmark(TypingProtocol):
    name: str  # key in BENCHMARKS
    env_id: str  # gymnasium id, e.g. "VLA/LiberoLong-v0"
    entry_point: str  # "module:Class" of its env; vla_gym registers env_id -> entry_point from this
    task_names: tuple[str, ...]
    protocols: Mapping[str, Protocol]  # every named protocol (aliases aside)

    def protocol(self, name: str | None = None, **overrides: Any) -> Protocol:
        """The named protocol (the benchmark's default when None) with field overrides applied."""
        ...

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Every episode the protocol defines, in order; ``plan[k].index == k``."""
        ...

    # Scoring (tasks.scoring.Scoring implements every method below; benchmarks override what differs).
    headline_name: str
    headline_is_rate: bool
    binary_scores: bool
    EPISODE_METRICS: Mapping[str, MetricField]
    watchdog_bounds: Mapping[str, float]  # seconds per reset / step / agent call before the harness calls it a hang

    def summarize(
        self, records: Sequence[Record], planned: int | None = None, protocol: Any = None
    ) -> dict[str, Any]: ...

    def headline_interval(self, metrics: Mapping[str, Any]) -> list[float] | None: ...

    def format_headline(self, value: float | None) -> str: ...

    def episode_score(self, record: Record) -> float: ...

    def check_episode_metrics(self, metrics: Mapping[str, Any]) -> list[str]: ...

    def report_header(self, records: Sequence[Record]) -> list[str]: ...

    def report_sections(self, metrics: Mapping[str, Any]) -> list[Section]: ...

    def plots(self, metrics: Mapping[str, Any]) -> list[BarPlot]: ...

    def failure_task(self, record: Record) -> str: ...


def _load(table: Mapping[str, str], name: str, kind: str, default_attribute: str) -> Any:
    """The object ``table[name]`` points at ("module" -> its ``default_attribute``, or "module:ATTRIBUTE")."""
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    module, _, attribute = table[name].partition(":")
    return getattr(importlib.import_module(module), attribute or default_attribute)


def get_benchmark(name: str) -> Benchmark:
    return _load(BENCHMARKS, name, "benchmark", "BENCHMARK")


def benchmark_watchdog_bounds(name: str) -> Mapping[str, float] | None:
    """The watchdog bounds a registered benchmark declares; None for a name that is not registered."""
    return get_benchmark(name).watchdog_bounds if name in BENCHMARKS else None


def get_benchmark_set(name: str) -> BenchmarkSet:
    return _load(BENCHMARK_SETS, name, "benchmark set", "BENCHMARK_SET")
