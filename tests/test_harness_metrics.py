"""Metrics, paired statistics and checkpoint discovery, against hand-computed values."""

from __future__ import annotations

import pytest

from harness.checkpoints import find_checkpoints, parse_name
from harness.compare import bootstrap_mean_ci, exact_binomial_two_sided, paired_comparison
from harness.metrics import summarize, wilson_interval
from harness.records import EpisodeRecord
from tasks.calvin import calvin_metrics
from tasks.simpler_bridge import partial_metrics as bridge_partial_metrics


def rec(episode: int, task_index: int, success: bool, status: str = "ok", **metrics: object) -> EpisodeRecord:
    return EpisodeRecord(
        episode=episode, task_index=task_index, task=f"task{task_index}", within_task=episode,
        status=status, success=success, episode_metrics=dict(metrics),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (8, 10, 0.4901625, 0.9433178),  # textbook Wilson score interval values
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
        (1, 2, 0.0945312, 0.9054688),
    ],
)
def test_wilson_interval_matches_hand_computed_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_wilson_interval_edge_cases() -> None:
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def test_success_metrics_count_errors_as_failures_never_successes() -> None:
    records = [
        rec(0, 0, True), rec(1, 0, False), rec(2, 0, True, status="error"),  # error with success flag set
        rec(3, 1, True), rec(4, 1, True),
    ]  # fmt: skip
    m = summarize(records, "libero_long")
    assert m["overall"]["successes"] == 3
    assert m["overall"]["n"] == 5
    assert m["overall"]["errors"] == 1
    assert m["overall"]["rate"] == pytest.approx(0.6)
    assert m["per_task"][0]["rate"] == pytest.approx(1 / 3)
    assert m["per_task"][0]["errors"] == 1
    assert m["per_task"][1]["rate"] == 1.0
    assert m["mean_task_success"] == pytest.approx((1 / 3 + 1) / 2)
    assert m["headline"] == {"name": "success_rate", "value": pytest.approx(0.6)}
    assert m["overall"]["ci95"] == pytest.approx(list(wilson_interval(3, 5)))


def test_calvin_chain_metrics_hand_computed() -> None:
    tasks_a = ["open_drawer", "turn_on_led", "move_slider_left", "lift_red_block_table", "stack_block"]
    tasks_b = ["turn_on_led", "open_drawer", "close_drawer", "push_into_drawer", "turn_off_led"]
    records = [
        rec(0, 0, True, chain_length=5, chain_tasks=tasks_a, subtask_success=[True] * 5),
        rec(1, 1, False, chain_length=2, chain_tasks=tasks_b, subtask_success=[True, True, False]),
        rec(2, 0, False, chain_length=0, chain_tasks=tasks_a, subtask_success=[False]),
        rec(3, 1, False, chain_length=3, chain_tasks=tasks_b),  # no subtask_success: chain_length decides
        rec(4, 0, False, status="error"),  # an error chain counts 0 and no per-task attempts
    ]
    m = calvin_metrics(records)
    # lengths 5, 2, 0, 3, 0 over 5 chains
    expected = {"1": 3 / 5, "2": 3 / 5, "3": 2 / 5, "4": 1 / 5, "5": 1 / 5}
    assert {k: v["rate"] for k, v in m["success_at"].items()} == pytest.approx(expected)
    assert m["avg_len"] == pytest.approx(10 / 5)
    assert m["avg_len"] == pytest.approx(sum(expected.values()))  # average length = sum of the five rates
    assert m["errors"] == 1
    # per task: attempts are the subtasks reached (up to and including the first failure)
    assert m["per_task"]["open_drawer"] == {"attempts": 4, "successes": 3, "rate": 0.75}
    assert m["per_task"]["turn_on_led"] == {"attempts": 3, "successes": 3, "rate": 1.0}
    assert m["per_task"]["close_drawer"] == {"attempts": 2, "successes": 1, "rate": 0.5}
    assert m["per_task"]["push_into_drawer"] == {"attempts": 1, "successes": 0, "rate": 0.0}
    assert "turn_off_led" not in m["per_task"]
    assert m["per_task"]["stack_block"] == {"attempts": 1, "successes": 1, "rate": 1.0}
    full = summarize(records, "calvin")
    assert full["headline"] == {"name": "avg_len", "value": pytest.approx(2.0)}


