"""The pipeline scheduler against the lock-step one on the same plan, its batching knobs, and the watchdog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import scale_helpers
import toy_env

from harness.local_runner import DEFAULT_WATCHDOG, LocalRunner
from harness.runner import AgentSource
from harness.workers import EnvSpec
from policies.random_agent import RandomAgent
from tasks.registry import get_benchmark

pytestmark = pytest.mark.timeout(120)

PROTOCOL = toy_env.BENCHMARK.protocol(max_steps=12)
PLAN = toy_env.BENCHMARK.episode_plan(PROTOCOL)


def spec(**env_kwargs: Any) -> EnvSpec:
    scale_helpers.install()
    return EnvSpec(
        scale_helpers.JITTER_ENV_ID,
        {**env_kwargs, "protocol": PROTOCOL},
        entry_point=f"{scale_helpers.__name__}:JitterToyEnv",
        protocol_digest=PROTOCOL.digest,
    )


def run(agent: Any, env_kwargs: dict | None = None, **options: Any) -> tuple[dict[int, Any], LocalRunner]:
    options.setdefault("start_method", "fork")
    runner = LocalRunner(spec(**(env_kwargs or {})), "toy", PROTOCOL.to_dict(), **options)
    with runner:
        results = {r.record.episode: r.record for r in runner.run(PLAN, AgentSource(lambda: agent))}
    return results, runner


def outcome(records: dict[int, Any]) -> dict[int, tuple]:
    return {
        k: (r.status, r.success, r.steps, r.agent_calls, r.terminated, r.episode_metrics, r.agent_info, r.attempts)
        for k, r in sorted(records.items())
    }


@pytest.mark.parametrize("chunking", [(1, 1), (4, 3)])
def test_pipeline_results_equal_lockstep_results(chunking: tuple[int, int]) -> None:
    chunk, execute = chunking
    env = {"jitter_s": 0.004, "subtask_at": 3}

    def agent() -> scale_helpers.StatefulAgent:
        return scale_helpers.StatefulAgent(w=0.18, chunk_size=chunk, execute_steps=execute)

    old_agent, new_agent = agent(), agent()
    old, _ = run(old_agent, env, num_envs=3, scheduler="lockstep")
    new, _ = run(new_agent, env, num_envs=3, scheduler="pipeline")
    assert sorted(new) == [k.index for k in PLAN]
    assert outcome(new) == outcome(old)
    assert 0 < sum(r.success for r in new.values()) < len(PLAN)  # the outcomes are not trivial
    # the schedules really differed: the pipeline called the agent in other batches
    assert old_agent.batch_sizes != new_agent.batch_sizes
    # one env alone, lock-step: the reference each episode must match whatever the batching
    alone, _ = run(agent(), env, num_envs=1, scheduler="lockstep")
    assert outcome(alone) == outcome(new)


def test_pipeline_random_agent_matches_lockstep() -> None:
    old, _ = run(RandomAgent(seed=5, scale=0.7), {"jitter_s": 0.003}, num_envs=3, scheduler="lockstep")
    new, _ = run(RandomAgent(seed=5, scale=0.7), {"jitter_s": 0.003}, num_envs=3)
    assert outcome(new) == outcome(old)


def test_max_batch_and_min_batch_shape_the_agent_calls() -> None:
    one = scale_helpers.StatefulAgent(w=0.18)
    records, _ = run(one, {"jitter_s": 0.002}, num_envs=3, max_batch=1)
    assert set(one.batch_sizes) == {1}
    grouped = scale_helpers.StatefulAgent(w=0.18)
    # wait for all three envs (the max wait is long): every call is a full batch until the plan runs out
    records2, _ = run(grouped, {"jitter_s": 0.002}, num_envs=3, min_batch=3, max_wait_s=30.0)
    assert grouped.batch_sizes[0] == 3 and max(grouped.batch_sizes) == 3
    assert outcome(records) == outcome(records2)


def test_watchdog_kills_a_hung_worker_and_reruns_its_episode(tmp_path: Path) -> None:
    marker = tmp_path / "hung"
    clean, _ = run(scale_helpers.StatefulAgent(w=0.18), num_envs=2)
    records, runner = run(
        scale_helpers.StatefulAgent(w=0.18),
        {"hang_episode": 4, "hang_step": 2, "hang_marker": str(marker)},
        num_envs=2,
        watchdog_s={"step": 1.0},
    )
    assert marker.exists()  # the step really hung
    assert runner.watchdog_kills == 1 and runner.restarts == 1
    assert records[4].attempts == 2 and records[4].status == "ok"
    expected = outcome(clean)
    expected[4] = (*expected[4][:-1], 2)
    assert outcome(records) == expected  # the run completed with every episode, same outcomes


def test_watchdog_replaces_a_hung_agent_and_reruns_the_episodes_in_progress() -> None:
    built: list[scale_helpers.StatefulAgent] = []

    def factory() -> scale_helpers.StatefulAgent:
        built.append(scale_helpers.StatefulAgent(w=0.18, hang_on_call=5 if not built else None))
        return built[-1]

    runner = LocalRunner(spec(), "toy", PROTOCOL.to_dict(), num_envs=2, start_method="fork",
                         watchdog_s={"agent": 1.0})  # fmt: skip
    with runner:
        records = {r.record.episode: r.record for r in runner.run(PLAN, AgentSource(factory))}
    clean, _ = run(scale_helpers.StatefulAgent(w=0.18), num_envs=2)
    assert len(built) == 2 and runner.watchdog_kills == 1
    assert sorted(records) == sorted(clean)
    assert any(r.attempts == 2 for r in records.values())
    # same outcomes; the notes of an episode that ended while the agent hung cannot be read from it
    assert {k: v[:6] for k, v in outcome(records).items()} == {k: v[:6] for k, v in outcome(clean).items()}


def test_watchdog_is_on_by_default_per_benchmark_and_can_be_turned_off() -> None:
    # the benchmark declares its bounds; the harness only asks for them
    assert LocalRunner(spec(), "libero_long", {}).bounds["step"] == get_benchmark("libero_long").watchdog_bounds["step"]
    assert LocalRunner(spec(), "toy", {}).bounds["agent"] == DEFAULT_WATCHDOG["agent"]
    assert set(LocalRunner(spec(), "calvin", {}, watchdog=False).bounds.values()) == {None}
    assert LocalRunner(spec(), "calvin", {}, watchdog_s={"reset": 5.0}).bounds["reset"] == 5.0
    with pytest.raises(ValueError, match="watchdog_s keys"):
        LocalRunner(spec(), "calvin", {}, watchdog_s={"stpe": 5.0})
    with pytest.raises(ValueError, match="scheduler"):
        LocalRunner(spec(), "calvin", {}, scheduler="async")


def test_report_counts_reruns() -> None:
    from harness.records import EpisodeRecord
    from harness.report import _rerun_lines

    records = [EpisodeRecord.for_key(k, status="ok", success=False, attempts=a) for k, a in zip(PLAN, (1, 2, 3, 1), strict=False)]
    assert _rerun_lines(records[:1]) == []
    (line,) = _rerun_lines(records)
    assert "2 episodes re-run" in line and "3 extra attempts" in line


def test_remote_agent_with_concurrent_calls_matches_in_process() -> None:
    from harness.serve import PolicyServer
    from policies.openpi_client import OpenPIClientAgent

    reference, _ = run(scale_helpers.StatefulAgent(w=0.18), {"jitter_s": 0.003}, num_envs=3, scheduler="lockstep")
    served = scale_helpers.StatefulAgent(w=0.18)
    with PolicyServer(served, port=0, log_every_s=0) as server:

        def client() -> OpenPIClientAgent:
            keys = {"toy": {"keys": {"image": "image", "language": "language"}, "action_horizon": 1}}
            return OpenPIClientAgent(port=server.port, benchmarks=keys, request_timeout_s=30)

        runner = LocalRunner(spec(jitter_s=0.003), "toy", PROTOCOL.to_dict(), num_envs=3, start_method="fork")
        with runner:
            assert runner._call_width(client()) == 3  # by default one call per env for a remote agent
            records = {r.record.episode: r.record for r in runner.run(PLAN, AgentSource(client))}
        connections = server.counters["connections"]
    # the agent notes come from the served agent's episode_info, which the client does not forward
    assert {k: v[:6] for k, v in outcome(records).items()} == {k: v[:6] for k, v in outcome(reference).items()}
    assert connections >= 2  # calls really ran from several threads, each on its own connection
    assert sorted(served.count) == [0, 1, 2]  # one client run: its env ids kept together across connections
    # an agent that does not declare itself safe for concurrent calls gets one thread
    assert LocalRunner(spec(), "toy", {}, agent_threads=4)._call_width(scale_helpers.StatefulAgent()) == 1
