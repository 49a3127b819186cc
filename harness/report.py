"""Evaluation reports: ``results.json`` (everything), ``report.md`` (tables) and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import plots
from harness.records import EpisodeRecord


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def ci(entry: dict[str, Any]) -> str:
    return "n/a" if not entry.get("ci95") else f"[{pct(entry['ci95'][0])}, {pct(entry['ci95'][1])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def markdown(run_info: dict[str, Any], metrics: dict[str, Any], records: Sequence[EpisodeRecord]) -> str:
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
        f"- **{metrics['headline']['name']}: {_fmt_headline(metrics)}**",
        *_asset_lines(records),
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
    if "calvin" in metrics:
        cal = metrics["calvin"]
        lines += ["", "## CALVIN chains", ""]
        lines += _table(
            ["", *[f"{k}/5" for k in range(1, 6)], "avg. len"],
            [["rate", *[pct(cal["success_at"][str(k)]["rate"]) for k in range(1, 6)], _num(cal["avg_len"])],
             ["95% CI", *[ci(cal["success_at"][str(k)]) for k in range(1, 6)], ""]],
        )  # fmt: skip
        lines += ["", "Per subtask (attempts are subtasks reached in a chain):", ""]
        lines += _table(
            ["subtask", "attempts", "successes", "rate"],
            [[t, c["attempts"], c["successes"], pct(c["rate"])] for t, c in cal["per_task"].items()],
        )
    if "partial" in metrics:
        part = metrics["partial"]
        lines += ["", "## Partial success (object grasped at any step)", ""]
        rows = [
            [t["task_index"], t["task"], t["n"], t["successes"], pct(t["rate"]), ci(t)]
            for t in [*part["per_task"], {**part["overall"], "task_index": "", "task": "**overall**"}]
        ]
        lines += _table(["#", "task", "episodes", "grasped", "rate", "95% CI"], rows)
    breakdown = failure_breakdown(records)
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


def _asset_lines(records: Sequence[EpisodeRecord]) -> list[str]:
    """The asset digests the env reported (Bridge); a loud warning when any episode ran on stand-in assets."""
    digests = sorted({str(r.episode_metrics["asset_digest"]) for r in records if "asset_digest" in r.episode_metrics})
    if not digests:
        return []
    lines = [f"- assets: digest {', '.join(f'`{d}`' for d in digests)}"]
    if any(r.episode_metrics.get("assets_are_standins") for r in records):
        lines.append("- **WARNING: stand-in assets (test data), not benchmark numbers**")
    return lines


def failure_breakdown(records: Sequence[EpisodeRecord]) -> dict[tuple[str, str], int]:
    """(task, what failed) -> count over unsuccessful episodes whose agent said why (``agent_info``).

    For CALVIN the task is the subtask the chain stopped at."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        if record.success or record.is_error:
            continue
        why = record.agent_info.get("expert_failure") or record.agent_info.get("expert_stage")
        if not why:
            continue
        task = record.task
        chain = record.episode_metrics.get("chain_tasks")
        length = record.episode_metrics.get("chain_length")
        if chain and isinstance(length, int) and length < len(chain):
            task = chain[length]
        counts[(task, str(why))] = counts.get((task, str(why)), 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return (lines[-1] if lines else "")[:160].replace("|", "/")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _fmt_headline(metrics: dict[str, Any]) -> str:
    value = metrics["headline"]["value"]
    return _num(value) if metrics["headline"]["name"] == "avg_len" else pct(value)


def write_report(
    folder: Path, run_info: dict[str, Any], metrics: dict[str, Any], records: Sequence[EpisodeRecord]
) -> dict[str, Path]:
    """Write results.json, report.md and the plots into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"results": folder / "results.json", "report": folder / "report.md"}
    results = {"run": run_info, "metrics": metrics}
    paths["results"].write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    paths["report"].write_text(markdown(run_info, metrics, records))
    if metrics["per_task"]:
        title = f"{run_info['benchmark']} ({run_info['protocol'].get('name')})"
        paths["plot"] = plots.per_task_plot(metrics, folder / "success_per_task.png", title)
        if "calvin" in metrics and metrics["calvin"]["chains"]:
            paths["calvin_plot"] = plots.calvin_plot(metrics["calvin"], folder / "calvin_chains.png", title)
    return paths
