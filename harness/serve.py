"""Serve any agent over openpi's websocket + msgpack protocol, so a GPU box can act while envs run elsewhere.

    python -m harness.serve policy=random port=8000            # 127.0.0.1 by default
    python -m harness.serve policy=pi0 policy.weights=/ckpt host=0.0.0.0 api_key=SECRET

The protocol (compatible with ``openpi_client.WebsocketClientPolicy``):

- on connect the server sends a msgpack metadata map (``server: "vla-gym"``, chunk sizes, key map, ...);
- the client sends one observation map per binary frame, with openpi-style keys (``observation/image``,
  ``observation/wrist_image``, ``observation/state``, ``prompt``) or our contract keys (``image``, ``language``...);
  the reply is ``{"actions": float32 (chunk, 7), "server_timing": {...}}`` in the env contract (gripper +1 open);
- ``{"__batch__": True, ...}`` with a leading batch axis on every array and a list of prompts asks for B
  observations at once (optional ``env_ids``); the reply's ``actions`` is (B, chunk, 7);
- ``{"__control__": "configure" | "reset" | "stats" | "close", ...}`` lets our own client configure and reset
  the agent (``configure`` may name the client's run, ``client_run``; ``close`` ends that run's state);
- a bad request (garbage bytes, unknown or missing keys, wrong shapes or dtypes, a field over the contract's
  limits, oversized, an agent exception) gets a *text* frame describing the error (openpi clients raise on text
  frames) and the connection keeps serving. Messages over twice the size limit are refused by the transport,
  which closes that connection (code 1009).

Many clients: the agent's per-env state is kept per client. Env ids are the client's own: each connection (or,
when the client names its run in ``configure``, each run, across reconnects) has its own id space, mapped to
ids the agent sees that no other client shares; an id new to the agent is reset before its first use. So two
evaluations (or Ray actors) that both number their envs 0..k-1 never meet in the agent's state.

Batching: agent calls run in one thread. Requests from all connections queue for it; each call takes the
queued requests that stack (same keys), up to ``max_batch`` observations, waiting at most ``max_wait_ms`` for
more while other connections are open (0: only what is already queued, no added latency). A request whose
observations make the agent fail in a merged call is retried alone, so only its sender gets the error frame.
Counters (requests, batch sizes, queue waits) go to the log on each disconnect, periodically and at shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import http
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import ServerConnection, serve

from policies import wire
from policies.base import Agent
from vla_gym.contract import LANGUAGE_CHARSET, MAX_LANGUAGE_LENGTH

log = logging.getLogger("harness.serve")

PROTOCOL_VERSION = 2
# openpi's observation keys (as its example clients send them) -> our contract keys; contract keys are always accepted as themselves
DEFAULT_KEYS: dict[str, str] = {
    "observation/image": "image",
    "observation/wrist_image": "wrist_image",
    "observation/state": "proprio",
    "prompt": "language",
}
CONTRACT_KEYS = ("image", "wrist_image", "language", "proprio")
_IMAGE_KEYS = ("image", "wrist_image")
_RESERVED = ("__batch__", "env_ids", "env_id")
# limits of fields the contract leaves open: what no env of ours comes near
MAX_PROPRIO_DIM = 64
MAX_ENV_ID = 2**31 - 1
MAX_NAME_LENGTH = 128  # benchmark names and client run names
MAX_PROTOCOL_BYTES = 64 * 1024


class BadRequest(ValueError):
    """A request the server refuses; the text goes back to the client as an error frame."""


@dataclasses.dataclass
class _Work:
    """One unit for the agent thread: an act request (``obs``/``ids``) or a control call (``call``)."""

    obs: dict[str, Any] | None = None
    ids: list[int] = dataclasses.field(default_factory=list)  # the agent's env ids
    fresh: list[int] = dataclasses.field(default_factory=list)  # ids to reset before the act
    call: Callable[[], Any] | None = None
    enqueued_at: float = 0.0
    result: Any = None
    error: BaseException | None = None
    infer_ms: float = 0.0
    batch: int = 0  # observations in the agent call that served it
    done: Callable[[], None] | None = None

    def finish(self) -> None:
        if self.done is not None:
            self.done()

    def stacks_with(self, other: _Work) -> bool:
        assert self.obs is not None and other.obs is not None
        if set(self.obs) != set(other.obs) or set(self.ids) & set(other.ids):
            return False
        return "proprio" not in self.obs or self.obs["proprio"].shape[1:] == other.obs["proprio"].shape[1:]


class _Client:
    """Per-connection state: its namespace of env ids (the connection's own, or its named run's)."""

    def __init__(self) -> None:
        self.namespace: str = f"connection-{uuid.uuid4().hex}"
        self.named = False


class PolicyServer:
    """A websocket server around one agent, shared by any number of clients (see the module docstring)."""

    def __init__(
        self,
        agent: Agent,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        api_key: str | None = None,
        max_message_bytes: int = 64 * 2**20,
        keys: Mapping[str, str] | None = None,
        image_size: int = 224,
        max_batch: int = 256,
        max_wait_ms: float = 0.0,
        benchmark: str | None = None,
        protocol: Mapping[str, Any] | None = None,
        log_every_s: float = 60.0,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_ms >= 0, got {max_batch}, {max_wait_ms}")
        self.agent = agent
        self.host, self.port = host, int(port)
        self.api_key = api_key or None
        self.max_message_bytes = int(max_message_bytes)
        self.keys = dict(DEFAULT_KEYS if keys is None else keys)
        bad = sorted(v for v in self.keys.values() if v not in CONTRACT_KEYS)
        if bad:
            raise ValueError(f"server key map targets unknown contract key(s) {bad}; use {list(CONTRACT_KEYS)}")
        self.image_size = int(image_size)
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_ms) / 1e3
        self.benchmark = benchmark
        self._protocol: dict[str, Any] = dict(protocol or {})
        self.log_every_s = float(log_every_s)
        self.counters: collections.Counter[str] = collections.Counter()
        #: agent calls by batch size (observations per call)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._wait_total_s = 0.0
        self._wait_max_s = 0.0
        # env ids: (namespace, client id) -> agent id; the agent ids in use; namespaces' open connections
        self._ids: dict[tuple[str, int], int] = {}
        self._used: set[int] = set()
        self._open: collections.Counter[str] = collections.Counter()
        self._configured: dict[str, tuple[str, str]] = {}  # namespace -> its benchmark and protocol (JSON)
        # the agent thread's queue
        self._queue: collections.deque[_Work] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._agent_thread: threading.Thread | None = None
        self._connections: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: what the agent is configured for now (benchmark, protocol as JSON)
        self._agent_config: tuple[str, str] | None = None
        if benchmark is not None:
            agent.configure(benchmark, dict(protocol or {}))
            self._agent_config = (benchmark, json.dumps(dict(protocol or {}), sort_keys=True, default=str))

    # ---- metadata and request checks (run in worker threads) ----

    def metadata(self) -> dict[str, Any]:
        return {
            "server": "vla-gym",
            "protocol_version": PROTOCOL_VERSION,
            "agent": type(self.agent).__name__,
            "benchmark": self.benchmark,
            "chunk_size": int(self.agent.chunk_size),
            "execute_steps": int(self.agent.execute_steps),
            "action_dim": 7,
            "action_convention": "contract",  # gripper +1 open / -1 close
            "batched": True,
            "control": True,
            "client_runs": True,
            "keys": dict(self.keys),
            "image_size": self.image_size,
            "max_batch": self.max_batch,
            "max_message_bytes": self.max_message_bytes,
            "max_language_length": MAX_LANGUAGE_LENGTH,
        }

    def stats(self) -> dict[str, Any]:
        calls = sum(self.batch_sizes.values())
        return {
            **dict(self.counters),
            "agent_calls": calls,
            "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
            "mean_batch": round(sum(k * v for k, v in self.batch_sizes.items()) / calls, 2) if calls else 0.0,
            "mean_wait_ms": round(1e3 * self._wait_total_s / max(1, self.counters["requests"]), 2),
            "max_wait_ms": round(1e3 * self._wait_max_s, 2),
        }

    def _parse(self, message: bytes) -> dict[str, Any]:
        request = wire.unpackb(message)
        if not isinstance(request, dict):
            raise BadRequest(f"a request must be a map of observations, got {type(request).__name__}")
        return request

    def _observation(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[int], bool]:
        """The contract observation (batch first), the client's env ids and whether the request was batched;
        every field checked against the contract's limits."""
        batched = request.get("__batch__", False)
        if not isinstance(batched, bool):
            raise BadRequest(f"'__batch__' must be true or false, got {batched!r}")
        obs: dict[str, Any] = {}
        unknown = []
        for key, value in request.items():
            if key in _RESERVED:
                continue
            target = self.keys.get(key, key if key in CONTRACT_KEYS else None)
            if target is None:
                unknown.append(key)
            elif target in obs:
                raise BadRequest(f"observation key {target!r} given twice (as {key!r} and another alias)")
            else:
                obs[target] = value
        if unknown:
            raise BadRequest(
                f"unknown observation key(s) {sorted(str(k) for k in unknown)[:10]}; this server accepts "
                f"{sorted(self.keys)} or {list(CONTRACT_KEYS)} (start it with wire_keys=... to map others)"
            )
        for required in ("image", "language"):
            if required not in obs:
                aliases = [k for k, v in self.keys.items() if v == required] + [required]
                raise BadRequest(f"observation lacks {required!r} (send it as one of {aliases})")
        language = obs["language"]
        if batched:
            if not isinstance(language, list) or not all(isinstance(s, str) for s in language):
                raise BadRequest("a batched request needs the prompt as a list of strings")
            batch = len(language)
            if not 1 <= batch <= self.max_batch:
                raise BadRequest(f"batch size must be in 1..{self.max_batch}, got {batch}")
        else:
            if not isinstance(language, str):
                raise BadRequest(f"the prompt must be a string, got {type(language).__name__}")
            batch = 1
            language = [language]
        for text in language:
            _check_language(text)
        obs["language"] = list(language)
        size = self.image_size
        for key in _IMAGE_KEYS:
            if key not in obs:
                continue
            image = obs[key]
            expected = (batch, size, size, 3) if batched else (size, size, 3)
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != expected:
                got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
                raise BadRequest(f"{key!r} must be a uint8 array of shape {expected}, got {got}")
            obs[key] = image if batched else image[None]
        if "proprio" in obs:
            proprio = obs["proprio"]
            ndim = 2 if batched else 1
            if not isinstance(proprio, np.ndarray) or proprio.dtype.kind not in "iuf" or proprio.ndim != ndim:
                raise BadRequest(f"'proprio' must be a numeric array with {ndim} dims (batch first when batched)")
            if batched and proprio.shape[0] != batch:
                raise BadRequest(f"'proprio' has {proprio.shape[0]} rows for {batch} prompts")
            if not 1 <= proprio.shape[-1] <= MAX_PROPRIO_DIM:
                raise BadRequest(f"'proprio' must have 1..{MAX_PROPRIO_DIM} values per observation, got {proprio.shape[-1]}")
            proprio = proprio.astype(np.float32)
            if not np.all(np.isfinite(proprio)):
                raise BadRequest("'proprio' holds NaN or inf")
            obs["proprio"] = proprio if batched else proprio[None]
        if batched:
            env_ids = request.get("env_ids", list(range(batch)))
        else:
            if "env_ids" in request:
                raise BadRequest("'env_ids' belongs to batched requests; send 'env_id' with a single observation")
            env_ids = [request.get("env_id", 0)]
        return obs, _check_env_ids(env_ids, batch), batched

    def _check_actions(self, actions: Any, batch: int) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[2] != 7 or arr.dtype.kind != "f":
            raise BadRequest(
                f"the agent returned {arr.dtype} {arr.shape}; agents must return float (B={batch}, chunk, 7)"
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

    # ---- env ids per client (event loop thread only) ----

    def _agent_ids(self, client: _Client, env_ids: list[int]) -> tuple[list[int], list[int]]:
        """The agent's ids for a client's env ids, and those among them new to the agent (to reset first).
        A new id is the client's own number when no other client holds it (one client sees its own ids)."""
        ids, fresh = [], []
        for env_id in env_ids:
            key = (client.namespace, env_id)
            if key not in self._ids:
                agent_id = env_id if env_id not in self._used else _smallest_free(self._used)
                self._ids[key] = agent_id
                self._used.add(agent_id)
                fresh.append(agent_id)
            ids.append(self._ids[key])
        return ids, fresh

    def _release(self, namespace: str) -> None:
        for key in [k for k in self._ids if k[0] == namespace]:
            self._used.discard(self._ids.pop(key))
        self._configured.pop(namespace, None)

    # ---- the agent thread ----

    async def _submit(self, work: _Work) -> _Work:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done() -> None:
            def settle() -> None:
                if not future.done():
                    future.set_result(work)

            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        work.done, work.enqueued_at = done, time.perf_counter()
        with self._cond:
            self._queue.append(work)
            self._cond.notify()
        return await future

    def _agent_main(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                first = self._queue.popleft()
                if first.call is None:
                    group = self._gather(first)
            if first.call is not None:
                try:
                    first.result = first.call()
                except BaseException as exc:
                    first.error = exc
                first.finish()
                continue
            self._act(group)

    def _gather(self, first: _Work) -> list[_Work]:
        """Queued act requests that stack with ``first`` (called holding the lock): up to max_batch
        observations, waiting up to max_wait for more while other connections are open."""
        group, items = [first], len(first.ids)
        deadline = first.enqueued_at + self.max_wait_s
        while True:
            while self._queue and self._queue[0].call is None:
                nxt = self._queue[0]
                if items + len(nxt.ids) > self.max_batch or not all(w.stacks_with(nxt) for w in group):
                    return group
                group.append(self._queue.popleft())
                items += len(nxt.ids)
            if self._queue or items >= self.max_batch or len(self._connections) <= len(group):
                return group
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return group
            self._cond.wait(remaining)

    def _act(self, group: list[_Work]) -> None:
        start = time.perf_counter()
        for work in group:
            wait = start - work.enqueued_at
            self._wait_total_s += wait
            self._wait_max_s = max(self._wait_max_s, wait)
        try:
            self._call_agent(group)
        except Exception as exc:
            if len(group) == 1:
                self.counters["agent_errors"] += 1
                group[0].error = exc if isinstance(exc, BadRequest) else BadRequest(
                    f"the agent failed: {type(exc).__name__}: {exc}"
                )
            else:
                self.counters["merged_retries"] += 1
                for work in group:  # only the request that makes the agent fail gets the error
                    self._act([work])
                return
        for work in group:
            work.finish()

    def _call_agent(self, group: list[_Work]) -> None:
        obs: dict[str, Any] = {}
        first = group[0].obs
        assert first is not None
        for key in first:
            parts = [w.obs[key] for w in group]  # type: ignore[index]
            obs[key] = [s for part in parts for s in part] if key == "language" else (
                parts[0] if len(parts) == 1 else np.concatenate(parts)
            )
        ids = [i for w in group for i in w.ids]
        fresh = [i for w in group for i in w.fresh]
        start = time.perf_counter()
        if fresh:
            self.agent.reset(fresh)
        actions = self._check_actions(self.agent.act(obs, ids), len(ids))
        infer_ms = (time.perf_counter() - start) * 1000.0
        self.batch_sizes[len(ids)] += 1
        self.counters["requests"] += len(group)
        self.counters["observations"] += len(ids)
        if len(group) > 1:
            self.counters["merged_calls"] += 1
        row = 0
        for work in group:
            work.fresh = []  # reset done: a retry must not reset again
            work.result = actions[row : row + len(work.ids)]
            work.infer_ms, work.batch = infer_ms, len(ids)
            row += len(work.ids)

    # ---- requests (event loop) ----

    async def _answer(self, client: _Client, message: bytes) -> bytes:
        request = await asyncio.to_thread(self._parse, message)
        if "__control__" in request:
            return wire.packb(await self._control(client, request))
        obs, env_ids, batched = await asyncio.to_thread(self._observation, request)
        ids, fresh = self._agent_ids(client, env_ids)
        work = await self._submit(_Work(obs=obs, ids=ids, fresh=fresh))
        if work.error is not None:
            raise work.error
        self.counters["batched_requests"] += int(batched)
        actions = work.result
        timing = {"infer_ms": work.infer_ms, "batch": work.batch}
        return wire.packb({"actions": actions if batched else actions[0], "server_timing": timing})

    async def _call(self, function: Callable[[], Any]) -> Any:
        work = await self._submit(_Work(call=function))
        if work.error is not None:
            raise work.error
        return work.result

    async def _control(self, client: _Client, request: dict[str, Any]) -> dict[str, Any]:
        command = request["__control__"]
        self.counters["control_requests"] += 1
        if command == "configure":
            benchmark, protocol, run = request.get("benchmark"), request.get("protocol") or {}, request.get("client_run")
            if not isinstance(benchmark, str) or not 0 < len(benchmark) <= MAX_NAME_LENGTH:
                raise BadRequest(f"configure needs 'benchmark', a name of 1..{MAX_NAME_LENGTH} characters")
            if not isinstance(protocol, dict) or len(wire.packb(protocol)) > MAX_PROTOCOL_BYTES:
                raise BadRequest(f"configure's 'protocol' must be a map of at most {MAX_PROTOCOL_BYTES} bytes")
            if run is not None:
                if not isinstance(run, str) or not 0 < len(run) <= MAX_NAME_LENGTH:
                    raise BadRequest(f"'client_run' must be a name of 1..{MAX_NAME_LENGTH} characters")
                self._join_run(client, run)
            others = {v for k, v in self._configured.items() if k != client.namespace and self._open[k] > 0}
            wanted = (benchmark, json.dumps(protocol, sort_keys=True, default=str))
            if others and wanted not in others:
                names = sorted({b for b, _ in others})
                raise BadRequest(
                    f"this server's agent is configured for {names} by another client; one server serves one "
                    f"benchmark and protocol at a time (start another server for {benchmark!r})"
                )
            if wanted != self._agent_config:  # the same again (a reconnect, another client) keeps the agent's state
                await self._call(lambda: self.agent.configure(benchmark, protocol))
                self._agent_config = wanted
            self._configured[client.namespace] = wanted
            self.benchmark, self._protocol = benchmark, protocol
            return {"ok": True, **self.metadata()}
        if command == "reset":
            env_ids = request.get("env_ids")
            if not isinstance(env_ids, list) or not 0 < len(env_ids) <= self.max_batch:
                raise BadRequest(f"reset needs 'env_ids', a list of 1..{self.max_batch} ints, got {str(env_ids)[:100]}")
            ids, _ = self._agent_ids(client, _check_env_ids(env_ids, len(env_ids)))
            await self._call(lambda: self.agent.reset(ids))
            return {"ok": True}
        if command == "stats":
            return {"ok": True, "counters": self.stats()}
        if command == "close":
            self._release(client.namespace)
            return {"ok": True}
        raise BadRequest(f"unknown control command {str(command)[:50]!r}; known: configure, reset, stats, close")

    def _join_run(self, client: _Client, run: str) -> None:
        namespace = f"run-{run}"
        if client.namespace == namespace:
            return
        self._open[client.namespace] -= 1
        if self._open[client.namespace] <= 0:
            del self._open[client.namespace]
        if not client.named:
            self._release(client.namespace)  # ids this connection used before naming its run
        client.namespace, client.named = namespace, True
        self._open[namespace] += 1


    # ---- transport ----

    def _process_request(self, connection: ServerConnection, request: Any) -> Any:
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.api_key is not None:
            if request.headers.get("Authorization") != f"Api-Key {self.api_key}":
                self.counters["auth_rejected"] += 1
                log.warning("refused a connection from %s: wrong or missing API key", connection.remote_address)
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "wrong or missing API key\n")
        return None

    async def _send_error(self, websocket: ServerConnection, kind: str, text: str) -> None:
        self.counters["errors"] += 1
        self.counters[f"errors_{kind}"] += 1
        log.info("error frame to %s (%s): %s", websocket.remote_address, kind, text.splitlines()[0][:300])
        await websocket.send(f"vla-gym server error ({kind}): {text}")

    async def _handler(self, websocket: ServerConnection) -> None:
        self.counters["connections"] += 1
        self._connections.add(websocket)
        client = _Client()
        self._open[client.namespace] += 1
        log.info("connection from %s opened", websocket.remote_address)
        try:
            await websocket.send(wire.packb(self.metadata()))
            async for message in websocket:
                if isinstance(message, str):
                    await self._send_error(websocket, "text_frame", "send msgpack in binary frames, not text")
                    continue
                if len(message) > self.max_message_bytes:
                    await self._send_error(
                        websocket, "oversized",
                        f"message of {len(message)} bytes exceeds the limit of {self.max_message_bytes} bytes",
                    )
                    continue
                try:
                    reply = await self._answer(client, message)
                except wire.WireError as exc:
                    await self._send_error(websocket, "decode", str(exc))
                    continue
                except BadRequest as exc:
                    await self._send_error(websocket, "bad_request", str(exc))
                    continue
                except Exception as exc:  # a bug in the agent's configure/reset: report it, keep serving
                    await self._send_error(websocket, "internal", "".join(traceback.format_exception(exc)))
                    continue
                await websocket.send(reply)
        except websockets.ConnectionClosedError as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                self.counters["errors"] += 1
                self.counters["errors_transport_oversized"] += 1
            else:
                self.counters["dropped_connections"] += 1
        finally:
            self._connections.discard(websocket)
            self._open[client.namespace] -= 1
            if not client.named:  # a named run keeps its envs' state for its next connection
                self._release(client.namespace)
            if self._open[client.namespace] <= 0:
                del self._open[client.namespace]
            log.info("connection from %s closed; counters %s", websocket.remote_address, self.stats())

    async def _log_periodically(self) -> None:
        while self.log_every_s > 0:
            await asyncio.sleep(self.log_every_s)
            log.info("counters %s", self.stats())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
        self._closing = False
        self._agent_thread = threading.Thread(target=self._agent_main, name="vla-gym-serve-agent", daemon=True)
        self._agent_thread.start()
        try:
            await self._serve()
        finally:
            with self._cond:
                self._closing = True
                self._cond.notify_all()

    async def _serve(self) -> None:
        assert self._stop is not None
        async with serve(
            self._handler,
            self.host,
            self.port,
            compression=None,
            # twice the app limit: between the two the client gets a readable error frame
            max_size=2 * self.max_message_bytes,
            process_request=self._process_request,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]
            log.info(
                "serving %s on ws://%s:%d (api key %s, max message %d bytes)",
                type(self.agent).__name__, self.host, self.port,
                "required" if self.api_key else "off", self.max_message_bytes,
            )
            if self.api_key is None and self.host not in ("127.0.0.1", "localhost", "::1"):
                log.warning("listening on %s without an API key: anyone who can reach it can query the agent", self.host)
            self._ready.set()
            ticker = asyncio.create_task(self._log_periodically())
            try:
                await self._stop
            finally:
                ticker.cancel()
        log.info("stopped; counters %s", self.stats())

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C)."""
        try:
            asyncio.run(self._run())
        except KeyboardInterrupt:
            log.info("interrupted; counters %s", self.stats())

    def start(self, timeout: float = 30.0) -> PolicyServer:
        """Serve from a background thread (tests, benchmarks); returns once the port is bound."""

        def target() -> None:
            try:
                asyncio.run(self._run())
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=target, name="vla-gym-serve", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the server failed to start: {self._error}") from self._error
        return self

    def drop_connections(self) -> None:
        """Close every open connection abruptly (the server keeps listening); for reliability tests."""
        assert self._loop is not None
        for connection in list(self._connections):
            self._loop.call_soon_threadsafe(connection.transport.abort)

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._stop.done():
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _check_language(text: str) -> None:
    if len(text) > MAX_LANGUAGE_LENGTH:
        raise BadRequest(f"an instruction has {len(text)} characters; the contract allows at most {MAX_LANGUAGE_LENGTH}")
    bad = set(text) - LANGUAGE_CHARSET
    if bad:
        shown = "".join(sorted(bad))[:10]
        raise BadRequest(f"an instruction holds characters outside the contract's (printable ASCII): {shown!r}")


def _check_env_ids(env_ids: Any, batch: int) -> list[int]:
    if (
        not isinstance(env_ids, list)
        or len(env_ids) != batch
        or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_ENV_ID for i in env_ids)
    ):
        raise BadRequest(f"env ids must be a list of {batch} ints in 0..{MAX_ENV_ID}, got {str(env_ids)[:100]}")
    if len(set(env_ids)) != len(env_ids):
        raise BadRequest(f"env ids must be distinct, got {str(env_ids)[:100]}")
    return env_ids


def _smallest_free(used: set[int]) -> int:
    candidate = 0
    while candidate in used:
        candidate += 1
    return candidate


def main() -> None:
    import hydra
    from hydra.utils import instantiate
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
    def app(cfg: DictConfig) -> None:
        agent = instantiate(cfg.policy)
        protocol = OmegaConf.to_container(cfg.protocol, resolve=True) if cfg.protocol is not None else None
        keys = OmegaConf.to_container(cfg.wire_keys, resolve=True) if cfg.wire_keys is not None else None
        server = PolicyServer(
            agent,
            host=cfg.host,
            port=cfg.port,
            api_key=cfg.api_key,
            max_message_bytes=int(cfg.max_message_mb * 2**20),
            keys=keys,
            image_size=cfg.image_size,
            max_batch=cfg.max_batch,
            max_wait_ms=cfg.get("max_wait_ms", 0.0),
            benchmark=cfg.benchmark,
            protocol=protocol,
            log_every_s=cfg.log_every_s,
        )
        try:
            server.serve_forever()
        finally:
            agent.close()

    app()


if __name__ == "__main__":
    main()
