"""``python -m harness.sweep checkpoints=DIR env=<name> policy=<name> [overrides]``: score every checkpoint.

All checkpoints run the same episodes on the same env workers (only ``agent.load_weights`` changes), each
into its own result store ``output_dir/<checkpoint name>/`` (resumable per checkpoint). Then
``sweep.json``, ``sweep.md`` (table, best checkpoint, paired comparisons) and ``score_vs_step.png``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from harness import plots
from harness.checkpoints import Checkpoint, find_checkpoints
from harness.cli import run_hydra_main
from harness.compare import bootstrap_mean_ci, paired_comparison
from harness.evaluate import StoreSink, pending, run_into_store, run_options
from harness.metrics import episode_score, summarize
from harness.progress import Progress
from harness.records import EpisodeRecord
from harness.report import write_report
from harness.runner import AgentSource
from harness.spec import RunSpec, build_agent, resolve, run_info, runner_from_cfg
from harness.store import ResultStore

log = logging.getLogger(__name__)


def _folder_name(checkpoint: Checkpoint) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", checkpoint.name)


def _row(
    checkpoint: Checkpoint, metrics: dict[str, Any], scores: dict[int, float], samples: int
) -> dict[str, Any]:
    head = metrics["headline"]
    if head["name"] == "success_rate":
        interval = metrics["overall"]["ci95"]
    else:
        interval = bootstrap_mean_ci(list(scores.values()), samples)
    return {
        "checkpoint": str(checkpoint.path),
        "name": checkpoint.name,
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "episodes": metrics["episodes"],
        "errors": metrics["overall"]["errors"],
        "metric": head["name"],
        "score": head["value"],
        "ci95": list(interval) if interval else None,
    }


def sweep(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate every checkpoint under ``cfg.checkpoints``; returns the sweep summary."""
    spec: RunSpec = resolve(cfg)
    checkpoints, skipped = find_checkpoints(
        str(cfg.checkpoints), str(cfg.get("checkpoint_glob", "*")), list(cfg.get("checkpoint_suffixes"))
    )
    for name in skipped:
        log.warning("skipping %s: its name has no step/epoch number", name)
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    assert isinstance(policy, dict)
    output_dir = Path(str(cfg.output_dir))
    samples = int(cfg.get("bootstrap_samples", 10000))
    factory = functools.partial(build_agent, policy)  # one agent for the whole sweep; weights swapped
    rows: list[dict[str, Any]] = []
    all_scores: list[dict[int, float]] = []
    indices = [key.index for key in spec.episodes]
    with runner_from_cfg(cfg, spec) as runner, contextlib.ExitStack() as stores_open:
        stores, infos = [], []
        for checkpoint in checkpoints:
            info = run_info(spec, policy, int(cfg.seed), checkpoint=str(checkpoint.path.resolve()))
            store = stores_open.enter_context(ResultStore(output_dir / _folder_name(checkpoint), info))
            store.write_config(OmegaConf.to_yaml(cfg, resolve=True))
            stores.append(store)
            infos.append(info)
        sources = [AgentSource(factory, str(checkpoint.path)) for checkpoint in checkpoints]
        if hasattr(runner, "run_many") and len(checkpoints) > 1:
            _run_together(runner, stores, sources, spec, cfg)  # checkpoints in parallel across the cluster
        else:
            for i, (store, source) in enumerate(zip(stores, sources, strict=True)):
                desc = f"[{i + 1}/{len(checkpoints)}] {checkpoints[i].name}"
                run_into_store(runner, store, spec.episodes, source, desc=desc, **run_options(cfg))
        for checkpoint, store, info in zip(checkpoints, stores, infos, strict=True):
            records = store.select(indices)
            metrics = summarize(records, spec.benchmark, planned=len(spec.episodes))
            write_report(store.folder, info, metrics, records)
            scores = _scores(records, spec.benchmark)
            rows.append(_row(checkpoint, metrics, scores, samples))
            all_scores.append(scores)
    summary = _summarize_sweep(spec, rows, all_scores, skipped, samples)
    _write_sweep(output_dir, summary)
    best = summary["best"]
    log.info("best checkpoint: %s (%s %s); table: %s", best["name"], best["metric"], best["score"],
             output_dir / "sweep.md")  # fmt: skip
    return summary


