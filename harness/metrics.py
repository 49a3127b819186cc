"""Metrics from episode records: success rates with Wilson 95% intervals, CALVIN chain metrics, Bridge
partial (grasp) rates. Error episodes count as failures (never successes) and are counted separately."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.records import EpisodeRecord

Z95 = 1.959963984540054  # two-sided 95% normal quantile
CALVIN_CHAIN = 5


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


def success_metrics(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Overall and per-task success (pooled over episodes) and the mean of per-task rates."""
    by_task: dict[int, list[EpisodeRecord]] = {}
    for record in records:
        by_task.setdefault(record.task_index, []).append(record)
    per_task = []
    for task_index in sorted(by_task):
        group = by_task[task_index]
        per_task.append(
            {
                "task_index": task_index,
                "task": group[0].task,
                "errors": sum(r.is_error for r in group),
                **rate(sum(_succeeded(r) for r in group), len(group)),
            }
        )
    task_rates = [t["rate"] for t in per_task]
    return {
        "overall": {
            "errors": sum(r.is_error for r in records),
            **rate(sum(map(_succeeded, records)), len(records)),
        },
        "mean_task_success": sum(task_rates) / len(task_rates) if task_rates else None,
        "per_task": per_task,
    }


def _succeeded(record: EpisodeRecord) -> bool:
    return bool(record.success) and not record.is_error


def chain_length_of(record: EpisodeRecord) -> int:
    """Completed subtasks of a CALVIN chain; an error chain counts 0 (its progress is not trusted)."""
    if record.is_error:
        return 0
    try:
        length = int(record.episode_metrics["chain_length"])
    except KeyError as exc:
        raise KeyError(f"CALVIN episode {record.episode} has no episode_metrics.chain_length") from exc
    if not 0 <= length <= CALVIN_CHAIN:
        raise ValueError(f"CALVIN episode {record.episode}: chain_length {length} outside 0..{CALVIN_CHAIN}")
    return length


def calvin_metrics(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Success rate for chain lengths 1..5 (fraction of chains with >= k successes), average length, and
    per-task attempts/successes (a chain attempts its subtasks up to and including the first failure)."""
    lengths = [chain_length_of(r) for r in records]
    n = len(lengths)
    success_at = {str(k): rate(sum(length >= k for length in lengths), n) for k in range(1, CALVIN_CHAIN + 1)}
    per_task: dict[str, dict[str, int]] = {}
    for record, length in zip(records, lengths, strict=True):
        if record.is_error:
            continue
        tasks = list(record.episode_metrics.get("chain_tasks") or [])
        flags = record.episode_metrics.get("subtask_success")
        if flags is not None:
            flags = [bool(f) for f in flags]
            if flags[:length] != [True] * length or (len(flags) > length and flags[length]):
                raise ValueError(
                    f"CALVIN episode {record.episode}: subtask_success {flags} disagrees with "
                    f"chain_length {length} (it must be {length} successes then a failure)"
                )
        attempted = min(length + 1, len(tasks))
        for position, task in enumerate(tasks[:attempted]):
            counts = per_task.setdefault(task, {"attempts": 0, "successes": 0})
            counts["attempts"] += 1
            counts["successes"] += int(position < length)
    return {
        "chains": n,
        "errors": sum(r.is_error for r in records),
        "success_at": success_at,
        "avg_len": sum(lengths) / n if n else None,
        "per_task": {
            task: {**c, "rate": c["successes"] / c["attempts"]} for task, c in sorted(per_task.items())
        },
    }


def bridge_partial_metrics(records: Sequence[EpisodeRecord]) -> dict[str, Any]:
    """Partial success: the source object was grasped at any step (``episode_metrics.grasped_any``)."""

    def grasped(record: EpisodeRecord) -> bool:
        if record.is_error:
            return False
        if "grasped_any" not in record.episode_metrics:
            raise KeyError(f"Bridge episode {record.episode} has no episode_metrics.grasped_any")
        return bool(record.episode_metrics["grasped_any"])

    by_task: dict[int, list[EpisodeRecord]] = {}
    for record in records:
        by_task.setdefault(record.task_index, []).append(record)
    return {
        "overall": rate(sum(map(grasped, records)), len(records)),
        "per_task": [
            {"task_index": t, "task": group[0].task, **rate(sum(map(grasped, group)), len(group))}
            for t, group in sorted(by_task.items())
        ],
    }


def summarize(records: Sequence[EpisodeRecord], benchmark: str, planned: int | None = None) -> dict[str, Any]:
    """All metrics of one evaluation; ``headline`` is the benchmark's usual single number."""
    out: dict[str, Any] = {
        "benchmark": benchmark,
        "episodes": len(records),
        "planned": planned if planned is not None else len(records),
        **success_metrics(records),
    }
    if benchmark == "calvin":
        out["calvin"] = calvin_metrics(records)
        out["headline"] = {"name": "avg_len", "value": out["calvin"]["avg_len"]}
    else:
        if benchmark == "simpler_bridge":
            out["partial"] = bridge_partial_metrics(records)
        out["headline"] = {"name": "success_rate", "value": out["overall"]["rate"]}
    return out


def episode_score(record: EpisodeRecord, benchmark: str) -> float:
    """Per-episode score used for paired comparisons: chain length for CALVIN, 0/1 success otherwise."""
    if benchmark == "calvin":
        return float(chain_length_of(record))
    return float(_succeeded(record))
