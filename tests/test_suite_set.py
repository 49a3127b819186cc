"""Benchmark sets (tasks.suite_sets): env=libero runs the four LIBERO suites in one command, each into its own
store, and reports the mean of the four suite rates; the harness learns all of it from the declaration."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from harness.benchmark_set import claim_folder, member_configs, resolve_members
from harness.evaluate import evaluate
from harness.records import EpisodeRecord
from harness.report import set_markdown, write_set_report
from harness.spec import resolve
from harness.store import ResultStore, StoreMismatchError, read_records
from tasks.registry import BENCHMARK_SETS, BENCHMARKS, get_benchmark, get_benchmark_set
from tasks.suite_sets import BenchmarkSet

REPO = Path(__file__).resolve().parents[1]
LIBERO = get_benchmark_set("libero")
SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_long")


def _records(outcomes: list[str]) -> list[EpisodeRecord]:
    """One record per outcome: "s" success, "f" failure, "e" an error episode (which reports success=True, to
    check that an error never counts as one)."""
    return [
        EpisodeRecord(
            episode=k, task_index=k % 3, task=f"task{k % 3}", within_task=k // 3,
            status="error" if o == "e" else "ok", success=o in "se", error="boom" if o == "e" else None,
        )
        for k, o in enumerate(outcomes)
    ]  # fmt: skip


# Unequal sizes, so that the mean of the suite rates differs from the pooled rate.
OUTCOMES = {
    "libero_spatial": ["s", "s", "s", "f"],  # 3/4
    "libero_object": ["s", "e"],  # 1/2: the error is a failure
    "libero_goal": ["f"],  # 0/1
    "libero_long": ["s"] * 6 + ["f", "f"],  # 6/8
}


def _summarize(bset: BenchmarkSet = LIBERO, **protocol_changes: dict) -> dict:
    member_metrics, protocols = {}, {}
    for member in bset.members:
        bench = get_benchmark(member)
        protocols[member] = bench.protocol(**protocol_changes.get(member, {}))
        records = _records(OUTCOMES[member])
        member_metrics[member] = bench.summarize(records, planned=len(records), protocol=protocols[member])
    return bset.summarize(member_metrics, protocols, {m: 500 for m in bset.members})


def test_the_libero_set_is_the_four_reported_suites() -> None:
    assert LIBERO.members == SUITES and "libero_90" not in LIBERO.members
    assert set(LIBERO.members) <= set(BENCHMARKS) and "libero" not in BENCHMARKS
    LIBERO.check_members()  # all success rates: averageable
    with pytest.raises(ValueError, match="different kinds"):
        BenchmarkSet("mixed", "Mixed", ("calvin", "simpler_bridge")).check_members()
    with pytest.raises(KeyError, match="names 'nope', which is not a registered benchmark"):
        BenchmarkSet("bad", "Bad", ("libero_goal", "nope")).benchmarks()
    with pytest.raises(ValueError, match="twice"):
        BenchmarkSet("dup", "Dup", ("libero_goal", "libero_goal"))


def test_headline_is_the_mean_of_the_suite_rates_each_over_its_own_episodes() -> None:
    metrics = _summarize()
    by_hand = {}
    for member, outcomes in OUTCOMES.items():
        by_hand[member] = outcomes.count("s") / len(outcomes)  # errors are failures
    expected = sum(by_hand.values()) / 4  # (0.75 + 0.5 + 0 + 0.75) / 4 = 0.5
    assert metrics["headline"]["name"] == "mean_suite_success_rate"
    assert metrics["headline"]["value"] == pytest.approx(expected) == pytest.approx(0.5)
    assert "mean of the 4 suite success rates" in metrics["headline"]["definition"]
    pooled = sum(o.count("s") for o in OUTCOMES.values()) / sum(map(len, OUTCOMES.values()))  # 10/15
    assert metrics["pooled"]["rate"] == pytest.approx(pooled) and pooled != pytest.approx(expected)
    rows = metrics["per_member"]
    assert [r["benchmark"] for r in rows] == list(SUITES)
    assert [r["rate"] for r in rows] == pytest.approx([by_hand[m] for m in SUITES])
    assert [(r["n"], r["errors"]) for r in rows] == [(4, 0), (2, 1), (1, 0), (8, 0)]
    assert all(r["ci95"][0] <= r["rate"] <= r["ci95"][1] for r in rows)
    assert (metrics["episodes"], metrics["errors"], metrics["complete"]) == (15, 1, False)  # 15 of 2000
    # each member's protocol digest is recorded; the set digest follows any of them
    digests = {m: get_benchmark(m).protocol().digest for m in SUITES}
    assert metrics["protocol_digests"] == digests and [r["protocol_digest"] for r in rows] == list(digests.values())
    changed = _summarize(libero_goal={"max_steps": 3})
    assert changed["protocol_digests"]["libero_goal"] != digests["libero_goal"]
    assert changed["set_digest"] != metrics["set_digest"] == LIBERO.digest(digests)
    # a member without episodes leaves the headline undefined rather than averaging three suites
    empty = LIBERO.headline([*rows[:3], {**rows[3], "headline": {"name": "success_rate", "value": None}}])
    assert empty is None


def test_report_has_one_row_per_member_and_the_headline(tmp_path: Path) -> None:
    metrics = _summarize()
    info = {"policy": {"_target_": "policies.noop.NoopAgent"}, "seed": 0}
    text = set_markdown(info, metrics, LIBERO)
    assert "**mean_suite_success_rate: 50.0%**: the mean of the 4 suite success rates" in text
    rows = [line for line in text.splitlines() if line.startswith("| [")]
    assert len(rows) == 4
    for row, member, rate in zip(rows, SUITES, ["75.0%", "50.0%", "0.0%", "75.0%"], strict=True):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == f"[{LIBERO.member_title(member)}]({member}/report.md)"
        assert cells[2] == f"`{metrics['protocol_digests'][member]}`" and cells[5] == rate
    assert "| **mean_suite_success_rate** |" in text and "a subset**: 15 of the 2000 episodes" in text
    paths = write_set_report(tmp_path, info, metrics, LIBERO)
    assert json.loads(paths["results"].read_text())["metrics"]["headline"]["value"] == pytest.approx(0.5)
    assert paths["plot"].name == "success_per_suite.png" and paths["plot"].read_bytes()[:4] == b"\x89PNG"


# ---- the harness names no benchmark ---------------------------------------------------------------------
BENCHMARK_WORDS = re.compile(
    "|".join(["calvin", "libero", "bridge", *map(re.escape, [*BENCHMARKS, *BENCHMARK_SETS])]), re.IGNORECASE
)


def benchmark_names_in_code(source: str) -> list[str]:
    """Benchmark names in a module's code: its identifiers and strings, not its docstrings or comments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0].value.value = ""  # a docstring: documentation may name benchmarks
    return BENCHMARK_WORDS.findall(ast.unparse(tree))  # unparse drops the comments


