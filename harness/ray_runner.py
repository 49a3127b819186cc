"""``runner: ray``: the episode plan spread over the actors of a Ray cluster.

Each actor is a :class:`~harness.local_runner.LocalRunner` inside a Ray worker process: it owns
``envs_per_actor`` env worker processes and its own agent, built once per actor from the picklable
``AgentSource.factory`` (so a model's weights are loaded once per actor and stay loaded across runs; a
policy-server client such as ``policy=openpi`` simply connects from every actor). The driver hands episode
keys out in plan order, ``batch_episodes`` (default ``envs_per_actor``) at a time, to whichever actor is idle,
and yields each finished :class:`~harness.runner.EpisodeResult` as the actor streams it back; the caller writes
them into the one result store, so resuming works exactly as with the local runner. Episode outcomes depend
only on the key, never on which actor ran it. :meth:`RayRunner.run_many` streams several jobs (the checkpoints
of a sweep) through the same actors, so no actor idles between checkpoints.

Faults: an env worker dying inside an actor is the actor's LocalRunner's business (restart, bounded retries).
An actor that dies (killed, its node lost) has its unfinished episodes put back at the front of the queue for
the other actors; it is replaced at most ``max_actor_restarts`` times over the runner's life. An episode whose
actor died under it more than ``max_retries`` times is recorded as an error (a poison episode must not take the
whole cluster down one actor at a time). Its record's ``attempts`` counts those lost attempts too.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing
import os
import socket
import sys
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from harness.local_runner import LocalRunner
from harness.records import STATUS_ERROR, EpisodeRecord
from harness.runner import AgentSource, EpisodeResult, Runner
from harness.workers import EnvSpec
from tasks.plan import EpisodeKey

log = logging.getLogger(__name__)

# Environment variables an actor takes from the driver when its own node does not set them (headless
# rendering and asset folders); a node's own setting always wins.
FORWARDED_ENV_PREFIXES = ("VLA_GYM_", "MUJOCO_GL", "PYOPENGL_PLATFORM")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("runner=ray needs Ray: pip install 'vla-gym[ray]'") from exc
    return ray


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:  # made once: each ray.remote() of a class exports it to the cluster again
        _ACTOR_CLASS = _import_ray().remote(EvalActor)
    return _ACTOR_CLASS


class EvalActor:
    """What runs inside one Ray actor: a LocalRunner and the agent factory it was last given.

    Construction only extends ``sys.path`` and the environment, so that the later calls (whose arguments may
    name driver-side modules, e.g. a protocol class or an agent defined outside the package) can be unpickled.
    """

    def __init__(self, sys_path: list[str], environ: dict[str, str]) -> None:
        for entry in sys_path:  # appended: never shadow what the node itself has installed
            if entry not in sys.path:
                sys.path.append(entry)
        for name, value in environ.items():
            os.environ.setdefault(name, value)
        self._runner: LocalRunner | None = None
        self._factory: Any = None

    def setup(
        self, env: EnvSpec, benchmark: str, protocol: dict[str, Any], seed: int, options: dict[str, Any]
    ) -> str:
        self._runner = LocalRunner(env, benchmark, protocol, seed=seed, **options)
        return f"{socket.gethostname()}:{os.getpid()}"

    def set_agent(self, factory: Any) -> None:
        # Kept as one object: the LocalRunner rebuilds its agent only when the factory object changes.
        self._factory = factory

    def run(
        self, keys: list[EpisodeKey], checkpoint: str | None, video: list[int], *deps: Any
    ) -> Iterator[EpisodeResult]:
        """Stream the results of ``keys``. ``deps`` are the refs of setup/set_agent: a failure there fails this."""
        if self._runner is None or self._factory is None:
            raise RuntimeError("EvalActor.run called before setup and set_agent")
        # A plain loop, not ``yield from``: Ray drives actor generators with send(), which a delegated
        # list iterator inside the LocalRunner would not accept.
        for result in self._runner.run(keys, AgentSource(self._factory, checkpoint), video):  # noqa: UP028
            yield result

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


@dataclasses.dataclass(frozen=True)
class RayJob:
    """One ``Runner.run`` call's arguments, for :meth:`RayRunner.run_many`."""

    episodes: Sequence[EpisodeKey]
    agent: AgentSource
    video_episodes: Collection[int] = ()


