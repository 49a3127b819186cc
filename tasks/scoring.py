"""How a benchmark scores itself: the base every ``tasks/<name>.py`` benchmark extends.

A benchmark declares its headline metric and how to compute it from episode records, its per-episode score
(for paired comparisons), the schema of the ``episode_metrics`` its env writes at the last step, and any
extra report sections and plots. The harness only calls these methods; it names no benchmark. Everything
here is plain data and arithmetic (no simulator, no plotting library).

Statistics shared by all benchmarks live here too: success rates with Wilson 95% intervals, and error
episodes (an agent or env failure) count as failures, never as successes, and are counted separately.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Z95 = 1.959963984540054  # two-sided 95% normal quantile


class Record(Protocol):
    """What scoring reads of an episode record (``harness.records.EpisodeRecord`` has it)."""

    episode: int
    task_index: int
    task: str
    success: bool | None
    episode_metrics: dict[str, Any]
    agent_info: dict[str, Any]

    @property
    def is_error(self) -> bool: ...


# ---------------------------------------------------------------------------------------------- statistics
def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval of a binomial proportion; None when there are no trials."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp float noise only (the exact interval lies inside [0, 1]).
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(successes: int, n: int) -> dict[str, Any]:
    ci = wilson_interval(successes, n)
    return {
        "n": n,
        "successes": successes,
        "rate": successes / n if n else None,
        "ci95": list(ci) if ci else None,
    }


def succeeded(record: Record) -> bool:
    return bool(record.success) and not record.is_error


def by_task(records: Sequence[Record]) -> dict[int, list[Record]]:
    groups: dict[int, list[Record]] = {}
    for record in records:
        groups.setdefault(record.task_index, []).append(record)
    return groups


def success_metrics(records: Sequence[Record]) -> dict[str, Any]:
    """Overall and per-task success (pooled over episodes) and the mean of per-task rates."""
    groups = by_task(records)
    per_task = []
    for task_index in sorted(groups):
        group = groups[task_index]
        per_task.append(
            {
                "task_index": task_index,
                "task": group[0].task,
                "errors": sum(r.is_error for r in group),
                **rate(sum(succeeded(r) for r in group), len(group)),
            }
        )
    task_rates = [t["rate"] for t in per_task]
    return {
        "overall": {
            "errors": sum(r.is_error for r in records),
            **rate(sum(map(succeeded, records)), len(records)),
        },
        "mean_task_success": sum(task_rates) / len(task_rates) if task_rates else None,
        "per_task": per_task,
    }


# ---------------------------------------------------------------------------------------------- formatting
def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def ci(entry: Mapping[str, Any]) -> str:
    return "n/a" if not entry.get("ci95") else f"[{pct(entry['ci95'][0])}, {pct(entry['ci95'][1])}]"


# ---------------------------------------------------------------------------------------------- report parts
@dataclasses.dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


@dataclasses.dataclass(frozen=True)
class Section:
    """A report section: a ``## title`` then its blocks (paragraphs and tables), blank lines between."""

    title: str
    blocks: tuple[str | Table, ...]


@dataclasses.dataclass(frozen=True)
class BarPlot:
    """A bar chart of rates with 95% intervals, written as ``filename`` and listed under ``key``."""

    key: str
    filename: str
    entries: tuple[Mapping[str, Any], ...]  # each a rate() dict
    positions: tuple[int, ...]
    xlabel: str
    ylabel: str
    subtitle: str | None = None
    labels: tuple[str, ...] | None = None  # tick labels at ``positions`` (None: the positions themselves)


@dataclasses.dataclass(frozen=True)
class MetricField:
    """One key of a benchmark's ``episode_metrics``: its type and meaning."""

    type: type | tuple[type, ...]
    doc: str
    required: bool = True


# ---------------------------------------------------------------------------------------------- the base
class Scoring:
    """Success-rate scoring; benchmarks override what differs.

    ``EPISODE_METRICS`` is the schema of the ``episode_metrics`` dict the benchmark's env writes at the last
    step (every benchmark's env writes ``policy_steps``); :meth:`check_episode_metrics` checks a dict
    against it.
    """

    name: str = ""
    simulator_packages: tuple[str, ...] = ()  # distributions whose versions can change a score (recorded)
    headline_name = "success_rate"
    headline_is_rate = True  # the headline is a proportion (shown as a percentage, Wilson interval)
    binary_scores = True  # episode_score is 0/1 (paired tests: McNemar's exact test, else the sign test)
    EPISODE_METRICS: Mapping[str, MetricField] = {}
    #: The harness watchdog's bounds in seconds: one env reset (a fresh worker's first reset builds its env),
    #: one env step, one agent call (the first may compile or warm up). Tens to hundreds of times what a
    #: healthy call takes on a loaded machine, so that only a hang reaches them.
    watchdog_bounds: Mapping[str, float] = {"reset": 600.0, "step": 60.0, "agent": 600.0}

    # ---- numbers
    def summarize(
        self, records: Sequence[Record], planned: int | None = None, protocol: Any = None
    ) -> dict[str, Any]:
        """All metrics of one evaluation; ``headline`` is the benchmark's usual single number. ``protocol``:
        the run's protocol (the benchmark's default when None), for benchmarks whose metrics depend on it."""
        out: dict[str, Any] = {
            "benchmark": self.name,
            "episodes": len(records),
            "planned": planned if planned is not None else len(records),
            **success_metrics(records),
        }
        out.update(self.extra_metrics(records, protocol))
        out["headline"] = {"name": self.headline_name, "value": self.headline(out)}
        return out

    def extra_metrics(self, records: Sequence[Record], protocol: Any = None) -> dict[str, Any]:
        """Benchmark-specific entries added to the metrics (beside overall / per_task)."""
        return {}

    def headline(self, metrics: Mapping[str, Any]) -> float | None:
        return metrics["overall"]["rate"]

    def headline_interval(self, metrics: Mapping[str, Any]) -> list[float] | None:
        """The headline's 95% interval when the metrics hold one (a rate's Wilson interval); None: the
        caller bootstraps it from per-episode scores."""
        return metrics["overall"]["ci95"] if self.headline_is_rate else None

    def format_headline(self, value: float | None) -> str:
        return pct(value) if self.headline_is_rate else num(value)

    def episode_score(self, record: Record) -> float:
        """Per-episode score for paired comparisons: 0/1 success unless the benchmark says otherwise."""
        return float(succeeded(record))

    def check_episode_metrics(self, metrics: Mapping[str, Any]) -> list[str]:
        """Problems of an env's ``episode_metrics`` against :attr:`EPISODE_METRICS` (empty when none)."""
        problems = []
        for key, field in self.EPISODE_METRICS.items():
            if key not in metrics:
                if field.required:
                    problems.append(f"missing {key!r}")
            elif not isinstance(metrics[key], field.type) or (
                isinstance(metrics[key], bool) and field.type in (int, float)
            ):
                problems.append(f"{key!r} is {type(metrics[key]).__name__}, expected {field.type}")
        return problems

    # ---- report
    def report_header(self, records: Sequence[Record]) -> list[str]:
        """Extra bullet lines under the report's headline."""
        return []

    def report_sections(self, metrics: Mapping[str, Any]) -> list[Section]:
        return []

    def plots(self, metrics: Mapping[str, Any]) -> list[BarPlot]:
        return []

    def failure_task(self, record: Record) -> str:
        """The task an unsuccessful episode failed at (for the failure breakdown)."""
        return record.task
