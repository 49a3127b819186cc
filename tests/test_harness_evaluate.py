"""harness.evaluate end to end on the toy env: config groups and overrides, result store, reports, videos,
resume after kill -9, refusal of another protocol, the command line from any folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v2 as imageio
import psutil
import pytest
import toy_env
from harness_fixtures import subprocess_env, toy_app_command, toy_config
from hydra import compose, initialize_config_module

import vla_gym
from harness.evaluate import evaluate
from harness.spec import resolve
from harness.store import StoreMismatchError, read_records

PROTOCOL = toy_env.BENCHMARK.protocol()


def per_episode(folder: Path) -> dict[int, tuple]:
    return {r.episode: (r.status, r.success, r.steps, r.episode_metrics) for r in read_records(folder)}


def test_evaluate_subset_writes_store_reports_and_videos(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = toy_config(
        f"output_dir={out}", "tasks=[0,2]", "episodes_per_task=2", "policy.w=0.4", "num_envs=2",
        "video.episodes_per_task=1",
    )  # fmt: skip
    metrics = evaluate(cfg)
    chosen = [0, 1, 8, 9]
    expected = {k: toy_env.expected_success(k, 0.4, PROTOCOL) for k in chosen}
    assert {k: v[1] for k, v in per_episode(out).items()} == expected
    assert metrics["overall"]["successes"] == sum(expected.values()) and metrics["episodes"] == 4
    results = json.loads((out / "results.json").read_text())
    assert results["metrics"]["overall"]["rate"] == pytest.approx(sum(expected.values()) / 4)
    assert results["run"]["protocol_digest"] == PROTOCOL.digest
    assert [t["task"] for t in results["metrics"]["per_task"]] == ["reach_near", "reach_far"]
    run = json.loads((out / "run.json").read_text())
    assert run["protocol"] == PROTOCOL.to_dict() and run["versions"]["gymnasium"] == "1.4.0"
    assert "w: 0.4" in (out / "config.yaml").read_text()
    report = (out / "report.md").read_text()
    assert "| 2 | reach_far | 2 |" in report and PROTOCOL.digest in report
    assert (out / "success_per_task.png").read_bytes()[:4] == b"\x89PNG"
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["episode_00000_reach_near.mp4", "episode_00008_reach_far.mp4"]
    frames = imageio.mimread(out / "videos" / videos[1])
    records = {r.episode: r for r in read_records(out)}
    assert len(frames) == records[8].steps + 1 and frames[0].shape == (224, 224, 3)


def test_rerun_skips_finished_episodes_and_refuses_another_setup(tmp_path: Path) -> None:
    out = tmp_path / "run"
    evaluate(toy_config(f"output_dir={out}", "episodes=[0,5]", "policy.w=0.4"))
    first = (out / "episodes.jsonl").read_text()
    evaluate(toy_config(f"output_dir={out}", "policy.w=0.4"))
    lines = (out / "episodes.jsonl").read_text()
    assert lines.startswith(first)  # finished episodes were not re-run
    assert sorted(json.loads(line)["episode"] for line in lines.splitlines()) == list(range(12))
    with pytest.raises(StoreMismatchError, match="protocol digest"):
        evaluate(toy_config(f"output_dir={out}", "policy.w=0.4", "+env.protocol_overrides.max_steps=5"))
    with pytest.raises(StoreMismatchError, match="policy"):
        evaluate(toy_config(f"output_dir={out}", "policy.w=0.5"))


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("tasks=[7]", KeyError, "unknown task 7"),
        ("episodes=[99]", KeyError, "not in the plan"),
        ("episodes_per_task=0", ValueError, "episodes_per_task must be >= 1"),
        ("+env.kwargs.protocol=other", ValueError, "env.kwargs must not set"),
        ("+env.protocol_overrides.nope=1", KeyError, "unknown toy protocol field"),
        ("episodes=[oops]", ValueError, "episodes must be a list of ints"),
    ],
)
def test_bad_selection_is_a_clear_error(tmp_path: Path, override: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        resolve(toy_config(f"output_dir={tmp_path}", override))


def test_config_groups_of_the_real_envs_compose_and_plan_without_an_env() -> None:
    with initialize_config_module("conf", version_base="1.3"):
        for name, env_id in vla_gym.ENV_IDS.items():
            cfg = compose("config", overrides=[f"env={name}", "policy=random", "output_dir=x"])
            assert (cfg.env.benchmark, cfg.env.id) == (name, env_id)
            assert cfg.policy._target_ == "policies.random_agent.RandomAgent"
        # Planning needs only the tasks modules (no simulator).
        for name, selection, count in (
            ("libero_long", "tasks=[0,3]", 100), ("simpler_bridge", "episodes=[0,1]", 2), ("calvin", "episodes=[5]", 1),
        ):  # fmt: skip
            cfg = compose("config", overrides=[f"env={name}", selection, "output_dir=x"])
            spec = resolve(cfg)
            assert len(spec.episodes) == count
            assert spec.env.kwargs["protocol"].digest == spec.protocol.digest
        cfg = compose("config", overrides=["env=libero_long", "episodes_per_task=2", "+env.protocol_overrides.max_steps=20"])
        assert resolve(cfg).protocol.max_steps == 20


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    common = ["num_envs=2", "policy.w=0.4", "+env.kwargs.step_sleep=0.1", "runner.start_method=fork"]
    killed = tmp_path / "killed"
    cmd = toy_app_command(tmp_path) + [f"output_dir={killed}", *common]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    episodes = killed / "episodes.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if episodes.exists() and episodes.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read().decode()}"
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "the run should have env worker processes"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, f"env workers outlived their killed parent: {[p.pid for p in alive]}"
    done_before = episodes.read_text().count("\n")
    assert 3 <= done_before < 12 and not (killed / "results.json").exists()
    rerun = subprocess.run(cmd, cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    clean = tmp_path / "clean"
    evaluate(toy_config(f"output_dir={clean}", *common))
    assert episodes.read_text().count("\n") == 12  # none lost, none duplicated
    assert per_episode(killed) == per_episode(clean)
    metrics = [json.loads((d / "results.json").read_text())["metrics"] for d in (killed, clean)]
    assert metrics[0] == metrics[1]


def test_command_line_works_from_any_folder_without_littering(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = toy_app_command(tmp_path) + ["output_dir=out", "episodes=[0,11]", "num_envs=1", "progress=true"]
    done = subprocess.run(cmd, cwd=elsewhere, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["out"]  # no outputs/, .hydra/ or log files
    assert sorted(p.name for p in (elsewhere / "out").iterdir()) == [
        "config.yaml", "episodes.jsonl", "report.md", "results.json", "run.json", "success_per_task.png",
    ]  # fmt: skip
    assert "success_rate = 100.0% over 2 episodes" in done.stdout
    assert "success 2/2 (100.0%)" in done.stderr and "2/2" in done.stderr  # the live progress bar
    # The real module entry point finds its configs from another folder too (print the config, run nothing).
    shown = subprocess.run(
        [sys.executable, "-m", "harness.evaluate", "env=libero_long", "policy=noop", "--cfg", "job"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "id: VLA/LiberoLong-v0" in shown.stdout and "_target_: policies.noop.NoopAgent" in shown.stdout
    assert sorted(p.name for p in elsewhere.iterdir()) == ["out"]


def test_values_holding_equals_are_quoted_for_hydra() -> None:
    from harness.cli import quote_values_with_equals

    argv = ["policy=qwen3vl2b", "policy.checkpoint=/ckpts/run/epoch=3-step=12000.pt", "episodes=[0,1]",
            "'policy.checkpoint=\"/a/epoch=1.pt\"'", "--config-name=quickstart", "+x={a:1}"]
    out = quote_values_with_equals(argv)
    assert out[1] == 'policy.checkpoint="/ckpts/run/epoch=3-step=12000.pt"'
    assert out[0] == argv[0] and out[2:] == argv[2:]
    # what Hydra makes of it: the whole path as one string
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([out[1]])[0]
    assert parsed.key_or_group == "policy.checkpoint" and parsed.value() == "/ckpts/run/epoch=3-step=12000.pt"
