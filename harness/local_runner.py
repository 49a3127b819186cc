"""The local runner: N env worker processes on this machine and one agent in this process.

Each step, the runner waits for every stepping env, asks the agent once for the batch of envs whose action
queue is empty, and sends each env its next action. Envs that are resetting do not hold the others up.
Finished envs start the next planned episode with ``reset(seed=seed, options={"episode": k})``, so an
episode's outcome depends only on its key, never on which worker ran it or when.

Faults: a worker that dies (or whose env raises, or that exceeds ``call_timeout_s``) is replaced and its
episode re-run from the start, at most ``max_retries`` times, then recorded as an error. An agent that
raises (or returns an invalid chunk) ends that env's episode as an error; in a batch, the envs are retried
one by one so only the env whose observation makes the agent fail is charged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import numpy as np

from harness.chunking import AgentOutputError, ChunkExecutor, check_agent_chunking
from harness.records import STATUS_ERROR, STATUS_OK, EpisodeRecord
from harness.runner import AgentSource, EpisodeResult, Runner
from harness.workers import EnvSpec, EnvWorker, WorkerError, wait_any
from policies.base import Agent
from tasks.plan import EpisodeKey

log = logging.getLogger(__name__)


class _Slot:
    """One env worker and the episode it is running."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.worker: EnvWorker | None = None
        self.key: EpisodeKey | None = None
        self.obs: dict[str, Any] | None = None
        self.attempt = 0
        self.steps = 0
        self.agent_calls = 0
        self.started_at = 0.0
        self.frames: list[np.ndarray] | None = None


