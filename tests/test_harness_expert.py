"""The privileged-state transport: a scripted expert through the real harness scores real successes, and the
report says which skill failed."""

from __future__ import annotations

import json

from hydra import compose, initialize_config_module

from harness.evaluate import evaluate
from harness.records import STATUS_OK, EpisodeRecord
from harness.report import failure_breakdown
from tasks.registry import get_benchmark


def test_calvin_expert_through_the_harness(shared_data, tmp_path):
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "env=calvin",
                "policy=expert",
                "env.protocol=vlm4vla_static",
                f"+env.kwargs.data_dir={shared_data / 'calvin'}",
                "episodes=[0]",
                f"output_dir={tmp_path}",
                "progress=false",
            ],
        )
    metrics = evaluate(cfg)
    (line,) = (tmp_path / "episodes.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == STATUS_OK, record.get("error")
    # chain 0 is pinned at length 5 for the expert (tests/test_expert_calvin.py, in-process loop): the harness
    # with obs["privileged"] must reproduce it
    assert record["episode_metrics"]["chain_length"] == 5
    assert record["success"] is True
    assert set(record["agent_info"]) == {"expert_stage", "expert_failure"}
    assert metrics["calvin"]["avg_len"] == 5.0


def test_failure_breakdown_names_the_failed_subtask_and_skill():
    def rec(episode, success, info, metrics=None, task="chain"):
        return EpisodeRecord(
            episode=episode, task_index=0, task=task, within_task=episode, status=STATUS_OK, success=success,
            episode_metrics=metrics or {}, agent_info=info,
        )  # fmt: skip

    chain = ["open_drawer", "lift_red_block_table", "stack_block", "turn_on_led", "close_drawer"]
    records = [
        rec(0, False, {"expert_failure": "grasp"}, {"chain_length": 1, "chain_tasks": chain}),
        rec(1, False, {"expert_failure": "grasp"}, {"chain_length": 1, "chain_tasks": chain}),
        rec(2, False, {"expert_failure": None, "expert_stage": "place"}, {"chain_length": 2, "chain_tasks": chain}),
        rec(3, True, {"expert_failure": None}, {"chain_length": 5, "chain_tasks": chain}),
        rec(4, False, {}, task="carrot_on_plate"),
    ]
    assert failure_breakdown(records, get_benchmark("calvin")) == {("lift_red_block_table", "grasp"): 2, ("stack_block", "place"): 1}
