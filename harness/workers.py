"""Env worker processes: one env per process, built inside the process, driven over a pipe.

Why not ``gymnasium.vector.AsyncVectorEnv`` (1.4) directly: it builds one env in the parent process to read
the spaces (for a MuJoCo benchmark: seconds, gigabytes and a GL context in the harness), sends one ``options`` dict to
every env, steps all envs together (a finished env with autoreset disabled cannot sit out a step), and a
crash in one worker takes the whole vector env down. The harness needs per-env resets to chosen episodes,
envs that idle between episodes, and one worker restarted on its own. So each worker here is a small loop
with the same commands as gymnasium's async worker (reset/step/call/close) and no shared memory (Text
observations would come back blank), and the parent waits on many pipes at once.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Sequence
from typing import Any

import gymnasium as gym


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """How a worker builds its env: ``gym.make(env_id, **kwargs)``.

    ``entry_point`` re-registers ids that the worker process does not know (envs registered at run time in
    the parent); ``protocol_digest`` is checked against the built env so a worker never runs another protocol.
    """

    env_id: str
    kwargs: dict[str, Any]
    entry_point: str | None = None
    protocol_digest: str | None = None


def make_env(spec: EnvSpec) -> gym.Env:
    import vla_gym  # noqa: F401 - registers the VLA/* envs

    if spec.env_id not in gym.registry:
        if spec.entry_point is None:
            raise KeyError(f"env id {spec.env_id!r} is not registered in the worker and has no entry_point")
        gym.register(id=spec.env_id, entry_point=spec.entry_point)
    env = gym.make(spec.env_id, **spec.kwargs)
    digest = getattr(env.unwrapped, "protocol_digest", None)
    if spec.protocol_digest is not None and digest != spec.protocol_digest:
        env.close()
        raise ValueError(
            f"{spec.env_id} was built with protocol digest {digest}, the harness planned {spec.protocol_digest}"
        )
    return env


def _parent_gone(conn: multiprocessing.connection.Connection, parent_pid: int) -> bool:
    """Wait for the next command; True when the parent died instead. EOF alone is not enough: with the fork
    start method, sibling workers inherit this pipe's parent end and keep it open after a kill -9."""
    while not conn.poll(1.0):
        if os.getppid() != parent_pid:
            return True
    return False


def _worker_main(conn: multiprocessing.connection.Connection, spec: EnvSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    parent_pid = os.getppid()
    try:
        env = make_env(spec)
    except BaseException:
        conn.send(("fatal", traceback.format_exc()))
        return
    privileged = False  # set per episode by the reset command
    try:
        while True:
            try:
                if _parent_gone(conn, parent_pid):
                    return
                command, data = conn.recv()
            except EOFError:  # the parent is gone
                return
            try:
                if command == "reset":
                    data = dict(data)
                    privileged = bool(data.pop("privileged", False))
                    result: Any = _with_privileged(env, env.reset(**data), privileged)
                elif command == "step":
                    result = _with_privileged(env, env.step(data), privileged)
                elif command == "call":
                    name, args, kwargs = data
                    attr = env.get_wrapper_attr(name)
                    result = attr(*args, **kwargs) if callable(attr) else attr
                elif command == "close":
                    conn.send(("ok", None))
                    return
                else:
                    raise RuntimeError(f"unknown worker command {command!r}")
            except Exception:
                # The env's state is unknown after an exception: report it and exit; the parent restarts us.
                conn.send(("error", traceback.format_exc()))
                return
            conn.send(("ok", result))
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        env.close()


def _with_privileged(env: gym.Env, result: tuple, privileged: bool) -> tuple:
    """Add ``obs["privileged"]`` (the env's ground truth) for agents that declare ``needs_privileged``:
    scripted experts only; real policies never get it."""
    if not privileged:
        return result
    obs = dict(result[0])
    obs["privileged"] = env.unwrapped.privileged_state()
    return (obs, *result[1:])


class WorkerError(RuntimeError):
    """A worker died, timed out, or its env raised; the worker is gone and must be replaced."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        #: the env could not even be built: restarting will not help
        self.fatal = fatal


class EnvWorker:
    """One env in its own process. Use ``send`` then ``recv`` (at most one call in flight)."""

    def __init__(self, spec: EnvSpec, index: int, context: str = "spawn") -> None:
        ctx = multiprocessing.get_context(context)
        self.index = index
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, spec), name=f"vla-gym-env-{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.pending: str | None = None
        self.sent_at = 0.0
        #: replies received so far (0 = the worker never got its env running)
        self.replies = 0

    def send(self, command: str, data: Any = None) -> None:
        if self.pending is not None:
            raise RuntimeError(f"worker {self.index} already has a {self.pending!r} call in flight")
        try:
            self.conn.send((command, data))
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            self.pending = command  # recv() reports the death
            self._send_error: Exception | None = exc
            return
        self._send_error = None
        self.pending = command
        self.sent_at = time.monotonic()

    def recv(self) -> Any:
        """The reply to the call in flight; raises :class:`WorkerError` if the worker cannot answer."""
        command, self.pending = self.pending, None
        try:
            kind, payload = self.conn.recv()
        except (EOFError, ConnectionResetError, OSError) as exc:
            raise WorkerError(f"env worker {self.index} died during {command} ({self._exit_status()})") from exc
        if kind == "ok":
            self.replies += 1
            return payload
        if kind == "fatal":
            raise WorkerError(f"env worker {self.index} could not build its env:\n{payload}", fatal=True)
        raise WorkerError(f"env worker {self.index}: the env raised during {command}:\n{payload}")

    def _exit_status(self) -> str:
        self.process.join(timeout=1.0)
        code = self.process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the env to close; kill the process if it does not answer in time."""
        if self.process.is_alive() and self.pending is None:
            try:
                self.conn.send(("close", None))
                if self.conn.poll(timeout):
                    self.conn.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                pass
            self.process.join(timeout=timeout)
        self.kill()


def wait_any(workers: Sequence[EnvWorker], timeout: float | None) -> list[EnvWorker]:
    """The workers among ``workers`` whose reply (or death) is ready, waiting up to ``timeout`` seconds."""
    by_conn = {w.conn: w for w in workers}
    ready = multiprocessing.connection.wait(list(by_conn), timeout=timeout)
    return [by_conn[c] for c in ready]  # type: ignore[index]
