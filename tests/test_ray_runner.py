"""runner=ray on a local 2-CPU Ray cluster with the toy benchmark: same results as the local runner, actors
lost mid-run, resume from the store, sweeps."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import toy_env
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from harness.evaluate import evaluate
from harness.local_runner import LocalRunner
from harness.ray_runner import RayJob, RayRunner
from harness.records import EpisodeRecord
from harness.runner import AgentSource
from harness.store import read_records
from harness.sweep import sweep
from harness.workers import EnvSpec

HARNESS_CONF = Path(__file__).resolve().parent / "harness_conf"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local 2-CPU cluster for the module (starting Ray costs seconds); Ray's files under /tmp."""
    old_auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # no auth token written to the home folder
    temp_dir = tempfile.mkdtemp(prefix="vgray_", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
        if old_auth is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old_auth


@pytest.fixture(autouse=True, scope="module")
def _toy() -> None:
    toy_env.install()


def toy_spec(**kwargs: Any) -> tuple[EnvSpec, toy_env.ToyProtocol]:
    protocol = toy_env.BENCHMARK.protocol()
    spec = EnvSpec(
        toy_env.ENV_ID, {"protocol": protocol, **kwargs}, f"{toy_env.__name__}:ToyEnv", protocol.digest
    )
    return spec, protocol


def comparable(records: Sequence[EpisodeRecord]) -> dict[int, dict[str, Any]]:
    """Per-episode records without the wall-clock duration."""
    out = {}
    for record in records:
        data = record.to_dict()
        data.pop("duration_s")
        out[record.episode] = data
    return out


class CountingWeightsAgent(toy_env.WeightsAgent):
    """A WeightsAgent that appends "<pid> init" / "<pid> load <checkpoint>" to ``log`` (shared by all actors)."""

    def __init__(self, log: str, checkpoint: str | None = None, **kwargs: Any) -> None:
        self.log = log
        self._write("init")
        super().__init__(checkpoint=checkpoint, **kwargs)

    def _write(self, line: str) -> None:
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()} {line}\n")

    def load_weights(self, checkpoint: str) -> None:
        self._write(f"load {Path(checkpoint).name}")
        super().load_weights(checkpoint)