def test_the_check_finds_a_name_in_code_but_not_in_docs() -> None:
    assert benchmark_names_in_code('"""Runs libero."""\n# calvin\nx = 1\n') == []
    assert benchmark_names_in_code('def f():\n    """Docs: bridge."""\n    return "LIBERO_goal"\n') == ["LIBERO"]
    assert benchmark_names_in_code("calvin_steps = 3\n") == ["calvin"]


def test_the_harness_names_no_benchmark_nor_set() -> None:
    found = {
        path.name: names
        for path in sorted((REPO / "harness").glob("*.py"))
        if (names := benchmark_names_in_code(path.read_text()))
    }
    assert found == {}, f"harness code names benchmarks (ask tasks.registry instead): {found}"


# ---- the set config ---------------------------------------------------------------------------------------
def _cfg(*overrides: str):
    with initialize_config_module("conf", version_base="1.3"):
        return compose("config", overrides=["env=libero", "policy=noop", "progress=false", *overrides])


def test_set_config_gives_each_member_its_own_env_protocol_and_selection(tmp_path: Path) -> None:
    cfg = _cfg(
        f"output_dir={tmp_path}", "episodes_per_task=2", "tasks=[0,9]", "+env.protocol_overrides.max_steps=7",
        "+env.per_member.libero_long.protocol=vlm4vla_fast", "+env.per_member.libero_long.protocol_overrides.max_steps=9",
        "+env.kwargs.render_cameras=false",
    )  # fmt: skip
    configs = member_configs(cfg, LIBERO, tmp_path)
    specs = resolve_members(configs, "libero")
    assert list(specs) == list(SUITES)
    for member, spec in specs.items():
        bench = get_benchmark(member)
        assert (spec.benchmark, spec.env.env_id, configs[member].output_dir) == (member, bench.env_id, str(tmp_path / member))
        assert spec.env_kwargs == {"render_cameras": False}
        # the subset options mean per member what they mean for one benchmark: 2 episodes of tasks 0 and 9
        assert [(k.task_index, k.within_task) for k in spec.episodes] == [(0, 0), (0, 1), (9, 0), (9, 1)]
        assert len(spec.plan) == 500
    assert [specs[m].protocol.name for m in SUITES] == ["vlm4vla", "vlm4vla", "vlm4vla", "vlm4vla_fast"]
    assert [specs[m].protocol.max_steps for m in SUITES] == [7, 7, 7, 9]
    assert specs["libero_goal"].protocol == get_benchmark("libero_goal").protocol(max_steps=7)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["tasks=[pick_up_the_black_bowl_on_the_stove_and_place_it_on_the_plate]"], KeyError,
         "member libero_object: unknown task"),
        (["tasks=[10]"], KeyError, "member libero_spatial: unknown task 10"),
        (["+env.per_member.libero_90.protocol=vlm4vla"], ValueError, "not members of set 'libero'"),
        (["+env.per_member.libero_goal.id=x"], ValueError, r"env.per_member.libero_goal has key\(s\) \['id'\]"),
        (["+env.id=VLA/LiberoGoal-v0"], ValueError, "a set config takes"),
        (["env.protocol=nope"], KeyError, "member libero_spatial: unknown libero_spatial protocol 'nope'"),
    ],
)  # fmt: skip
def test_bad_set_options_are_clear_errors_before_any_episode(
    tmp_path: Path, overrides: list[str], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        evaluate(_cfg(f"output_dir={tmp_path}", *overrides))
    assert list(tmp_path.iterdir()) == []


def test_single_benchmark_entry_points_refuse_a_set_config_and_stores_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="only harness.evaluate runs a set.*env=libero_spatial"):
        resolve(_cfg("output_dir=x"))  # what harness.sweep / harness.record call
    info = {"benchmark_set": "libero", "members": list(SUITES)}
    claim_folder(tmp_path / "set", info)
    with pytest.raises(StoreMismatchError, match="benchmark set's run"):
        ResultStore(tmp_path / "set", {"protocol": {}, "protocol_digest": "x"})
    with pytest.raises(StoreMismatchError, match="not 'other'"):
        claim_folder(tmp_path / "set", {**info, "benchmark_set": "other"})
    ResultStore(tmp_path / "single", {"protocol": {}, "protocol_digest": "x"}).close()
    with pytest.raises(StoreMismatchError, match="one benchmark's result store"):
        claim_folder(tmp_path / "single", info)