def test_calvin_inconsistent_record_is_refused() -> None:
    bad = rec(0, 0, False, chain_length=2, chain_tasks=["a", "b", "c"], subtask_success=[True, False, True])
    with pytest.raises(ValueError, match="disagrees"):
        calvin_metrics([bad])
    with pytest.raises(KeyError, match="chain_length"):
        calvin_metrics([rec(1, 0, False)])


def test_bridge_partial_rates() -> None:
    records = [
        rec(0, 0, True, grasped_any=True), rec(1, 0, False, grasped_any=True), rec(2, 0, False, grasped_any=False),
        rec(3, 1, False, grasped_any=False), rec(4, 1, False, status="error"),
    ]  # fmt: skip
    m = bridge_partial_metrics(records)
    assert m["overall"]["successes"] == 2 and m["overall"]["n"] == 5
    assert [t["rate"] for t in m["per_task"]] == pytest.approx([2 / 3, 0.0])
    assert summarize(records, "simpler_bridge")["partial"]["overall"]["rate"] == pytest.approx(0.4)


def test_exact_mcnemar_and_sign_test_values() -> None:
    assert exact_binomial_two_sided(4, 4) == pytest.approx(0.125)  # 2 * (1/2)^4
    assert exact_binomial_two_sided(1, 6) == pytest.approx(2 * 7 / 64)
    assert exact_binomial_two_sided(3, 6) == 1.0
    assert exact_binomial_two_sided(0, 0) == 1.0
    cmp = paired_comparison({0: 1, 1: 1, 2: 0, 3: 1, 9: 1}, {0: 0, 1: 1, 2: 1, 3: 0}, binary=True, samples=2000)
    assert cmp["episodes"] == 4  # only shared episodes
    assert (cmp["a_better"], cmp["b_better"]) == (2, 1)
    assert cmp["mean_diff"] == pytest.approx(0.25)
    assert cmp["p_value"] == pytest.approx(1.0)
    lo, hi = cmp["ci95"]
    assert lo <= 0.25 <= hi
    assert bootstrap_mean_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert bootstrap_mean_ci([0, 1, 0, 1], seed=3) == bootstrap_mean_ci([0, 1, 0, 1], seed=3)


@pytest.mark.parametrize(
    ("name", "step", "epoch"),
    [
        ("step=40000.pt", 40000, None),
        ("epoch=3-step=12000.ckpt", 12000, 3),
        ("checkpoint-500", 500, None),
        ("step_00100.safetensors", 100, None),
        ("iter_2000.pth", 2000, None),
        ("40000.pt", 40000, None),
        ("epoch_7.pt", None, 7),
        ("last.ckpt", None, None),
        ("stepper.pt", None, None),
    ],
)
def test_checkpoint_names_are_parsed(name: str, step: int | None, epoch: int | None) -> None:
    assert parse_name(name) == (step, epoch)


def test_find_checkpoints_orders_skips_and_refuses_duplicates(tmp_path) -> None:
    for name in ["step=300.pt", "step=20.pt", "epoch=1-step=100.ckpt", "last.ckpt", "notes.txt"]:
        (tmp_path / name).write_text("0")
    (tmp_path / "checkpoint-50").mkdir()
    found, skipped = find_checkpoints(tmp_path)
    assert [c.name for c in found] == ["step=20.pt", "checkpoint-50", "epoch=1-step=100.ckpt", "step=300.pt"]
    assert skipped == ["last.ckpt"]
    (tmp_path / "step=300.safetensors").write_text("0")
    with pytest.raises(ValueError, match="two checkpoints at step 300"):
        find_checkpoints(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_checkpoints(tmp_path / "nope")
