"""harness.sweep on the toy env with an agent whose behaviour comes from a tiny weights file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import toy_env
from harness_fixtures import subprocess_env, toy_app_command, toy_config

from harness.compare import exact_binomial_two_sided
from harness.store import read_records
from harness.sweep import sweep

PROTOCOL = toy_env.BENCHMARK.protocol()
WEIGHTS = {"step=1000.pt": 0.3, "epoch=1-step=2000.ckpt": 0.5, "step=3000.pt": 0.4}


def make_run(folder: Path) -> Path:
    folder.mkdir()
    for name, w in WEIGHTS.items():
        (folder / name).write_text(str(w))
    (folder / "last.ckpt").write_text("0.9")  # no step in the name: skipped, and said so
    return folder


def expected(w: float) -> dict[int, bool]:
    return {k: toy_env.expected_success(k, w, PROTOCOL) for k in range(12)}


def test_sweep_scores_every_checkpoint_on_the_same_episodes(tmp_path: Path) -> None:
    ckpts = make_run(tmp_path / "ckpts")
    out = tmp_path / "sweep"
    overrides = [f"checkpoints={ckpts}", f"output_dir={out}", "policy=weights", "num_envs=2"]
    summary = sweep(toy_config(*overrides, name="sweep"))
    rows = summary["checkpoints"]
    assert [r["step"] for r in rows] == [1000, 2000, 3000]
    assert summary["skipped"] == ["last.ckpt"]
    for row in rows:
        exp = expected(WEIGHTS[row["name"]])
        assert row["score"] == pytest.approx(sum(exp.values()) / 12), row["name"]
        got = {r.episode: r.success for r in read_records(out / row["name"])}
        assert got == exp
    assert summary["best"]["name"] == "epoch=1-step=2000.ckpt"
    best, first = expected(0.5), expected(0.3)
    b = sum(best[k] and not first[k] for k in range(12))
    c = sum(first[k] and not best[k] for k in range(12))
    cmp = rows[0]["vs_best"]
    assert (cmp["a_better"], cmp["b_better"], cmp["episodes"]) == (b, c, 12)
    assert cmp["p_value"] == pytest.approx(exact_binomial_two_sided(b, b + c))
    assert cmp["mean_diff"] == pytest.approx((sum(best.values()) - sum(first.values())) / 12)
    assert rows[1]["vs_best"] is None
    assert json.loads((out / "sweep.json").read_text())["best"]["name"] == "epoch=1-step=2000.ckpt"
    table = (out / "sweep.md").read_text()
    assert "| step=1000.pt | 1000 |" in table and "Skipped" in table and "last.ckpt" in table
    assert (out / "score_vs_step.png").read_bytes()[:4] == b"\x89PNG"
    for row in rows:
        run = json.loads((out / row["name"] / "run.json").read_text())
        assert run["checkpoint"] == str((ckpts / row["name"]).resolve())
        assert (out / row["name"] / "report.md").exists()

    # Resumable per checkpoint: a re-run touches nothing finished; a new checkpoint is the only one run.
    stamps = {row["name"]: (out / row["name"] / "episodes.jsonl").stat().st_mtime_ns for row in rows}
    (ckpts / "step=4000.pt").write_text("0.7")
    summary = sweep(toy_config(*overrides, name="sweep"))
    assert {n: (out / n / "episodes.jsonl").stat().st_mtime_ns for n in stamps} == stamps
    assert [r["step"] for r in summary["checkpoints"]] == [1000, 2000, 3000, 4000]
    assert summary["checkpoints"][3]["score"] == summary["checkpoints"][1]["score"] == 1.0
    assert summary["best"]["name"] == "epoch=1-step=2000.ckpt"  # a tie goes to the earlier checkpoint


def test_sweep_command_line(tmp_path: Path) -> None:
    ckpts = make_run(tmp_path / "ckpts")
    cmd = toy_app_command(tmp_path, "sweep") + [
        f"checkpoints={ckpts}", "output_dir=sw", "policy=weights", "episodes=[0,4,8]", "runner.start_method=fork",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert summary["episodes"] == [0, 4, 8]
    assert "best checkpoint" in done.stdout