# ---- end to end on the real simulators --------------------------------------------------------------------
def test_env_libero_end_to_end_one_episode_per_suite_then_resume(tmp_path: Path) -> None:
    """``python -m harness.evaluate env=libero`` as a user runs it (in-process), 1 short episode per suite:
    four member stores, the set headline from them, and a rerun that re-runs only the member that is missing."""
    overrides = [f"output_dir={tmp_path}", "episodes_per_task=1", "tasks=[0]", "+env.protocol_overrides.max_steps=3",
                 "+env.kwargs.render_cameras=false"]  # fmt: skip
    start = time.monotonic()
    metrics = evaluate(_cfg(*overrides))
    first_run_s = time.monotonic() - start
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*SUITES, "config.yaml", "report.md", "results.json", "set.json", "success_per_suite.png"]
    )
    rates, digests = [], {}
    for member in SUITES:
        run = json.loads((tmp_path / member / "run.json").read_text())
        protocol = get_benchmark(member).protocol(max_steps=3)
        assert (run["benchmark"], run["protocol_digest"]) == (member, protocol.digest)
        records = read_records(tmp_path / member)
        assert [(r.episode, r.task_index, r.status) for r in records] == [(0, 0, "ok")]
        assert records[0].steps == protocol.max_policy_steps  # the noop agent ran to the step limit
        member_results = json.loads((tmp_path / member / "results.json").read_text())["metrics"]
        rates.append(member_results["overall"]["rate"])
        digests[member] = run["protocol_digest"]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["metrics"] == json.loads(json.dumps(metrics))
    assert metrics["headline"]["value"] == pytest.approx(sum(rates) / 4) and rates == [0.0] * 4
    assert metrics["protocol_digests"] == digests and metrics["set_digest"] == LIBERO.digest(digests)
    assert results["run"]["env"]["libero_goal"]["env_id"] == "VLA/LiberoGoal-v0"
    report = (tmp_path / "report.md").read_text()
    assert sum(line.startswith("| [") for line in report.splitlines()) == 4

    # A crash before the last suite finished: its folder is gone. The rerun runs that suite only.
    kept = {m: (tmp_path / m / "episodes.jsonl").stat().st_mtime_ns for m in SUITES[:3]}
    (tmp_path / "results.json").unlink()
    for path in (tmp_path / "libero_long").iterdir():
        path.unlink()
    again = evaluate(_cfg(*overrides))
    assert {m: (tmp_path / m / "episodes.jsonl").stat().st_mtime_ns for m in SUITES[:3]} == kept
    assert [r.episode for r in read_records(tmp_path / "libero_long")] == [0]
    assert again["headline"] == metrics["headline"] and again["set_digest"] == metrics["set_digest"]
    print(f"env=libero, 4 episodes of max_steps=3: first run {first_run_s:.1f}s")
