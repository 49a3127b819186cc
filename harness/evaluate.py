"""``python -m harness.evaluate env=<name> policy=<name> [overrides]``: score an agent on a benchmark.

Writes into ``output_dir`` the result store (run.json, config.yaml, episodes.jsonl; see harness.store),
results.json, report.md, success_per_task.png and, on request, videos/. Re-running the same command resumes.
An env config naming a benchmark set (``benchmark_set:``, see tasks.suite_sets) runs each member into
``output_dir/<member>/`` as above and writes the set's report beside them (harness.benchmark_set).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.cli import run_hydra_main
from harness.metrics import summarize
from harness.progress import Progress
from harness.report import write_report
from harness.runner import AgentSource, EpisodeResult, Runner
from harness.spec import RunSpec, build_agent, is_set_config, resolve, run_info, runner_from_cfg
from harness.store import ResultStore
from harness.video import video_episodes, video_path, write_video
from tasks.plan import EpisodeKey
from tasks.registry import get_benchmark

log = logging.getLogger(__name__)


def run_into_store(
    runner: Runner,
    store: ResultStore,
    episodes: Sequence[EpisodeKey],
    agent: AgentSource,
    *,
    retry_errors: bool = False,
    videos_per_task: int = 0,
    fps: int = 20,
    progress: bool | str = "auto",
    desc: str = "episodes",
) -> int:
    """Run the episodes of ``episodes`` not yet in ``store``; returns how many ran."""
    todo, videos = pending(store, episodes, retry_errors, videos_per_task)
    if not todo:
        return 0
    bar = Progress(len(todo), desc, progress)
    try:
        sink = StoreSink(store, todo, fps, bar)
        for result in runner.run(todo, agent, videos):
            sink.add(result)
    finally:
        bar.close()
    sink.check_complete()
    return len(todo)


def run_options(cfg: DictConfig) -> dict[str, Any]:
    """The config's settings of :func:`run_into_store` (resume, videos, progress), read in one place."""
    return {
        "retry_errors": bool(cfg.get("retry_errors", False)),
        "videos_per_task": int(cfg.video.episodes_per_task),
        "fps": int(cfg.video.fps),
        "progress": cfg.get("progress", "auto"),
    }


def pending(
    store: ResultStore, episodes: Sequence[EpisodeKey], retry_errors: bool, videos_per_task: int
) -> tuple[list[EpisodeKey], set[int]]:
    """The planned episodes not yet in ``store``, and which of them to film."""
    done = store.done(retry_errors)
    todo = [key for key in episodes if key.index not in done]
    if len(todo) < len(episodes):
        log.info("%s: %d of %d episodes already done, running %d", store.folder, len(episodes) - len(todo),
                 len(episodes), len(todo))  # fmt: skip
    return todo, video_episodes(episodes, videos_per_task) & {key.index for key in todo}


class StoreSink:
    """Writes a runner's results into one store (and videos), refusing episodes not asked for or repeated."""

    def __init__(self, store: ResultStore, todo: Sequence[EpisodeKey], fps: int, bar: Progress) -> None:
        self.store, self.fps, self.bar = store, fps, bar
        self.keys = {key.index for key in todo}
        self.seen: set[int] = set()

    def add(self, result: EpisodeResult) -> None:
        record = result.record
        if record.episode not in self.keys or record.episode in self.seen:
            raise RuntimeError(f"runner returned episode {record.episode} which was not asked for (or twice)")
        self.seen.add(record.episode)
        self.store.append(record)
        if result.frames:
            write_video(video_path(self.store.folder / "videos", record.episode, record.task), result.frames, self.fps)
        self.bar.update(record)

    def check_complete(self) -> None:
        missing = sorted(self.keys - self.seen)
        if missing:
            raise RuntimeError(f"runner finished without episodes {missing[:20]} ({len(missing)} missing)")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) one evaluation and write its reports; returns the metrics. An env config naming a
    benchmark set (``benchmark_set:``) runs every member of the set (see harness.benchmark_set)."""
    if is_set_config(cfg.env):
        from harness.benchmark_set import evaluate_set  # it builds on this module

        return evaluate_set(cfg)
    return evaluate_benchmark(cfg, resolve(cfg))


def evaluate_benchmark(cfg: DictConfig, spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) the episodes of ``spec`` (resolved from ``cfg``) into ``cfg.output_dir`` and write
    its reports; returns the metrics."""
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    assert isinstance(policy, dict)
    output_dir = Path(str(cfg.output_dir))
    info = run_info(spec, policy, int(cfg.seed))
    with ResultStore(output_dir, info) as store:
        store.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        if store.versions_changed:
            log.warning("%s was started with other package versions (see run.json); resuming anyway", output_dir)
        source = AgentSource(factory=functools.partial(build_agent, policy))
        with runner_from_cfg(cfg, spec) as runner:
            run_into_store(runner, store, spec.episodes, source, desc=spec.benchmark, **run_options(cfg))
        records = store.select([key.index for key in spec.episodes])
    metrics = summarize(records, spec.benchmark, planned=len(spec.episodes), protocol=spec.protocol)
    paths = write_report(output_dir, info, metrics, records)
    head = metrics["headline"]
    value = get_benchmark(spec.benchmark).format_headline(head["value"])
    log.info("%s %s = %s over %d episodes (%d errors); report: %s", spec.benchmark, head["name"], value,
             metrics["episodes"], metrics["overall"]["errors"], paths["report"])  # fmt: skip
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="config")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    run_hydra_main(main)  # accepts checkpoint paths holding "=" (epoch=3-step=12000.pt) unquoted
