"""Metrics from episode records. What to compute is the benchmark's (``tasks/<name>.py``, see
``tasks.scoring``); this module asks it by name. Error episodes count as failures (never successes) and are
counted separately."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.records import EpisodeRecord
from tasks.registry import get_benchmark
from tasks.scoring import Z95, rate, success_metrics, wilson_interval

__all__ = ["Z95", "episode_score", "rate", "success_metrics", "summarize", "wilson_interval"]


def summarize(
    records: Sequence[EpisodeRecord], benchmark: str, planned: int | None = None, protocol: Any = None
) -> dict[str, Any]:
    """All metrics of one evaluation; ``headline`` is the benchmark's usual single number."""
    return get_benchmark(benchmark).summarize(records, planned=planned, protocol=protocol)


def episode_score(record: EpisodeRecord, benchmark: str) -> float:
    """Per-episode score used for paired comparisons (the benchmark's, e.g. 0/1 success)."""
    return get_benchmark(benchmark).episode_score(record)