def _run_together(
    runner: Any, stores: list[ResultStore], sources: list[AgentSource], spec: RunSpec, cfg: DictConfig
) -> None:
    """All checkpoints' unfinished episodes as one stream (``runner.run_many``, e.g. Ray): actors move on to
    the next checkpoint while others finish the previous one. Each result goes to its checkpoint's store."""
    from harness.ray_runner import RayJob

    opts = run_options(cfg)
    work = [pending(store, spec.episodes, opts["retry_errors"], opts["videos_per_task"]) for store in stores]
    jobs = [RayJob(todo, source, videos) for (todo, videos), source in zip(work, sources, strict=True)]
    bar = Progress(sum(len(todo) for todo, _ in work), f"{len(stores)} checkpoints", opts["progress"])
    sinks = [StoreSink(store, todo, opts["fps"], bar) for store, (todo, _) in zip(stores, work, strict=True)]
    try:
        for job, result in runner.run_many(jobs):
            sinks[job].add(result)
    finally:
        bar.close()
    for sink in sinks:
        sink.check_complete()


def _scores(records: list[EpisodeRecord], benchmark: str) -> dict[int, float]:
    return {r.episode: episode_score(r, benchmark) for r in records}


def _summarize_sweep(
    spec: RunSpec,
    rows: list[dict[str, Any]],
    all_scores: list[dict[int, float]],
    skipped: list[str],
    samples: int,
) -> dict[str, Any]:
    # Best = highest score; on a tie the earliest checkpoint (less training for the same score).
    best_i = max(range(len(rows)), key=lambda i: (rows[i]["score"] if rows[i]["score"] is not None else -1.0, -i))
    binary = spec.benchmark != "calvin"
    for i, row in enumerate(rows):
        row["vs_best"] = (
            None if i == best_i
            else paired_comparison(all_scores[best_i], all_scores[i], binary=binary, samples=samples)
        )  # fmt: skip
    return {
        "benchmark": spec.benchmark,
        "protocol": spec.protocol.to_dict(),
        "protocol_digest": spec.protocol.digest,
        "episodes": [key.index for key in spec.episodes],
        "checkpoints": rows,
        "skipped": skipped,
        "best": rows[best_i],
    }


def _write_sweep(folder: Path, summary: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    rows = summary["checkpoints"]
    metric = rows[0]["metric"]
    fmt = (lambda v: "n/a" if v is None else f"{100 * v:.1f}%") if metric == "success_rate" else (
        lambda v: "n/a" if v is None else f"{v:.3f}")  # fmt: skip
    lines = [
        f"# Sweep: {summary['benchmark']} (protocol digest `{summary['protocol_digest']}`)",
        "",
        f"{len(summary['episodes'])} episodes per checkpoint, the same for all. "
        f"Best: **{summary['best']['name']}** ({metric} {fmt(summary['best']['score'])}).",
        "",
        f"| checkpoint | step | epoch | episodes | errors | {metric} | 95% CI | diff to best [95% CI] "
        f"| best/other better | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ci = "n/a" if not row["ci95"] else f"[{fmt(row['ci95'][0])}, {fmt(row['ci95'][1])}]"
        cmp = row["vs_best"]
        if cmp is None:
            diff, counts, p = "(best)", "", ""
        else:
            # stored as best - other; shown as other - best (0.0 - x avoids printing -0.000)
            diff = "n/a"
            if cmp["ci95"]:
                diff = f"{0.0 - cmp['mean_diff']:+.3f} [{0.0 - cmp['ci95'][1]:+.3f}, {0.0 - cmp['ci95'][0]:+.3f}]"
            counts, p = f"{cmp['a_better']}/{cmp['b_better']}", f"{cmp['p_value']:.3g}"
        lines.append(
            f"| {row['name']} | {row['step']} | {row['epoch']} | {row['episodes']} | {row['errors']} | "
            f"{fmt(row['score'])} | {ci} | {diff} | {counts} | {p} |"
        )
    test = next((r["vs_best"]["test"] for r in rows if r["vs_best"]), None)
    if test:
        lines += ["", f"Paired on the same episodes: difference = checkpoint - best with a paired bootstrap "
                      f"interval; p from {test.replace('_', ' ')} on the episodes where they differ."]  # fmt: skip
    if summary["skipped"]:
        lines += ["", f"Skipped (no step/epoch in the name): {', '.join(summary['skipped'])}"]
    (folder / "sweep.md").write_text("\n".join(lines) + "\n")
    plots.sweep_plot(rows, folder / "score_vs_step.png", metric, f"{summary['benchmark']} sweep")


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="sweep")
def main(cfg: DictConfig) -> None:
    sweep(cfg)


if __name__ == "__main__":
    run_hydra_main(main)  # accepts checkpoint paths holding "=" (epoch=3-step=12000.pt) unquoted