class LocalRunner(Runner):
    def __init__(
        self,
        env: EnvSpec,
        benchmark: str,
        protocol: dict[str, Any],
        *,
        seed: int = 0,
        num_envs: int = 1,
        max_retries: int = 2,
        call_timeout_s: float | None = None,
        start_method: str = "spawn",
    ) -> None:
        super().__init__(env, benchmark, protocol, seed=seed)
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if call_timeout_s is not None and call_timeout_s <= 0:
            raise ValueError(f"call_timeout_s must be > 0 or null, got {call_timeout_s}")
        self.num_envs = num_envs
        self.max_retries = max_retries
        self.call_timeout_s = call_timeout_s
        self.start_method = start_method
        self._slots = [_Slot(i) for i in range(num_envs)]
        self._agent: Agent | None = None
        self._factory: Any = None
        self._checkpoint: str | None = None
        #: worker restarts so far (all runs), for reports and tests
        self.restarts = 0
        # fresh workers in a row that died before their first reply: a broken set-up, not bad luck
        self._startup_deaths = 0
        # whether the agent reads simulator ground truth (scripted experts): workers then add obs["privileged"]
        self._privileged = False

    # ---- agent ------------------------------------------------------------------------------------

    def _agent_for(self, source: AgentSource) -> Agent:
        if self._agent is None or source.factory is not self._factory:
            if self._agent is not None:
                self._agent.close()
            agent = source.factory()
            if not isinstance(agent, Agent):
                raise TypeError(f"the policy factory built {type(agent).__name__}, not a policies.base.Agent")
            agent.configure(self.benchmark, self.protocol)
            check_agent_chunking(agent)  # after configure: agents may size their chunks per benchmark
            self._agent, self._factory, self._checkpoint = agent, source.factory, None
        if source.checkpoint is not None and source.checkpoint != self._checkpoint:
            self._agent.load_weights(source.checkpoint)
            self._checkpoint = source.checkpoint
        return self._agent

    # ---- workers ----------------------------------------------------------------------------------

    def _worker(self, slot: _Slot) -> EnvWorker:
        if slot.worker is None:
            slot.worker = EnvWorker(self.env, slot.index, self.start_method)
        return slot.worker

    def _drop_worker(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.kill()
            slot.worker = None

    def _start(self, slot: _Slot, key: EpisodeKey, attempt: int, video: bool) -> None:
        slot.key, slot.obs, slot.attempt = key, None, attempt
        slot.steps = slot.agent_calls = 0
        if attempt == 1:
            slot.started_at = time.monotonic()
        slot.frames = [] if video else None
        command = {"seed": self.seed, "options": {"episode": key.index}, "privileged": self._privileged}
        self._worker(slot).send("reset", command)

    def _gather(self, slots: list[_Slot]) -> list[tuple[_Slot, Any]]:
        """Replies of in-flight calls: all pending steps (so the agent sees a full batch), plus whatever
        resets are done by then; with only resets in flight, at least one of them."""
        results: dict[int, Any] = {}
        inflight = {s.index: w for s in slots if (w := s.worker) is not None and w.pending}
        must = {i for i, w in inflight.items() if w.pending == "step"}
        while len(results) < len(inflight):
            waiting = [w for i, w in inflight.items() if i not in results]
            final = bool(results) and must <= set(results)
            if final:
                timeout: float | None = 0.0
            elif self.call_timeout_s is None:
                timeout = None
            else:
                oldest = min(w.sent_at for w in waiting)
                timeout = max(0.0, oldest + self.call_timeout_s - time.monotonic())
            for worker in wait_any(waiting, timeout):
                try:
                    results[worker.index] = worker.recv()
                except WorkerError as exc:
                    results[worker.index] = exc
            if final:
                break
            if self.call_timeout_s is not None:
                now = time.monotonic()
                for worker in waiting:
                    if worker.index not in results and now - worker.sent_at >= self.call_timeout_s:
                        results[worker.index] = WorkerError(
                            f"env worker {worker.index} gave no reply to {worker.pending} "
                            f"within {self.call_timeout_s} s"
                        )
                        worker.kill()
        return [(self._slots[i], results[i]) for i in sorted(results)]

    # ---- the loop ---------------------------------------------------------------------------------

    def run(
        self, episodes: Sequence[EpisodeKey], agent: AgentSource, video_episodes: Collection[int] = ()
    ) -> Iterator[EpisodeResult]:
        if not episodes:
            return
        slots = self._slots[: min(self.num_envs, len(episodes))]
        for slot in slots:
            self._worker(slot)  # start the processes first: envs build while the agent loads
        policy = self._agent_for(agent)
        self._privileged = bool(getattr(policy, "needs_privileged", False))
        chunker = ChunkExecutor(self.num_envs, policy.execute_steps)
        queue = deque(episodes)
        video = set(video_episodes)
        done: list[EpisodeResult] = []

        def finish(slot: _Slot, status: str, success: bool = False, **fields: Any) -> None:
            assert slot.key is not None
            if status == STATUS_OK:
                fields.setdefault("agent_info", _agent_info(policy, slot.index))
            record = EpisodeRecord.for_key(
                slot.key,
                status=status,
                success=bool(success) and status == STATUS_OK,
                steps=slot.steps,
                agent_calls=slot.agent_calls,
                attempts=slot.attempt,
                duration_s=round(time.monotonic() - slot.started_at, 3),
                **fields,
            )
            done.append(EpisodeResult(record, slot.frames))
            slot.key, slot.obs, slot.frames = None, None, None
            if queue:
                nxt = queue.popleft()
                self._start(slot, nxt, 1, nxt.index in video)

        try:
            for slot in slots:
                if queue:
                    nxt = queue.popleft()
                    self._start(slot, nxt, 1, nxt.index in video)
            while any(slot.key is not None for slot in slots):
                started: list[_Slot] = []
                for slot, reply in self._gather(slots):
                    if isinstance(reply, WorkerError):
                        self._on_worker_error(slot, reply, finish, video)
                        continue
                    self._startup_deaths = 0
                    self._on_reply(slot, reply, started, finish)
                if started:
                    self._reset_agent(policy, chunker, started, finish)
                ready = [s for s in slots if s.key is not None and s.obs is not None]  # reply in, not stepping
                need = chunker.needs_action([s.index for s in ready])
                if need:
                    errors = self._act(policy, chunker, [self._slots[i] for i in need])
                    for slot in ready:
                        if slot.index in errors:
                            finish(slot, STATUS_ERROR, error=errors[slot.index])
                for slot in ready:
                    if slot.key is not None and slot.obs is not None:
                        slot.worker.send("step", chunker.pop(slot.index))  # type: ignore[union-attr]
                        slot.obs = None
                yield from done
                done.clear()
        finally:
            # Abandoned mid-episode (exception, Ctrl-C, consumer stopped): replies in flight would confuse the
            # next run, so those workers are replaced.
            for slot in slots:
                if slot.worker is not None and slot.worker.pending:
                    self._drop_worker(slot)
                slot.key, slot.obs, slot.frames = None, None, None

    def _on_reply(self, slot: _Slot, reply: Any, started: list[_Slot], finish: Any) -> None:
        assert slot.key is not None
        if len(reply) == 2:  # reset
            obs, info = reply
            if "episode" in info and int(info["episode"]) != slot.key.index:
                raise RuntimeError(
                    f"{self.env.env_id} reset to episode {info['episode']} when asked for {slot.key.index}"
                )
            self._record_frame(slot, obs)
            slot.obs = obs
            started.append(slot)
            return
        obs, _reward, terminated, truncated, info = reply
        slot.steps += 1
        self._record_frame(slot, obs)
        if terminated or truncated:
            finish(
                slot,
                STATUS_OK,
                success=bool(info.get("success", False)),
                terminated=bool(terminated),
                truncated=bool(truncated),
                episode_metrics=dict(info.get("episode_metrics") or {}),
            )
            return
        slot.obs = obs
        if info.get("subtask_changed"):
            started.append(slot)

    def _on_worker_error(self, slot: _Slot, error: WorkerError, finish: Any, video: set[int]) -> None:
        assert slot.key is not None
        never_replied = slot.worker is None or slot.worker.replies == 0
        self._drop_worker(slot)
        if error.fatal:
            raise error
        self._startup_deaths = self._startup_deaths + 1 if never_replied else 0
        if self._startup_deaths > self.max_retries:
            raise WorkerError(
                f"{self._startup_deaths} env workers in a row died before their env answered once; "
                f"stopping (see the worker output above). Last: {error}",
                fatal=True,
            )
        self.restarts += 1
        if slot.attempt <= self.max_retries:
            log.warning("%s; re-running episode %d (attempt %d)", error, slot.key.index, slot.attempt + 1)
            self._start(slot, slot.key, slot.attempt + 1, slot.key.index in video)
        else:
            finish(slot, STATUS_ERROR, error=f"env worker failed {slot.attempt} times; last: {error}")

    def _record_frame(self, slot: _Slot, obs: dict[str, Any]) -> None:
        if slot.frames is not None and "image" in obs:
            slot.frames.append(np.array(obs["image"], dtype=np.uint8, copy=True))

    def _reset_agent(self, policy: Agent, chunker: ChunkExecutor, started: list[_Slot], finish: Any) -> None:
        ids = [s.index for s in started]
        chunker.flush(ids)
        try:
            policy.reset(ids)
            return
        except Exception:
            pass
        for slot in started:  # find which env's reset fails
            try:
                policy.reset([slot.index])
            except Exception as exc:
                finish(slot, STATUS_ERROR, error=f"agent.reset raised {_describe(exc)}")

    def _act(self, policy: Agent, chunker: ChunkExecutor, batch: list[_Slot]) -> dict[int, str]:
        """Ask the agent for the batch; returns {env id: error} for envs whose episode must end as an error."""
        ids = [s.index for s in batch]
        try:
            chunks = policy.act(stack_observations([s.obs for s in batch]), ids)  # type: ignore[misc]
            errors = chunker.push(ids, chunks)
        except Exception as exc:
            if len(batch) == 1:
                kind = "returned an invalid chunk" if isinstance(exc, AgentOutputError) else "raised"
                return {ids[0]: f"agent.act {kind}: {_describe(exc)}"}
            errors = {}
            for slot in batch:
                errors.update(self._act(policy, chunker, [slot]))
            return errors
        for slot in batch:
            slot.agent_calls += 1
        return errors

    def close(self) -> None:
        for slot in self._slots:
            if slot.worker is not None:
                slot.worker.close()
                slot.worker = None
        if self._agent is not None:
            self._agent.close()
            self._agent = None


def stack_observations(observations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch per-env observations on axis 0 (strings become a list)."""
    out: dict[str, Any] = {}
    for key, first in observations[0].items():
        values = [obs[key] for obs in observations]
        out[key] = list(values) if isinstance(first, str | dict) else np.stack(values)
    return out


def _agent_info(policy: Agent, env_id: int) -> dict[str, Any]:
    """The agent's notes on the episode that just ended in ``env_id`` (e.g. which skill failed)."""
    try:
        return dict(policy.episode_info(env_id) or {})
    except Exception as exc:  # notes are optional; a failing hook must not cost the episode
        return {"episode_info_error": _describe(exc)}


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
