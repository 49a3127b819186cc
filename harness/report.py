"""Evaluation reports: ``results.json`` (everything), ``report.md`` (tables) and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import plots
from harness.records import EpisodeRecord
from tasks.registry import Benchmark, get_benchmark
from tasks.scoring import Section, Table, ci, pct

if TYPE_CHECKING:
    from tasks.suite_sets import BenchmarkSet

__all__ = ["ci", "failure_breakdown", "markdown", "pct", "set_markdown", "write_report", "write_set_report"]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _section(section: Section) -> list[str]:
    lines = ["", f"## {section.title}", ""]
    for i, block in enumerate(section.blocks):
        if i:
            lines.append("")
        lines += _table(block.header, block.rows) if isinstance(block, Table) else [block]
    return lines


def markdown(run_info: dict[str, Any], metrics: dict[str, Any], records: Sequence[EpisodeRecord]) -> str:
    benchmark = get_benchmark(run_info["benchmark"])
    policy = run_info.get("policy", {})
    protocol = run_info["protocol"]
    overall = metrics["overall"]
    lines = [
        f"# {run_info['benchmark']}: {policy.get('_target_', 'policy')}",
        "",
        f"- env: `{run_info['env_id']}`, protocol `{protocol.get('name')}` "
        f"(digest `{run_info['protocol_digest']}`)",
        f"- checkpoint: `{run_info.get('checkpoint')}`" if run_info.get("checkpoint") else "- checkpoint: none",
        f"- seed: {run_info.get('seed')}",
        f"- episodes: {metrics['episodes']} of {metrics['planned']} planned, errors: {overall['errors']}",
        f"- **{metrics['headline']['name']}: {benchmark.format_headline(metrics['headline']['value'])}**",
        *benchmark.report_header(records),
        *_rerun_lines(records),
        "",
        "## Success per task",
        "",
    ]
    rows = [
        [t["task_index"], t["task"], t["n"], t["successes"], pct(t["rate"]), ci(t), t["errors"]]
        for t in metrics["per_task"]
    ]
    rows.append(
        ["", "**overall**", overall["n"], overall["successes"], pct(overall["rate"]), ci(overall), overall["errors"]]
    )
    lines += _table(["#", "task", "episodes", "successes", "rate", "95% CI", "errors"], rows)
    lines += ["", f"Mean of per-task rates: {pct(metrics['mean_task_success'])}."]
    for section in benchmark.report_sections(metrics):
        lines += _section(section)
    breakdown = failure_breakdown(records, benchmark)
    if breakdown:
        lines += ["", "## Failures by the agent's own account (e.g. the scripted expert's failed skill)", ""]
        lines += _table(["task", "failed at", "episodes"], [[t, why, n] for (t, why), n in breakdown.items()])
    errors = [r for r in records if r.is_error]
    if errors:
        lines += ["", f"## Errors ({len(errors)}; counted as failures)", ""]
        lines += _table(
            ["episode", "task", "error"],
            [[r.episode, r.task, _last_line(r.error)] for r in errors[:50]],
        )
        if len(errors) > 50:
            lines.append(f"... and {len(errors) - 50} more in episodes.jsonl")
    return "\n".join(lines) + "\n"


def _rerun_lines(records: Sequence[EpisodeRecord]) -> list[str]:
    """Episodes the runner re-ran from the start because an env worker died or the watchdog stopped a hang."""
    rerun = [r for r in records if r.attempts > 1]
    if not rerun:
        return []
    extra = sum(r.attempts - 1 for r in rerun)
    return [f"- re-runs: {len(rerun)} episodes re-run from the start ({extra} extra attempts) after a worker died "
            f"or the watchdog stopped a hung reset, step or agent call (see the log)"]  # fmt: skip


def failure_breakdown(records: Sequence[EpisodeRecord], benchmark: Benchmark) -> dict[tuple[str, str], int]:
    """(task, what failed) -> count over unsuccessful episodes whose agent said why (``agent_info``); the
    task is the one the benchmark says the episode failed at (e.g. the subtask a chain stopped at)."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        if record.success or record.is_error:
            continue
        why = record.agent_info.get("expert_failure") or record.agent_info.get("expert_stage")
        if not why:
            continue
        task = benchmark.failure_task(record)
        counts[(task, str(why))] = counts.get((task, str(why)), 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return (lines[-1] if lines else "")[:160].replace("|", "/")


def _write_results(folder: Path, run_info: dict[str, Any], metrics: dict[str, Any], report: str) -> dict[str, Path]:
    """results.json (run info + metrics) and report.md into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"results": folder / "results.json", "report": folder / "report.md"}
    results = {"run": run_info, "metrics": metrics}
    paths["results"].write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    paths["report"].write_text(report)
    return paths


def write_report(
    folder: Path, run_info: dict[str, Any], metrics: dict[str, Any], records: Sequence[EpisodeRecord]
) -> dict[str, Path]:
    """Write results.json, report.md and the plots into ``folder``; returns their paths."""
    paths = _write_results(folder, run_info, metrics, markdown(run_info, metrics, records))
    if metrics["per_task"]:
        title = f"{run_info['benchmark']} ({run_info['protocol'].get('name')})"
        paths["plot"] = plots.per_task_plot(metrics, folder / "success_per_task.png", title)
        for plot in get_benchmark(run_info["benchmark"]).plots(metrics):
            paths[plot.key] = plots.bar_plot(plot, folder / plot.filename, title)
    return paths


def set_markdown(run_info: dict[str, Any], metrics: dict[str, Any], bset: BenchmarkSet) -> str:
    """A benchmark set's report: its headline, then the set's own sections (one row per member)."""
    policy = run_info.get("policy") or {}
    lines = [
        f"# {bset.title}: {policy.get('_target_', 'policy')}",
        "",
        f"- benchmark set `{bset.name}`: {', '.join(f'`{m}`' for m in bset.members)}, run one after the other, "
        f"each with its own env, protocol and episodes, into its own folder",
        f"- seed: {run_info.get('seed')}",
        *bset.report_header(metrics),
    ]
    for section in bset.report_sections(metrics):
        lines += _section(section)
    return "\n".join(lines) + "\n"


def write_set_report(
    folder: Path, run_info: dict[str, Any], metrics: dict[str, Any], bset: BenchmarkSet
) -> dict[str, Path]:
    """Write a set's results.json, report.md and plots into ``folder`` (its members' are in subfolders)."""
    paths = _write_results(folder, run_info, metrics, set_markdown(run_info, metrics, bset))
    for plot in bset.plots(metrics):
        paths[plot.key] = plots.bar_plot(plot, folder / plot.filename, bset.title)
    return paths
