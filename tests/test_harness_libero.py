"""A short harness evaluation on the real LIBERO-Long env (two episodes of three policy steps)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import toy_env
from hydra import compose, initialize_config_module

from harness.evaluate import run_into_store
from harness.metrics import summarize
from harness.report import write_report
from harness.runner import AgentSource
from harness.spec import resolve, run_info, runner_from_cfg
from harness.store import ResultStore, read_records
from tasks.libero_long import TASK_NAMES, instruction


def test_libero_long_short_evaluation(tmp_path: Path) -> None:
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "env=libero_long", "policy=noop", "episodes=[0,1]", "num_envs=1", f"output_dir={tmp_path}",
            "+env.protocol_overrides.max_steps=3", "video.episodes_per_task=1", "progress=false",
        ])  # fmt: skip
    spec = resolve(cfg)
    assert [k.index for k in spec.episodes] == [0, 1] and spec.protocol.max_steps == 3
    agent = toy_env.ConstantAgent(w=0.0)  # zero motion, gripper open: a no-op that records what it saw
    info = run_info(spec, {"_target_": "toy_env.ConstantAgent", "w": 0.0}, int(cfg.seed))
    with ResultStore(tmp_path, info) as store, runner_from_cfg(cfg, spec) as runner:
        ran = run_into_store(runner, store, spec.episodes, AgentSource(lambda: agent), videos_per_task=1)
        records = store.select([0, 1])
    assert ran == 2
    for record in records:
        assert (record.status, record.success, record.truncated, record.steps) == ("ok", False, True, 3), record
        assert record.task == TASK_NAMES[0]
        assert record.episode_metrics["policy_steps"] == 3
    languages = {text for _, batch in agent.calls for text in batch}
    assert languages == {instruction(TASK_NAMES[0])}  # the instruction arrived, not blanked
    assert sum(len(ids) for ids in agent.resets) == 2
    metrics = summarize(records, spec.benchmark, planned=2)
    paths = write_report(tmp_path, info, metrics, records)
    assert json.loads(paths["results"].read_text())["metrics"]["overall"] == {
        "n": 2, "successes": 0, "rate": 0.0, "errors": 0, "ci95": [0.0, metrics["overall"]["ci95"][1]],
    }  # fmt: skip
    frames = imageio.mimread(tmp_path / "videos" / f"episode_00000_{TASK_NAMES[0]}.mp4")
    assert len(frames) == 4 and frames[0].shape == (224, 224, 3) and frames[0].std() > 5  # a rendered scene
    assert [r.episode for r in read_records(tmp_path)] == [0, 1]
