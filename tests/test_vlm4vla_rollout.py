"""End to end: a tiny random Qwen3-VL VLM4VLA agent drives VLA/LiberoLong-v0 through the harness."""

from __future__ import annotations

import json


def test_short_libero_rollout_through_the_harness(tmp_path) -> None:
    from hydra import compose, initialize_config_module

    from harness.evaluate import evaluate

    out = tmp_path / "run"
    overrides = [
        "env=libero_long",
        "policy=qwen3vl2b",
        "policy.model_path=tiny",  # random tiny backbone: the pipeline is real, the actions are not
        "policy.device=cpu",
        "policy.use_native_image=true",
        "+env.kwargs.native_image=true",
        "+env.protocol_overrides.max_steps=8",
        "episodes=[0]",
        f"output_dir={out}",
        "progress=false",
    ]
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    metrics = evaluate(cfg)
    assert metrics["episodes"] == 1
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 1
    rec = records[0]
    assert rec["status"] == "ok" and rec["error"] is None
    # the paper's loop (the default protocol) runs max_steps + 5 policy steps (its counter includes the no-ops)
    from tasks.libero_long import BENCHMARK

    assert BENCHMARK.protocol(max_steps=8).max_policy_steps == 13
    assert rec["steps"] == 13 and rec["truncated"] is True
    assert rec["agent_calls"] == 4  # LIBERO: chunks of 4 predicted, 4 executed: 13 steps take 4 calls
    run = json.loads((out / "run.json").read_text())
    assert run["policy"]["family"] == "qwen3vl"
