"""PNG plots (matplotlib, Agg backend): per-task success with 95% intervals, a benchmark's extra bar plots,
sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from tasks.scoring import BarPlot

matplotlib.use("Agg")  # headless: never open a window
import matplotlib.pyplot as plt  # noqa: E402


def _errors(entries: Sequence[dict[str, Any]]) -> tuple[list[float], list[list[float]]]:
    rates, err = [], [[], []]
    for e in entries:
        r = e["rate"] or 0.0
        lo, hi = e["ci95"] or (r, r)
        rates.append(r)
        err[0].append(max(0.0, r - lo))
        err[1].append(max(0.0, hi - r))
    return rates, err


def per_task_plot(metrics: dict[str, Any], path: Path, title: str) -> Path:
    tasks = metrics["per_task"]
    rates, err = _errors(tasks)
    labels = [f"{t['task_index']}: {t['task'][:40]}" for t in tasks]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(tasks) + 1.6))
    ax.barh(range(len(tasks)), rates, xerr=err, color="#4c72b0", capsize=3)
    overall = metrics["overall"]["rate"]
    if overall is not None:
        ax.axvline(overall, color="#c44e52", linestyle="--", label=f"overall {overall:.1%}")
        ax.legend(loc="lower right")
    ax.set_yticks(range(len(tasks)), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("success rate (95% Wilson interval)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bar_plot(plot: BarPlot, path: Path, title: str) -> Path:
    """A benchmark's extra plot (``tasks.scoring.BarPlot``): rates at ``plot.positions`` with 95% intervals."""
    rates, err = _errors(plot.entries)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(plot.positions, rates, yerr=err, color="#55a868", capsize=3)
    if plot.labels is not None:
        ax.set_xticks(plot.positions, plot.labels, rotation=20 if len(plot.labels) > 3 else 0, ha="right")
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(f"{title}\n{plot.subtitle}" if plot.subtitle else title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sweep_plot(rows: Sequence[dict[str, Any]], path: Path, metric: str, title: str) -> Path:
    """Score against training step (or epoch when no step is known), with 95% intervals when given."""
    xs = [r["step"] if r["step"] is not None else r["epoch"] for r in rows]
    ys = [r["score"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    if all(r.get("ci95") for r in rows):
        lo = [r["ci95"][0] for r in rows]
        hi = [r["ci95"][1] for r in rows]
        ax.fill_between(xs, lo, hi, alpha=0.2, color="#4c72b0", label="95% interval")
    ax.plot(xs, ys, marker="o", color="#4c72b0", label=metric)
    best = max(range(len(rows)), key=lambda i: (ys[i], -i))
    ax.scatter([xs[best]], [ys[best]], s=120, facecolors="none", edgecolors="#c44e52", label="best")
    ax.set_xlabel("training step" if rows[0]["step"] is not None else "epoch")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
