"""The local runner: N env worker processes on this machine and one agent in this process.

Two schedulers (``scheduler``), with the same per-episode results:

- ``pipeline`` (the default): the agent runs in a thread of its own, so envs step while it computes for
  others. An env whose reply is in and whose action queue is empty waits for the agent; the agent is called
  for the waiting envs (at most ``max_batch``, oldest first) as soon as it is free and ``min_batch`` envs wait,
  or the oldest has waited ``max_wait_s``, or no other env is stepping. An env whose queue still holds actions
  of its chunk steps at once, without waiting for anyone. Agents that declare ``concurrent_calls_safe`` (the
  policy-server client, whose server batches calls) may have ``agent_threads`` calls in flight (default: one
  per env); any other agent is called from one thread, one call at a time.
- ``lockstep``: each round waits for every stepping env, makes one agent call for the envs whose queue is
  empty, then sends each env its next action (envs that are resetting do not hold the others up). The agent
  idles while the slowest env steps and every env idles during the agent call; kept for comparison.

Finished envs start the next planned episode with ``reset(seed=seed, options={"episode": k})``, and per env the
agent sees ``reset`` before the episode's first ``act`` and its acts in order, so an episode's outcome depends
only on its key, never on which worker ran it, when, or which envs shared its agent calls.

Faults: a worker that dies (or whose env raises, or that the watchdog stops) is replaced and its episode re-run
from the start, at most ``max_retries`` times, then recorded as an error. An agent that raises (or returns an
invalid chunk) ends that env's episode as an error; in a batch, the envs are retried one by one so only the env
whose observation makes the agent fail is charged.

Watchdog (on by default, ``watchdog: false`` turns it off): a reset, step or agent call that takes longer than
a generous per-benchmark bound (its ``watchdog_bounds``, overridable with ``watchdog_s``) is a hang (a stuck
EGL/MuJoCo context, a deadlocked driver). A hung env worker is killed, restarted and its episode re-run; a hung
agent call (pipeline scheduler) is abandoned, a fresh agent is built and every episode in progress is re-run,
since the fresh agent lacks their state. ``watchdog_kills`` counts them; re-runs show as ``attempts`` > 1.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing.connection
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np

from harness.chunking import AgentOutputError, ChunkExecutor, check_agent_chunking
from harness.records import STATUS_ERROR, STATUS_OK, EpisodeRecord
from harness.runner import AgentSource, EpisodeResult, Runner
from harness.workers import EnvSpec, EnvWorker, WorkerError, wait_any
from policies.base import Agent
from tasks.plan import EpisodeKey
from tasks.registry import benchmark_watchdog_bounds

log = logging.getLogger(__name__)

SCHEDULERS = ("pipeline", "lockstep")
#: Bounds for envs of no registered benchmark (the toy env of the tests); a benchmark declares its own
#: (``watchdog_bounds`` in its tasks module).
DEFAULT_WATCHDOG: dict[str, float] = {"reset": 600.0, "step": 120.0, "agent": 600.0}


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
        #: pipeline: the agent must reset this env before its next act (a new episode or subtask)
        self.needs_reset = False
        #: pipeline: when the env began waiting for the agent
        self.waiting_since = 0.0


@dataclasses.dataclass
class _RunState:
    """What one ``run`` call shares between its loop and the helpers."""

    source: AgentSource
    policy: Agent
    chunker: ChunkExecutor
    queue: deque[EpisodeKey]
    video: set[int]
    done: list[EpisodeResult] = dataclasses.field(default_factory=list)
    #: pipeline: finished episodes whose agent notes wait until the agent is free
    pending_info: list[tuple[int, EpisodeResult]] = dataclasses.field(default_factory=list)
    agent_busy: bool = False


class _Job:
    """One agent call of the pipeline scheduler: resets, then act, in the agent thread."""

    def __init__(self, number: int, batch: list[_Slot]) -> None:
        self.number = number
        self.batch = batch
        self.resets = [s for s in batch if s.needs_reset]
        self.started_at = time.monotonic()
        self.errors: dict[int, str] = {}
        self.called: list[int] = []
        self.exception: BaseException | None = None
        self.finished = threading.Event()
        self.thread: _AgentThread | None = None


class _AgentThread:
    """The pipeline's agent thread: runs submitted calls one at a time, in order."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name="vla-gym-agent", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while (call := self._calls.get()) is not None:
            call()

    def submit(self, call: Callable[[], None]) -> None:
        self._calls.put(call)

    def stop(self) -> None:
        """Exit after the calls already submitted (a hung call keeps its thread; it is a daemon)."""
        self._calls.put(None)


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
        scheduler: str = "pipeline",
        max_batch: int | None = None,
        min_batch: int = 1,
        max_wait_s: float = 0.0,
        watchdog: bool = True,
        watchdog_s: dict[str, float] | None = None,
        agent_threads: int | None = None,
    ) -> None:
        super().__init__(env, benchmark, protocol, seed=seed)
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if call_timeout_s is not None and call_timeout_s <= 0:
            raise ValueError(f"call_timeout_s must be > 0 or null, got {call_timeout_s}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {scheduler!r}")
        if max_batch is not None and (not isinstance(max_batch, int) or max_batch < 1):
            raise ValueError(f"max_batch must be an int >= 1 or null, got {max_batch!r}")
        if not isinstance(min_batch, int) or min_batch < 1:
            raise ValueError(f"min_batch must be an int >= 1, got {min_batch!r}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        if agent_threads is not None and (not isinstance(agent_threads, int) or agent_threads < 1):
            raise ValueError(f"agent_threads must be an int >= 1 or null, got {agent_threads!r}")
        self.num_envs = num_envs
        self.max_retries = max_retries
        self.call_timeout_s = call_timeout_s
        self.start_method = start_method
        self.scheduler = scheduler
        self.max_batch = max_batch
        self.min_batch = min_batch
        self.max_wait_s = float(max_wait_s)
        self.agent_threads = agent_threads
        #: the watchdog's bound per call kind ("reset", "step", "call", "agent"); None: no bound
        self.bounds = _watchdog_bounds(benchmark, watchdog, watchdog_s, call_timeout_s)
        self._slots = [_Slot(i) for i in range(num_envs)]
        self._agent: Agent | None = None
        self._factory: Any = None
        self._checkpoint: str | None = None
        #: worker restarts so far (all runs), for reports and tests
        self.restarts = 0
        #: calls the watchdog stopped so far (hung env calls and hung agent calls)
        self.watchdog_kills = 0
        # fresh workers in a row that died before their first reply: a broken set-up, not bad luck
        self._startup_deaths = 0
        # whether the agent reads simulator ground truth (scripted experts): workers then add obs["privileged"]
        self._privileged = False
        self._jobs = 0

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
        slot.needs_reset = False
        if attempt == 1:
            slot.started_at = time.monotonic()
        slot.frames = [] if video else None
        command = {"seed": self.seed, "options": {"episode": key.index}, "privileged": self._privileged}
        self._worker(slot).send("reset", command)

    def _deadline(self, worker: EnvWorker) -> float | None:
        bound = self.bounds.get(worker.pending or "")
        return None if bound is None else worker.sent_at + bound

    def _hung(self, worker: EnvWorker) -> WorkerError:
        self.watchdog_kills += 1
        worker.kill()
        return WorkerError(
            f"env worker {worker.index} gave no reply to {worker.pending} within {self.bounds[worker.pending or '']} s"
        )

    def _gather(self, slots: list[_Slot]) -> list[tuple[_Slot, Any]]:
        """Replies of in-flight calls: all pending steps (so the agent sees a full batch), plus whatever
        resets are done by then; with only resets in flight, at least one of them."""
        results: dict[int, Any] = {}
        inflight = {s.index: w for s in slots if (w := s.worker) is not None and w.pending}
        must = {i for i, w in inflight.items() if w.pending == "step"}
        while len(results) < len(inflight):
            waiting = [w for i, w in inflight.items() if i not in results]
            final = bool(results) and must <= set(results)
            deadlines = [d for w in waiting if (d := self._deadline(w)) is not None]
            if final:
                timeout: float | None = 0.0
            elif not deadlines:
                timeout = None
            else:
                timeout = max(0.0, min(deadlines) - time.monotonic())
            for worker in wait_any(waiting, timeout):
                try:
                    results[worker.index] = worker.recv()
                except WorkerError as exc:
                    results[worker.index] = exc
            if final:
                break
            now = time.monotonic()
            for worker in waiting:
                deadline = self._deadline(worker)
                if worker.index not in results and deadline is not None and now >= deadline:
                    results[worker.index] = self._hung(worker)
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
        state = _RunState(agent, policy, ChunkExecutor(self.num_envs, policy.execute_steps), deque(episodes),
                          set(video_episodes))  # fmt: skip
        loop = self._loop_pipeline if self.scheduler == "pipeline" else self._loop_lockstep
        try:
            for slot in slots:
                self._next_episode(state, slot)
            yield from loop(state, slots)
        finally:
            # Abandoned mid-episode (exception, Ctrl-C, consumer stopped): replies in flight would confuse the
            # next run, so those workers are replaced.
            for slot in slots:
                if slot.worker is not None and slot.worker.pending:
                    self._drop_worker(slot)
                slot.key, slot.obs, slot.frames, slot.needs_reset = None, None, None, False

    def _next_episode(self, state: _RunState, slot: _Slot) -> None:
        if state.queue:
            nxt = state.queue.popleft()
            self._start(slot, nxt, 1, nxt.index in state.video)

    def _finish(self, state: _RunState, slot: _Slot, status: str, success: bool = False, **fields: Any) -> None:
        assert slot.key is not None
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
        result = EpisodeResult(record, slot.frames)
        if status != STATUS_OK or "agent_info" in fields:
            state.done.append(result)
        elif state.agent_busy:  # the agent thread is in a call: ask for its notes once it is free
            state.pending_info.append((slot.index, result))
        else:
            record.agent_info = _agent_info(state.policy, slot.index)
            state.done.append(result)
        slot.key, slot.obs, slot.frames, slot.needs_reset = None, None, None, False
        self._next_episode(state, slot)

    def _flush_info(self, state: _RunState) -> None:
        """Agent notes of episodes that finished while the agent was busy (call only while it is free)."""
        for env_id, result in state.pending_info:
            result.record.agent_info = _agent_info(state.policy, env_id)
            state.done.append(result)
        state.pending_info.clear()

    def _loop_lockstep(self, state: _RunState, slots: list[_Slot]) -> Iterator[EpisodeResult]:
        chunker = state.chunker
        while any(slot.key is not None for slot in slots):
            started: list[_Slot] = []
            for slot, reply in self._gather(slots):
                if isinstance(reply, WorkerError):
                    self._on_worker_error(state, slot, reply)
                    continue
                self._startup_deaths = 0
                self._on_reply(state, slot, reply, started)
            if started:
                chunker.flush([s.index for s in started])
                for slot, error in self._reset_agent(state.policy, started).items():
                    self._finish(state, slot, STATUS_ERROR, error=error)
            ready = [s for s in slots if s.key is not None and s.obs is not None]  # reply in, not stepping
            need = chunker.needs_action([s.index for s in ready])
            if need:
                errors, called = self._act(state.policy, chunker, [self._slots[i] for i in need])
                for i in called:
                    self._slots[i].agent_calls += 1
                for slot in ready:
                    if slot.index in errors:
                        self._finish(state, slot, STATUS_ERROR, error=errors[slot.index])
            for slot in ready:
                if slot.key is not None and slot.obs is not None:
                    slot.worker.send("step", chunker.pop(slot.index))  # type: ignore[union-attr]
                    slot.obs = None
            yield from state.done
            state.done.clear()

    def _loop_pipeline(self, state: _RunState, slots: list[_Slot]) -> Iterator[EpisodeResult]:
        waiting: list[_Slot] = []  # reply in, action queue empty: waiting for the agent, oldest first
        jobs: dict[int, _Job] = {}  # agent calls in flight (more than one only for concurrent-safe agents)
        signal_in, signal_out = multiprocessing.connection.Pipe(duplex=False)
        width = self._call_width(state.policy)
        threads = [_AgentThread() for _ in range(width)]
        idle = list(threads)
        bound = self.bounds.get("agent")
        try:
            while any(slot.key is not None for slot in slots):
                now = time.monotonic()
                if not jobs or width > 1:
                    if not jobs:
                        self._flush_info(state)
                    waiting = [s for s in waiting if s.key is not None and s.obs is not None]
                    while idle and self._should_call(waiting, slots, now):
                        batch = waiting[: self.max_batch or len(waiting)]
                        del waiting[: len(batch)]
                        job = self._submit(state, batch, signal_out, idle.pop())
                        jobs[job.number] = job
                    state.agent_busy = bool(jobs) and width == 1
                # wait for a reply, the agent, the oldest waiting env's max wait, or a watchdog deadline
                inflight = [w for s in slots if (w := s.worker) is not None and w.pending]
                deadlines = [d for w in inflight if (d := self._deadline(w)) is not None]
                if bound is not None:
                    deadlines += [job.started_at + bound for job in jobs.values()]
                if idle and waiting:
                    deadlines.append(waiting[0].waiting_since + self.max_wait_s)
                timeout = None if not deadlines else max(0.0, min(deadlines) - time.monotonic())
                handles: list[Any] = [w.conn for w in inflight] + ([signal_in] if jobs else [])
                ready = set(multiprocessing.connection.wait(handles, timeout)) if handles else set()
                if signal_in in ready:
                    while signal_in.poll():
                        number = signal_in.recv()  # numbers of abandoned (hung) calls are ignored
                        if number in jobs:
                            job = jobs.pop(number)
                            idle.append(job.thread)  # type: ignore[arg-type]
                            state.agent_busy = bool(jobs) and width == 1
                            self._complete(state, job)
                for worker in inflight:
                    if worker.conn not in ready:
                        continue
                    slot = self._slots[worker.index]
                    try:
                        reply = worker.recv()
                    except WorkerError as exc:
                        self._on_worker_error(state, slot, exc)
                        continue
                    self._startup_deaths = 0
                    self._after_reply(state, slot, reply, waiting)
                now = time.monotonic()
                for worker in inflight:
                    deadline = self._deadline(worker)
                    if worker.pending and deadline is not None and now >= deadline:
                        self._on_worker_error(state, self._slots[worker.index], self._hung(worker))
                hung = [job for job in jobs.values() if bound is not None and now >= job.started_at + bound]
                if hung:
                    for thread in threads:
                        thread.stop()  # each exits once its call returns, if ever
                    self._agent_hung(state, hung[0], slots)
                    jobs, waiting = {}, []
                    threads = [_AgentThread() for _ in range(width)]
                    idle = list(threads)
                yield from state.done
                state.done.clear()
            if not jobs:  # notes of episodes that ended during the last agent call
                self._flush_info(state)
                yield from state.done
                state.done.clear()
        finally:
            for job in jobs.values():
                if not job.finished.wait(bound or 60.0):
                    self._agent, self._factory = None, None  # never hand a busy agent to the next run
            for thread in threads:
                thread.stop()
            signal_in.close()
            signal_out.close()

    def _call_width(self, policy: Agent) -> int:
        """Agent calls the pipeline may have in flight at once: for agents that declare
        ``concurrent_calls_safe`` (remote clients: the server batches), ``agent_threads`` (null: one per env);
        for any other agent one."""
        if not getattr(policy, "concurrent_calls_safe", False):
            if (self.agent_threads or 1) > 1:
                log.warning("%s is not safe for concurrent calls: using one agent thread", type(policy).__name__)
            return 1
        return self.agent_threads or self.num_envs

    def _should_call(self, waiting: list[_Slot], slots: list[_Slot], now: float) -> bool:
        if not waiting:
            return False
        if len(waiting) >= self.min_batch or now - waiting[0].waiting_since >= self.max_wait_s:
            return True
        return not any(s.worker is not None and s.worker.pending for s in slots)  # nobody else can join

    def _after_reply(self, state: _RunState, slot: _Slot, reply: Any, waiting: list[_Slot]) -> None:
        """Pipeline: a reply is in; step on from the chunk, or wait for the agent."""
        started: list[_Slot] = []
        self._on_reply(state, slot, reply, started)
        if slot.key is None or slot.obs is None:
            return  # finished (a next episode may be resetting already)
        if started:
            state.chunker.flush([slot.index])
            slot.needs_reset = True
        if state.chunker.needs_action([slot.index]):
            slot.waiting_since = time.monotonic()
            waiting.append(slot)
        else:
            slot.worker.send("step", state.chunker.pop(slot.index))  # type: ignore[union-attr]
            slot.obs = None

    def _submit(self, state: _RunState, batch: list[_Slot], signal: Any, thread: _AgentThread) -> _Job:
        self._jobs += 1
        job = _Job(self._jobs, batch)
        policy, chunker = state.policy, state.chunker

        def work() -> None:
            try:
                job.errors = {s.index: e for s, e in self._reset_agent(policy, job.resets).items()}
                live = [s for s in batch if s.index not in job.errors]
                if live:
                    errors, job.called = self._act(policy, chunker, live)
                    job.errors.update(errors)
            except BaseException as exc:  # a bug here must not hang the loop: re-raised there
                job.exception = exc
            finally:
                job.finished.set()
                try:
                    signal.send(job.number)
                except OSError:  # the loop is gone
                    pass

        job.thread = thread
        thread.submit(work)
        return job

    def _complete(self, state: _RunState, job: _Job) -> None:
        if job.exception is not None:
            raise job.exception
        for i in job.called:
            self._slots[i].agent_calls += 1
        for slot in job.batch:
            slot.needs_reset = False
            if slot.key is None or slot.obs is None:  # cannot happen: a waiting env has no call in flight
                continue
            if slot.index in job.errors:
                self._finish(state, slot, STATUS_ERROR, error=job.errors[slot.index])
                continue
            slot.worker.send("step", state.chunker.pop(slot.index))  # type: ignore[union-attr]
            slot.obs = None

    def _agent_hung(self, state: _RunState, job: _Job, slots: list[_Slot]) -> None:
        """The agent call exceeded its bound: abandon that agent, build a fresh one, re-run what was running."""
        self.watchdog_kills += 1
        state.agent_busy = False
        message = f"agent call for envs {[s.index for s in job.batch]} gave no result within {self.bounds['agent']} s"
        log.error("%s; building a fresh agent and re-running the episodes in progress", message)
        for _env_id, result in state.pending_info:  # the hung agent cannot be asked
            result.record.agent_info = {"episode_info_error": "the agent hung before its notes were read"}
            state.done.append(result)
        state.pending_info.clear()
        self._agent, self._factory = None, None  # left to its thread; never called again
        state.policy = self._agent_for(state.source)
        state.chunker = ChunkExecutor(self.num_envs, state.policy.execute_steps)
        for slot in slots:
            if slot.key is not None:
                self._on_worker_error(state, slot, WorkerError(message))

    def _on_reply(self, state: _RunState, slot: _Slot, reply: Any, started: list[_Slot]) -> None:
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
            self._finish(
                state,
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

    def _on_worker_error(self, state: _RunState, slot: _Slot, error: WorkerError) -> None:
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
            self._start(slot, slot.key, slot.attempt + 1, slot.key.index in state.video)
        else:
            self._finish(state, slot, STATUS_ERROR, error=f"env worker failed {slot.attempt} times; last: {error}")

    def _record_frame(self, slot: _Slot, obs: dict[str, Any]) -> None:
        if slot.frames is not None and "image" in obs:
            slot.frames.append(np.array(obs["image"], dtype=np.uint8, copy=True))

    def _reset_agent(self, policy: Agent, started: list[_Slot]) -> dict[_Slot, str]:
        """``policy.reset`` for these envs; returns {slot: error} for envs whose reset fails."""
        if not started:
            return {}
        try:
            policy.reset([s.index for s in started])
            return {}
        except Exception:
            pass
        errors = {}
        for slot in started:  # find which env's reset fails
            try:
                policy.reset([slot.index])
            except Exception as exc:
                errors[slot] = f"agent.reset raised {_describe(exc)}"
        return errors

    def _act(self, policy: Agent, chunker: ChunkExecutor, batch: list[_Slot]) -> tuple[dict[int, str], list[int]]:
        """Ask the agent for the batch; returns ({env id: error} for envs whose episode must end as an error,
        the env ids whose call succeeded)."""
        ids = [s.index for s in batch]
        try:
            chunks = policy.act(stack_observations([s.obs for s in batch]), ids)  # type: ignore[misc]
            errors = chunker.push(ids, chunks)
        except Exception as exc:
            if len(batch) == 1:
                kind = "returned an invalid chunk" if isinstance(exc, AgentOutputError) else "raised"
                return {ids[0]: f"agent.act {kind}: {_describe(exc)}"}, []
            errors, called = {}, []
            for slot in batch:
                one_errors, one_called = self._act(policy, chunker, [slot])
                errors.update(one_errors)
                called += one_called
            return errors, called
        return errors, ids

    def close(self) -> None:
        for slot in self._slots:
            if slot.worker is not None:
                slot.worker.close()
                slot.worker = None
        if self._agent is not None:
            self._agent.close()
            self._agent = None


def _watchdog_bounds(
    benchmark: str, watchdog: bool, overrides: dict[str, float] | None, call_timeout_s: float | None
) -> dict[str, float | None]:
    """Per call kind, the watchdog's bound in seconds (None: unbounded)."""
    bounds: dict[str, float | None] = {"reset": None, "step": None, "call": None, "agent": None}
    if watchdog:
        defaults = dict(benchmark_watchdog_bounds(benchmark) or DEFAULT_WATCHDOG)
        bounds.update(defaults)
        bounds["call"] = defaults["reset"]
        for kind, value in (overrides or {}).items():
            if kind not in ("reset", "step", "agent"):
                raise ValueError(f"watchdog_s keys are reset, step and agent, got {kind!r}")
            if value is not None and value <= 0:
                raise ValueError(f"watchdog_s.{kind} must be > 0 or null, got {value}")
            bounds[kind] = value
    if call_timeout_s is not None:  # one explicit limit for env calls, with or without the watchdog
        bounds.update(reset=call_timeout_s, step=call_timeout_s, call=call_timeout_s)
    return bounds


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
