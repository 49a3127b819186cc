"""The local runner on the toy env: determinism across worker counts, chunking, faults, worker reuse."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import toy_env

from harness.chunking import AgentOutputError, ChunkExecutor
from harness.local_runner import LocalRunner
from harness.runner import AgentSource, make_runner
from harness.workers import EnvSpec, WorkerError
from policies.random_agent import RandomAgent

PROTOCOL = toy_env.BENCHMARK.protocol()
PLAN = toy_env.BENCHMARK.episode_plan(PROTOCOL)


def spec(**env_kwargs: Any) -> EnvSpec:
    toy_env.install()
    return EnvSpec(
        toy_env.ENV_ID,
        {**env_kwargs, "protocol": PROTOCOL},
        entry_point=f"{toy_env.__name__}:ToyEnv",
        protocol_digest=PROTOCOL.digest,
    )


def run(
    agent: Any, num_envs: int = 1, episodes: Sequence = PLAN, start_method: str = "fork", **kwargs: Any
) -> tuple[dict[int, Any], LocalRunner]:
    options = ("max_retries", "call_timeout_s", "scheduler", "min_batch", "max_wait_s")
    runner_opts = {k: kwargs.pop(k) for k in options if k in kwargs}
    runner = LocalRunner(spec(**kwargs), "toy", PROTOCOL.to_dict(), num_envs=num_envs, start_method=start_method,
                         **runner_opts)  # fmt: skip
    with runner:
        results = {r.record.episode: r.record for r in runner.run(episodes, AgentSource(lambda: agent))}
    return results, runner


def outcome(records: dict[int, Any]) -> dict[int, tuple]:
    return {k: (r.status, r.success, r.steps, r.episode_metrics) for k, r in sorted(records.items())}


def test_outcomes_do_not_depend_on_the_number_of_workers() -> None:
    one, _ = run(toy_env.ConstantAgent(w=0.4), num_envs=1)
    two, _ = run(toy_env.ConstantAgent(w=0.4), num_envs=2, start_method="spawn")  # the default start method
    assert sorted(one) == [k.index for k in PLAN]
    assert outcome(one) == outcome(two)
    for k, record in one.items():
        assert record.success == toy_env.expected_success(k, 0.4, PROTOCOL), k
        assert record.terminated == record.success and record.truncated == (not record.success)
    assert 0 < sum(r.success for r in one.values()) < len(PLAN)  # the reference is not trivial
    # The seeded random agent too: each episode's actions depend on the episode, not on the worker.
    r1, _ = run(RandomAgent(seed=3, scale=0.7), num_envs=1)
    r3, _ = run(RandomAgent(seed=3, scale=0.7), num_envs=3)
    assert outcome(r1) == outcome(r3)
    r_other, _ = run(RandomAgent(seed=4, scale=0.7), num_envs=1)
    assert outcome(r_other) != outcome(r1)


def test_instructions_arrive_intact_and_agent_resets_once_per_episode() -> None:
    agent = toy_env.ConstantAgent(w=0.4)
    # Slow steps, so that both workers are up long before the plan is done (a busy machine can start the
    # second worker late) and the agent sees batches of two.
    # The pipeline calls the agent as soon as it is free; min_batch=2 makes it wait for both envs.
    records, _ = run(agent, num_envs=2, step_sleep=0.05, min_batch=2, max_wait_s=30.0)
    languages = {text for _, batch in agent.calls for text in batch}
    assert languages == set(toy_env.INSTRUCTIONS.values())  # never blank or mangled
    assert sum(len(ids) for ids in agent.resets) == len(PLAN)
    assert agent.configured == ("toy", PROTOCOL.to_dict())
    assert max(len(ids) for ids, _ in agent.calls) == 2  # the agent was batched across envs
    assert sum(r.agent_calls for r in records.values()) == sum(len(ids) for ids, _ in agent.calls)


def test_chunks_execute_k_steps_and_flush_on_subtask_change() -> None:
    episode = [PLAN[8]]  # target 2.5: with w=0.25 it runs the full 8 steps
    agent = toy_env.ConstantAgent(w=0.25, chunk_size=4, execute_steps=3)
    records, _ = run(agent, episodes=episode)
    assert records[8].steps == 8
    assert records[8].agent_calls == 3  # steps 1-3, 4-6, 7-8
    agent = toy_env.ConstantAgent(w=0.25, chunk_size=4, execute_steps=3)
    records, _ = run(agent, episodes=episode, subtask_at=1)
    # the subtask starts after step 1: queue flushed, agent reset, then steps 2-4, 5-7, 8
    assert records[8].agent_calls == 4
    assert agent.resets == [[0], [0]]
    assert [langs[0] for _, langs in agent.calls] == [toy_env.INSTRUCTIONS["reach_far"]] + [toy_env.SECOND_PART] * 3


def test_chunk_executor_validates_agent_output() -> None:
    chunks = ChunkExecutor(num_envs=3, execute_steps=2)
    bad = chunks.push([0, 2], np.stack([np.ones((4, 7)), np.full((4, 7), np.nan)]))
    assert list(bad) == [2] and "non-finite" in bad[2]
    assert chunks.needs_action([0, 1, 2]) == [1, 2]
    assert chunks.pop(0).shape == (7,) and chunks.pop(0).dtype == np.float64  # exact to the env
    assert chunks.needs_action([0]) == [0]  # only execute_steps of the 4 were queued
    chunks.push([1], np.ones((1, 1, 7)))  # a chunk shorter than execute_steps runs what it has
    chunks.flush([1])
    assert chunks.needs_action([1]) == [1]
    with pytest.raises(AgentOutputError, match=r"shape \(2, 7\)"):
        chunks.push([0, 1], np.ones((2, 7)))
    with pytest.raises(AgentOutputError, match="dtype"):
        chunks.push([0], np.array([[["a"] * 7]]))


def test_killed_worker_is_restarted_and_its_episode_rerun(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    clean, _ = run(toy_env.ConstantAgent(w=0.4), num_envs=2)
    records, runner = run(toy_env.ConstantAgent(w=0.4), num_envs=2, crash_episode=5, crash_marker=str(marker))
    assert marker.exists()  # the worker really was SIGKILLed once
    assert runner.restarts == 1
    assert records[5].attempts == 2
    assert outcome(records) == outcome(clean)  # nothing lost, nothing duplicated, same outcomes


def test_worker_that_keeps_dying_ends_as_an_error() -> None:
    records, runner = run(toy_env.ConstantAgent(w=0.4), num_envs=2, crash_episode=1, max_retries=1)
    assert runner.restarts == 2
    bad = records[1]
    assert (bad.status, bad.success, bad.attempts) == ("error", False, 2)
    assert "SIGKILL" in bad.error
    assert all(r.status == "ok" for k, r in records.items() if k != 1)
    assert len(records) == len(PLAN)


def test_agent_that_raises_ends_only_its_episodes_as_errors() -> None:
    records, _ = run(toy_env.RaisingAgent(bad_task="reach_mid", w=0.4), num_envs=2)
    for k, record in records.items():
        if PLAN[k].task == "reach_mid":
            assert (record.status, record.success) == ("error", False)
            assert "agent exploded on purpose" in record.error
        else:
            assert record.status == "ok"
            assert record.success == toy_env.expected_success(k, 0.4, PROTOCOL)


class _NanAgent(toy_env.ConstantAgent):
    def act(self, obs: dict, env_ids: Sequence[int]) -> np.ndarray:
        out = super().act(obs, env_ids)
        out[:, :, 3] = np.nan
        return out


class _WrongShapeAgent(toy_env.ConstantAgent):
    def act(self, obs: dict, env_ids: Sequence[int]) -> np.ndarray:
        return np.zeros((len(env_ids), 7), dtype=np.float32)


@pytest.mark.parametrize(("agent", "message"), [(_NanAgent(), "non-finite"), (_WrongShapeAgent(), "invalid chunk")])
def test_invalid_agent_output_is_an_error_not_a_crash(agent: Any, message: str) -> None:
    records, _ = run(agent, num_envs=2, episodes=PLAN[:3])
    assert all(r.status == "error" and not r.success and message in r.error for r in records.values())


def test_env_that_cannot_be_built_stops_the_run_with_its_error() -> None:
    with pytest.raises(WorkerError, match="could not build its env(.|\n)*bogus"):
        run(toy_env.ConstantAgent(), bogus=1)


def test_workers_are_reused_across_checkpoints(tmp_path: Path) -> None:
    built: list[toy_env.WeightsAgent] = []

    def factory() -> toy_env.WeightsAgent:
        built.append(toy_env.WeightsAgent())
        return built[-1]

    (tmp_path / "a.pt").write_text("0.3")
    (tmp_path / "b.pt").write_text("0.6")
    runner = LocalRunner(spec(), "toy", PROTOCOL.to_dict(), num_envs=2, start_method="fork")
    with runner:
        results = {}
        pids = []
        for name in ("a.pt", "b.pt"):
            source = AgentSource(factory, str(tmp_path / name))
            results[name] = {r.record.episode: r.record.success for r in runner.run(PLAN, source)}
            pids.append([slot.worker.process.pid for slot in runner._slots])
    assert len(built) == 1 and built[0].loaded == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    assert pids[0] == pids[1]  # the same env processes served both checkpoints
    for name, w in (("a.pt", 0.3), ("b.pt", 0.6)):
        assert results[name] == {k.index: toy_env.expected_success(k.index, w, PROTOCOL) for k in PLAN}


def test_unknown_runner_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="unknown runner 'nope'"):
        make_runner("nope", spec(), "toy", {}, 0)
    with pytest.raises(ValueError, match="num_envs"):
        LocalRunner(spec(), "toy", {}, num_envs=0)


def test_video_frames_are_collected_for_asked_episodes() -> None:
    runner = LocalRunner(spec(), "toy", PROTOCOL.to_dict(), num_envs=2, start_method="fork")
    agent = functools.partial(toy_env.ConstantAgent, w=0.4)
    with runner:
        results = {r.record.episode: r for r in runner.run(PLAN[:4], AgentSource(agent), video_episodes={1})}
    assert results[0].frames is None
    frames = results[1].frames
    assert frames is not None and len(frames) == results[1].record.steps + 1  # reset frame + one per step
    assert frames[0].shape == (224, 224, 3) and not np.array_equal(frames[0], frames[-1])


def test_hung_env_is_killed_after_the_call_timeout() -> None:
    records, runner = run(
        toy_env.ConstantAgent(w=0.4), episodes=PLAN[:1], step_sleep=5.0, call_timeout_s=0.5, max_retries=0
    )
    assert (records[0].status, records[0].success) == ("error", False)
    assert "gave no reply to step within 0.5 s" in records[0].error
    assert runner.restarts == 1


def test_workers_dying_at_start_up_stop_the_run() -> None:
    # Every worker dies before its env answers once: after max_retries + 1 such deaths in a row the run stops
    # instead of recording every episode as an error.
    with pytest.raises(WorkerError, match="2 env workers in a row died before"):
        run(toy_env.ConstantAgent(w=0.1), episodes=PLAN, die_on_reset=True, max_retries=1)