@dataclasses.dataclass(frozen=True)
class _Item:
    job: int
    key: EpisodeKey


@dataclasses.dataclass
class _ActorSlot:
    """One actor as the driver sees it, with the batch it is running."""

    id: int
    handle: Any
    deps: list[Any]  # refs of setup and the latest set_agent
    factory: Any = None  # the factory object last sent to it
    gen: Any = None  # the streaming generator of the batch in flight
    job: int = 0  # the job (of run_many) that batch belongs to
    batch: list[EpisodeKey] = dataclasses.field(default_factory=list)
    returned: set[int] = dataclasses.field(default_factory=set)


class RayRunner(Runner):
    """See the module docstring. ``num_envs`` (the top-level setting) is the default of ``envs_per_actor``."""

    def __init__(
        self,
        env: EnvSpec,
        benchmark: str,
        protocol: dict[str, Any],
        *,
        seed: int = 0,
        address: str | None = None,
        num_actors: int | None = None,
        envs_per_actor: int | None = None,
        num_envs: int = 1,
        batch_episodes: int | None = None,
        cpus_per_actor: float | None = None,
        gpus_per_actor: float = 0,
        max_retries: int = 2,
        call_timeout_s: float | None = None,
        start_method: str = "spawn",
        scheduler: str = "pipeline",
        agent_threads: int | None = None,
        watchdog: bool = True,
        watchdog_s: dict[str, float] | None = None,
        max_actor_restarts: int = 2,
        local_num_cpus: int | None = None,
        temp_dir: str | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(env, benchmark, protocol, seed=seed)
        envs = num_envs if envs_per_actor is None else envs_per_actor
        _check_int("envs_per_actor", envs, 1)
        batch = envs if batch_episodes is None else batch_episodes
        _check_int("batch_episodes", batch, 1)
        if num_actors is not None:
            _check_int("num_actors", num_actors, 1)
        _check_int("max_actor_restarts", max_actor_restarts, 0)
        if local_num_cpus is not None:
            _check_int("local_num_cpus", local_num_cpus, 1)
        cpus = float(envs if cpus_per_actor is None else cpus_per_actor)
        if not cpus > 0:
            raise ValueError(
                f"runner.cpus_per_actor must be > 0 (or null: envs_per_actor), got {cpus_per_actor!r}"
            )
        if not float(gpus_per_actor) >= 0:
            raise ValueError(f"runner.gpus_per_actor must be >= 0, got {gpus_per_actor!r}")
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ValueError(
                f"runner.address must be 'auto', a cluster address (host:port) or null / "
                f"'local' (start a local cluster), got {address!r}"
            )
        if isinstance(address, str) and address.startswith("ray://"):
            # Ray Client cannot call streaming actor methods, which carry the results back as they finish.
            raise ValueError(
                f"runner.address={address!r}: Ray Client (ray://) addresses are not supported; run the evaluation "
                f"on a node of the cluster with runner.address=auto (or host:6379), e.g. through `ray job submit`"
            )
        if start_method not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"runner.start_method {start_method!r} is not one of {multiprocessing.get_all_start_methods()}"
            )
        self.local_options: dict[str, Any] = {
            "num_envs": envs,
            "max_retries": max_retries,
            "call_timeout_s": call_timeout_s,
            "start_method": start_method,
            "scheduler": scheduler,
            "agent_threads": agent_threads,
            "watchdog": watchdog,
            "watchdog_s": watchdog_s,
        }
        # Checks the options the actors will use, here and now; constructing a LocalRunner starts nothing.
        LocalRunner(env, benchmark, protocol, seed=seed, **self.local_options)
        self.envs_per_actor = envs
        self.batch_episodes = batch
        self.cpus_per_actor = cpus
        self.gpus_per_actor = float(gpus_per_actor)
        self.max_retries = max_retries
        self.max_actor_restarts = max_actor_restarts
        self.address = address
        self._slots: list[_ActorSlot] = []
        self._next_id = 0
        self._owns_ray = _connect(address, local_num_cpus, temp_dir, runtime_env)
        try:
            fitting = self._fitting_actors()
        except BaseException:
            self.close()
            raise
        if num_actors is not None and num_actors > fitting:
            log.warning("runner.num_actors=%d but the cluster fits %d now; the others wait for resources "
                        "(an autoscaling cluster adds nodes)", num_actors, fitting)  # fmt: skip
        self.num_actors = fitting if num_actors is None else num_actors
        #: actors lost (died or killed from outside) so far, replacements made, episodes re-queued after a loss,
        #: and which actor id finished each episode (all runs): for reports and tests
        self.lost_actors = 0
        self.actor_restarts = 0
        self.requeued: list[int] = []
        self.finished_by: dict[int, int] = {}
        self.locations: dict[int, str] = {}

    # ---- cluster and actors -----------------------------------------------------------------------

    def _fitting_actors(self) -> int:
        ray = _import_ray()
        resources = ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        n = int(cpus // self.cpus_per_actor)
        if self.gpus_per_actor > 0:
            n = min(n, int(gpus // self.gpus_per_actor))
        if n < 1:
            raise ValueError(
                f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs but one actor asks for "
                f"{self.cpus_per_actor:g} CPUs and {self.gpus_per_actor:g} GPUs; lower runner.cpus_per_actor / "
                f"runner.gpus_per_actor / runner.envs_per_actor or add nodes"
            )
        return n

    def _spawn(self) -> _ActorSlot:
        actor_cls = _actor_class().options(
            num_cpus=self.cpus_per_actor, num_gpus=self.gpus_per_actor, max_restarts=0, max_task_retries=0
        )
        environ = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
        handle = actor_cls.remote([p for p in sys.path if p], environ)
        setup = handle.setup.remote(self.env, self.benchmark, self.protocol, self.seed, self.local_options)
        slot = _ActorSlot(self._next_id, handle, [setup])
        self._next_id += 1
        return slot

    def _ensure_actors(self, wanted: int) -> None:
        while len(self._slots) < wanted:
            self._slots.append(self._spawn())

    def _kill(self, slot: _ActorSlot) -> None:
        ray = _import_ray()
        try:
            ray.kill(slot.handle, no_restart=True)
        except Exception as exc:  # already gone
            log.debug("killing actor %d: %s", slot.id, exc)

    def in_flight(self) -> dict[int, list[int]]:
        """Actor id -> episode indices it is running and has not returned yet."""
        return {
            s.id: [k.index for k in s.batch if k.index not in s.returned]
            for s in self._slots
            if s.gen is not None
        }

    def actor_handle(self, actor_id: int) -> Any:
        """The Ray handle of a live actor (e.g. to ``ray.kill`` it in a fault drill)."""
        for slot in self._slots:
            if slot.id == actor_id:
                return slot.handle
        raise KeyError(f"no live actor with id {actor_id}; live: {[s.id for s in self._slots]}")

    # ---- the loop ---------------------------------------------------------------------------------

    def run(
        self, episodes: Sequence[EpisodeKey], agent: AgentSource, video_episodes: Collection[int] = ()
    ) -> Iterator[EpisodeResult]:
        for _, result in self.run_many([RayJob(episodes, agent, video_episodes)]):
            yield result

    def run_many(self, jobs: Sequence[RayJob]) -> Iterator[tuple[int, EpisodeResult]]:
        """Run several jobs (e.g. the checkpoints of a sweep) as one stream; yields ``(job index, result)``.

        The queue holds the jobs' episodes in order; an actor done with job i's episodes takes job i+1's while
        the others finish job i, so no actor idles at job boundaries (each switch is one ``load_weights``).
        """
        for i, job in enumerate(jobs):
            indices = [key.index for key in job.episodes]
            if len(set(indices)) != len(indices):
                raise ValueError(f"job {i}: the episodes to run contain the same episode twice")
        queue: deque[_Item] = deque(_Item(i, key) for i, job in enumerate(jobs) for key in job.episodes)
        if not queue:
            return
        ray = _import_ray()
        lost: dict[tuple[int, int], int] = {}  # (job, episode) -> times its actor died under it
        remaining = len(queue)
        self._ensure_actors(min(self.num_actors, math.ceil(remaining / self.batch_episodes)))
        try:
            while remaining:
                self._hand_out(queue, jobs)
                busy = {slot.gen: slot for slot in self._slots if slot.gen is not None}
                if not busy:
                    raise RuntimeError(
                        f"all Ray actors are lost ({self.lost_actors} lost, {self.actor_restarts} replaced) with "
                        f"{remaining} episodes unfinished; raise runner.max_actor_restarts or check the cluster"
                    )
                ready, _ = ray.wait(list(busy), num_returns=1)
                for gen in ready:
                    for job, result in self._collect(busy[gen], queue, lost):
                        remaining -= 1
                        yield job, result
        finally:
            # Abandoned mid-run (exception, Ctrl-C, consumer stopped): those actors are mid-episode; they are
            # replaced (not counted as lost) so the next run starts clean.
            for slot in [s for s in self._slots if s.gen is not None]:
                self._kill(slot)
                self._slots.remove(slot)

    def _hand_out(self, queue: deque[_Item], jobs: Sequence[RayJob]) -> None:
        """Give each idle actor the next batch: up to ``batch_episodes`` queued episodes of one job."""
        for slot in self._slots:
            if slot.gen is not None or not queue:
                continue
            job = queue[0].job
            batch: list[EpisodeKey] = []
            while queue and queue[0].job == job and len(batch) < self.batch_episodes:
                batch.append(queue.popleft().key)
            agent = jobs[job].agent
            if slot.factory is not agent.factory:
                slot.deps = [slot.deps[0], slot.handle.set_agent.remote(agent.factory)]
                slot.factory = agent.factory
            video = set(jobs[job].video_episodes)
            videos = [key.index for key in batch if key.index in video]
            slot.job, slot.batch, slot.returned = job, batch, set()
            slot.gen = slot.handle.run.remote(batch, _node_path(agent.checkpoint), videos, *slot.deps)

    def _collect(
        self, slot: _ActorSlot, queue: deque[_Item], lost: dict[tuple[int, int], int]
    ) -> list[tuple[int, EpisodeResult]]:
        """The next item of ``slot``'s stream: a result, the end of its batch, or the loss of the actor."""
        ray = _import_ray()
        try:
            result: EpisodeResult = ray.get(next(slot.gen))
        except StopIteration:
            missing = [k.index for k in slot.batch if k.index not in slot.returned]
            slot.gen, slot.batch = None, []
            if missing:
                raise RuntimeError(f"actor {slot.id} ended its batch without episodes {missing}") from None
            return []
        except _lost_actor_errors() as exc:
            return self._on_actor_lost(slot, exc, queue, lost)
        if slot.id not in self.locations:
            self.locations[slot.id] = str(ray.get(slot.deps[0]))
        index = result.record.episode
        if index in slot.returned or index not in {k.index for k in slot.batch}:
            raise RuntimeError(f"actor {slot.id} returned episode {index}, which it was not running")
        slot.returned.add(index)
        result.record.attempts += lost.get((slot.job, index), 0)
        self.finished_by[index] = slot.id
        job = slot.job
        if len(slot.returned) == len(slot.batch):
            # Free for the next batch now: calls to one actor run in order, so there is no need to wait for
            # the end of this stream, and an idle actor is never mistaken for one abandoned mid-batch.
            slot.gen, slot.batch = None, []
        return [(job, result)]

    def _on_actor_lost(
        self, slot: _ActorSlot, exc: BaseException, queue: deque[_Item], lost: dict[tuple[int, int], int]
    ) -> list[tuple[int, EpisodeResult]]:
        unfinished = [k for k in slot.batch if k.index not in slot.returned]
        self.lost_actors += 1
        self._kill(slot)
        self._slots.remove(slot)
        where = self.locations.get(slot.id, "not started")
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        log.warning("Ray actor %d (%s) was lost (%s); re-queueing episodes %s", slot.id, where, reason,
                    [k.index for k in unfinished])  # fmt: skip
        errors: list[tuple[int, EpisodeResult]] = []
        for key in reversed(unfinished):  # back at the front, in plan order
            n = lost[slot.job, key.index] = lost.get((slot.job, key.index), 0) + 1
            if n > self.max_retries:
                record = EpisodeRecord.for_key(
                    key, status=STATUS_ERROR, success=False, attempts=n,
                    error=f"its Ray actor died {n} times while running it; last: {reason}",
                )  # fmt: skip
                errors.append((slot.job, EpisodeResult(record)))
            else:
                queue.appendleft(_Item(slot.job, key))
                self.requeued.append(key.index)
        if self.actor_restarts < self.max_actor_restarts:
            self.actor_restarts += 1
            self._slots.append(self._spawn())
        return errors

    def close(self) -> None:
        if not self._slots and not self._owns_ray:
            return
        ray = _import_ray()
        if self._slots:
            # Let every actor close its env workers (in parallel, bounded), then make sure they are gone.
            refs = [slot.handle.close.remote() for slot in self._slots]
            try:
                ray.wait(refs, num_returns=len(refs), timeout=30)
            except Exception as exc:
                log.debug("closing actors: %s", exc)
            for slot in self._slots:
                self._kill(slot)
            self._slots = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


def _node_path(checkpoint: str | None) -> str | None:
    """A checkpoint that is a path here, made absolute: actors do not share the driver's working folder.
    (On a cluster it must also be on a file system every node sees.) Anything else (a hub id) passes as is."""
    if checkpoint is not None and os.path.exists(checkpoint):
        return os.path.abspath(checkpoint)
    return checkpoint


def _lost_actor_errors() -> tuple[type[BaseException], ...]:
    """Ray errors that mean the actor (or its node, or its results) is gone, as opposed to an error raised by
    the episode code itself, which propagates."""
    from ray import exceptions as rex

    return (
        rex.RayActorError,
        rex.WorkerCrashedError,
        rex.NodeDiedError,
        rex.ObjectLostError,
        rex.LocalRayletDiedError,
    )


def _connect(address: str | None, local_num_cpus: int | None, temp_dir: str | None, runtime_env: Any) -> bool:
    """Connect this process to Ray; returns whether this runner started it (and so shuts it down)."""
    ray = _import_ray()
    if ray.is_initialized():
        # A driver script, notebook or test that already called ray.init keeps its own set-up.
        log.info("using the Ray connection this process already has (runner.address=%r not applied)", address)
        return False
    kwargs: dict[str, Any] = {"runtime_env": runtime_env}
    if address in (None, "local"):
        # "local" always starts a new cluster; ray.init() without an address would join whatever cluster was
        # started last on this machine (RAY_ADDRESS or /tmp/ray), which is not what null promises.
        kwargs.update(address="local", num_cpus=local_num_cpus, include_dashboard=False)
        if temp_dir is not None:
            kwargs["_temp_dir"] = os.path.abspath(temp_dir)
    else:
        if local_num_cpus is not None or temp_dir is not None:
            raise ValueError(
                "runner.local_num_cpus and runner.temp_dir only apply to a local cluster (runner.address=null); "
                f"the cluster at {address!r} has its own resources and temp folder"
            )
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise ConnectionError(
            f"could not connect to a Ray cluster at runner.address={address!r}: {exc}. Start one with "
            f"`ray start --head` (then runner.address=auto) or use runner.address=null for a local cluster"
        ) from exc
    return True


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"runner.{name} must be an int >= {minimum}, got {value!r}")