class ExitingAgent(toy_env.ConstantAgent):
    """Takes its whole process down (as a CUDA crash or the OOM killer would) on one task's observations."""

    def __init__(self, fatal_task: str = "reach_far", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fatal_instruction = toy_env.INSTRUCTIONS[fatal_task]

    def act(self, obs: dict[str, Any], env_ids: Sequence[int]) -> np.ndarray:
        if self.fatal_instruction in obs["language"]:
            os._exit(3)
        return super().act(obs, env_ids)


def test_bad_options_are_refused_before_touching_ray() -> None:
    spec, protocol = toy_spec()
    bad = [
        {"envs_per_actor": 0},
        {"num_actors": 0},
        {"cpus_per_actor": 0},
        {"gpus_per_actor": -1},
        {"max_actor_restarts": -1},
        {"batch_episodes": 0},
        {"address": ""},
        {"address": "ray://head:10001"},
        {"start_method": "teleport"},
        {"max_retries": -1},
    ]
    for options in bad:
        with pytest.raises(ValueError, match=next(iter(options))):
            RayRunner(spec, "toy", protocol.to_dict(), **options)


def test_same_results_as_the_local_runner_and_actors_kept_across_runs(
    ray_cluster: None, tmp_path: Path
) -> None:
    # Chunks of 3 executed 2 at a time and a subtask switch at step 3: the agent's resets and chunk flushes matter.
    spec, protocol = toy_spec(subtask_at=3)
    plan = toy_env.BENCHMARK.episode_plan(protocol)
    factory = functools.partial(toy_env.ConstantAgent, w=0.4, chunk_size=3, execute_steps=2)
    with LocalRunner(spec, "toy", protocol.to_dict(), seed=0, num_envs=1) as local:
        expected = comparable([r.record for r in local.run(plan, AgentSource(factory))])
    assert {e: r["success"] for e, r in expected.items()} == {
        k.index: toy_env.expected_success(k.index, 0.4, protocol) for k in plan
    }

    log = tmp_path / "agents.log"
    counting = functools.partial(CountingWeightsAgent, str(log), chunk_size=3, execute_steps=2)
    ckpt = tmp_path / "w.txt"
    ckpt.write_text("0.4")
    # 2 actors of 2 envs each (one agent call per actor batches both envs); small batches spread the work.
    with RayRunner(
        spec, "toy", protocol.to_dict(), seed=0, num_actors=2, envs_per_actor=2, cpus_per_actor=1
    ) as runner:
        first = [r.record for r in runner.run(plan, AgentSource(counting, str(ckpt)))]
        assert comparable(first) == expected
        assert len(first) == len(plan)
        # Second run on the same runner, in another order: the same actors, agents and weights serve it.
        second = [r.record for r in runner.run(plan[::-1], AgentSource(counting, str(ckpt)))]
        assert comparable(second) == expected
        assert set(runner.finished_by.values()) == {0, 1}  # both actors worked, none was replaced
        assert runner.lost_actors == 0
        events = [line.split(" ", 1) for line in log.read_text().splitlines()]
        assert len({pid for pid, _ in events}) == 2  # an agent in each actor process
        assert os.getpid() not in {int(pid) for pid, _ in events}  # none in this (the driver) process
        assert sorted(e for _, e in events) == ["init", "init", "load w.txt", "load w.txt"]  # once per actor

        # Two checkpoints as one stream (a sweep's checkpoints in parallel): each job's results are its own.
        fast = tmp_path / "fast.txt"
        fast.write_text("1.0")
        jobs = [
            RayJob(plan, AgentSource(counting, str(fast))),
            RayJob(plan, AgentSource(counting, str(ckpt))),
        ]
        by_job: dict[int, list[EpisodeRecord]] = {0: [], 1: []}
        for job, result in runner.run_many(jobs):
            by_job[job].append(result.record)
    assert comparable(by_job[1]) == expected
    assert sorted(r.episode for r in by_job[0]) == list(range(12))
    assert all(r.success == toy_env.expected_success(r.episode, 1.0, protocol) for r in by_job[0])
    loads: dict[str, list[str]] = {}
    for pid, event in (line.split(" ", 1) for line in log.read_text().splitlines()):
        if event.startswith("load"):
            loads.setdefault(pid, []).append(event)
    for sequence in loads.values():  # weights swap only when the job changes, never per batch
        assert len(sequence) <= 3 and all(a != b for a, b in zip(sequence, sequence[1:], strict=False))


def test_killed_actor_requeues_its_unfinished_episodes(ray_cluster: None) -> None:
    # Slow steps: episode 11 takes 8 steps (2.4 s), episode 0 two (0.6 s); the actor still running when the
    # first result arrives is killed, and the survivor must finish its episode.
    spec, protocol = toy_spec(step_sleep=0.3)
    plan = toy_env.BENCHMARK.episode_plan(protocol)
    episodes = [plan[11], plan[0], plan[1]]
    factory = functools.partial(toy_env.ConstantAgent, w=0.25)
    results: dict[int, EpisodeRecord] = {}
    killed: tuple[int, list[int]] | None = None
    with RayRunner(
        spec,
        "toy",
        protocol.to_dict(),
        num_actors=2,
        envs_per_actor=1,
        cpus_per_actor=1,
        max_actor_restarts=0,
    ) as runner:
        for result in runner.run(episodes, AgentSource(factory)):
            assert result.record.episode not in results
            results[result.record.episode] = result.record
            if killed is None:
                busy = {a: eps for a, eps in runner.in_flight().items() if eps}
                assert busy, "with 3 episodes on 2 actors, one actor is mid-episode at the first result"
                actor_id, running = next(iter(busy.items()))
                ray.kill(runner.actor_handle(actor_id))
                killed = (actor_id, running)
        assert killed is not None
        actor_id, running = killed
        assert runner.lost_actors == 1 and runner.actor_restarts == 0
        assert sorted(runner.requeued) == sorted(running)
        for episode in running:
            assert runner.finished_by[episode] != actor_id  # re-run by the other actor
            assert results[episode].attempts == 2  # the lost attempt is counted
    assert sorted(results) == [0, 1, 11]
    for episode, record in results.items():
        assert record.status == "ok"
        assert record.success == toy_env.expected_success(episode, 0.25, protocol)


def test_episode_that_keeps_killing_its_actor_becomes_an_error(ray_cluster: None, tmp_path: Path) -> None:
    # Episode 1's env worker also dies once (SIGKILL at its first step): the actor's own LocalRunner re-runs it.
    spec, protocol = toy_spec(crash_episode=1, crash_step=1, crash_marker=str(tmp_path / "crashed"))
    plan = toy_env.BENCHMARK.episode_plan(protocol)
    episodes = [plan[0], plan[8], plan[1]]  # episode 8 is task reach_far: the agent's process exits on it
    factory = functools.partial(ExitingAgent, fatal_task="reach_far", w=1.0)
    with RayRunner(
        spec, "toy", protocol.to_dict(), num_actors=2, envs_per_actor=1, cpus_per_actor=1,
        max_retries=1, max_actor_restarts=3,
    ) as runner:  # fmt: skip
        records = {r.record.episode: r.record for r in runner.run(episodes, AgentSource(factory))}
        assert runner.lost_actors == 2  # first try and one retry, then no more actors spent on it
        assert runner.actor_restarts == 2
    assert sorted(records) == [0, 1, 8]
    bad = records[8]
    assert bad.status == "error" and not bad.success and bad.attempts == 2
    assert "Ray actor died 2 times" in (bad.error or "")
    for episode in (0, 1):
        assert records[episode].status == "ok" and records[episode].success
    assert (tmp_path / "crashed").exists() and records[1].attempts == 2 and records[0].attempts == 1


def compose_cfg(*overrides: str, config: str = "config") -> DictConfig:
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(
            config,
            overrides=[f"hydra.searchpath=[file://{HARNESS_CONF}]", "env=toy", "runner=ray", *overrides],
        )


def test_evaluate_with_runner_ray_resumes_from_the_store(ray_cluster: None, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = [
        f"output_dir={out}",
        "policy=constant",
        "policy.w=0.5",
        "runner.cpus_per_actor=1",
        "progress=false",
    ]
    evaluate(compose_cfg(*common, "episodes=[0,4,8,9]", "video.episodes_per_task=1"))
    before = (out / "episodes.jsonl").read_text().splitlines()
    assert len(before) == 4
    # The frames of the first episode of each task came back from the actors.
    assert sorted(p.name[:13] for p in (out / "videos").glob("*.mp4")) == [
        "episode_00000", "episode_00004", "episode_00008",
    ]  # fmt: skip
    metrics = evaluate(compose_cfg(*common))  # the whole plan: only the 8 others run
    lines = (out / "episodes.jsonl").read_text().splitlines()
    assert lines[:4] == before and len(lines) == 12
    records = read_records(out)
    assert [r.episode for r in records] == list(range(12))
    protocol = toy_env.BENCHMARK.protocol()
    assert all(r.success == toy_env.expected_success(r.episode, 0.5, protocol) for r in records)
    assert metrics["episodes"] == 12
    assert json.loads((out / "run.json").read_text())["protocol_digest"] == protocol.digest


def test_sweep_with_runner_ray(ray_cluster: None, tmp_path: Path) -> None:
    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "step=100.pt").write_text("0.25")
    (ckpts / "step=200.pt").write_text("1.0")
    log = tmp_path / "agents.log"
    cfg = compose_cfg(
        f"output_dir={tmp_path / 'sweep'}",
        "policy=weights",
        f"policy._target_={__name__}.CountingWeightsAgent",
        f"+policy.log={log}",
        f"checkpoints={ckpts}",
        "runner.cpus_per_actor=1",
        "progress=false",
        "bootstrap_samples=200",
        config="sweep",
    )
    summary = sweep(cfg)
    protocol = toy_env.BENCHMARK.protocol()
    for name, w in (("step=100.pt", 0.25), ("step=200.pt", 1.0)):
        records = read_records(tmp_path / "sweep" / name)
        assert [r.episode for r in records] == list(range(12))
        assert all(r.success == toy_env.expected_success(r.episode, w, protocol) for r in records)
    assert summary["best"]["name"] == "step=200.pt"
    # One agent per actor for the whole sweep; each actor loads each checkpoint at most once.
    events = [line.split(" ", 1) for line in log.read_text().splitlines()]
    inits = [pid for pid, event in events if event == "init"]
    loads = [(pid, event) for pid, event in events if event.startswith("load")]
    assert len(inits) == len(set(inits)) == 2
    assert len(loads) == len(set(loads)) and {e for _, e in loads} == {"load step=100.pt", "load step=200.pt"}


DRIVER = """
import sys
import toy_env
from hydra import compose, initialize_config_module
from harness.evaluate import evaluate

toy_env.install()
with initialize_config_module("conf", version_base="1.3"):
    cfg = compose("config", overrides=[
        "hydra.searchpath=[file://{conf}]", "env=toy", "policy=constant", "policy.w=0.25", "runner=ray",
        "runner.cpus_per_actor=1", "+env.kwargs.step_sleep=0.1", "output_dir=" + sys.argv[1], "progress=false",
        *sys.argv[2:],
    ])
evaluate(cfg)
"""


def driver_command(tmp_path: Path, out: Path, *overrides: str) -> tuple[list[str], dict[str, str], Path]:
    """A child Python running harness.evaluate on the toy env with runner=ray: (command, environment, cwd)."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.replace("{conf}", str(HARNESS_CONF)))
    repo = Path(__file__).resolve().parents[1]
    # The repo before tests/: the conf/ folder under tests/ must not shadow the conf package.
    pythonpath = os.pathsep.join([str(repo), str(repo / "tests")])
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": pythonpath}
    return [sys.executable, str(script), str(out), *overrides], env, repo


def check_toy_store(out: Path, w: float) -> None:
    """Every planned episode once, each with the outcome the toy env defines."""
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["episode"] for r in records) == list(range(12))  # none lost, none twice
    protocol = toy_env.BENCHMARK.protocol()
    for r in records:
        assert r["status"] == "ok" and r["success"] == toy_env.expected_success(r["episode"], w, protocol)


def _processes_using(folder: str) -> list[int]:
    """Our processes holding a file under ``folder`` open (what a SIGKILLed Ray driver leaves behind)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(str(link.readlink()).startswith(folder) for link in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return pids


@pytest.mark.slow
def test_driver_killed_mid_run_then_rerun_resumes(tmp_path: Path) -> None:
    """kill -9 of the driver (which started its own local cluster) mid-run; the rerun finishes the plan."""
    import signal
    import subprocess
    import time

    out = tmp_path / "out"
    temp_dir = tempfile.mkdtemp(prefix="vgray_", dir="/tmp")
    cmd, env, repo = driver_command(tmp_path, out, "runner.local_num_cpus=2", f"runner.temp_dir={temp_dir}")
    try:
        log = open(tmp_path / "driver.log", "wb")  # noqa: SIM115 - a file, not a pipe that could fill up
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        lines: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            path = out / "episodes.jsonl"
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= 3:
                break
            time.sleep(0.2)
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended early: {(tmp_path / 'driver.log').read_text()[-3000:]}")
        assert len(lines) >= 3, "the driver should be mid-run with a few episodes stored"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
        before = (out / "episodes.jsonl").read_text().splitlines()
        assert 3 <= len(before) < 12
        for pid in _processes_using(temp_dir):  # Ray's agents of the dead driver's cluster
            os.kill(pid, signal.SIGKILL)
        rerun = subprocess.run(
            cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300
        )
        assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    finally:
        for pid in _processes_using(temp_dir):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    after = (out / "episodes.jsonl").read_text().splitlines()
    assert after[: len(before)] == before  # nothing rewritten
    check_toy_store(out, 0.25)


@pytest.mark.slow
def test_existing_cluster_by_address(tmp_path: Path) -> None:
    """`ray start --head` then runner.address=<head>: the actors, started by that cluster (not by the driver),
    still import what the driver can (the toy env lives outside the package)."""
    import signal
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    temp_dir = tempfile.mkdtemp(prefix="vgray_", dir="/tmp")
    out = tmp_path / "out"
    cmd, env, repo = driver_command(tmp_path, out, f"runner.address=127.0.0.1:{port}")
    head_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the cluster knows nothing of tests/
    ray_cli = Path(sys.executable).with_name("ray")
    start = [
        str(ray_cli), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
        f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats",
    ]  # fmt: skip
    try:
        subprocess.run(start, env=head_env, check=True, timeout=120, capture_output=True)
        run = subprocess.run(
            cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300
        )
        assert run.returncode == 0, run.stderr.decode()[-3000:]
        assert "Connected to Ray cluster" in run.stderr.decode()
    finally:
        for pid in _processes_using(
            temp_dir
        ):  # this cluster's processes only (never `ray stop`: it stops all)
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
    check_toy_store(out, 0.25)
