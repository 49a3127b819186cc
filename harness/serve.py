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
- ``{"__control__": "configure" | "reset" | "stats", ...}`` lets our own client configure and reset the agent;
- a bad request (garbage bytes, unknown or missing keys, wrong shapes, oversized, an agent exception) gets a
  *text* frame describing the error (openpi clients raise on text frames) and the connection keeps serving.
  Messages over twice the size limit are refused by the transport, which closes that connection (code 1009).

Every kind of outcome is counted; counters go to the log on each disconnect, periodically and at shutdown.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import websockets
from websockets.asyncio.server import ServerConnection, serve

from policies import wire
from policies.base import Agent

log = logging.getLogger("harness.serve")

PROTOCOL_VERSION = 1
# openpi's LIBERO keys -> our contract keys; contract keys are always accepted as themselves
DEFAULT_KEYS: dict[str, str] = {
    "observation/image": "image",
    "observation/wrist_image": "wrist_image",
    "observation/state": "proprio",
    "prompt": "language",
}
CONTRACT_KEYS = ("image", "wrist_image", "language", "proprio")
_IMAGE_KEYS = ("image", "wrist_image")
_RESERVED = ("__batch__", "env_ids", "env_id")


class BadRequest(ValueError):
    """A request the server refuses; the text goes back to the client as an error frame."""


class PolicyServer:
    """A websocket server around one agent. Agent calls run one at a time in a worker thread.

    Several clients may connect at once; they share the agent, so give them disjoint ``env_ids``.
    """

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
        benchmark: str | None = None,
        protocol: Mapping[str, Any] | None = None,
        log_every_s: float = 60.0,
    ) -> None:
        if max_message_bytes <= 0:
            raise ValueError(f"max_message_bytes must be positive, got {max_message_bytes}")
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
        self.benchmark = benchmark
        self.log_every_s = float(log_every_s)
        self.counters: collections.Counter[str] = collections.Counter()
        self._agent_lock = threading.Lock()
        self._connections: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        if benchmark is not None:
            agent.configure(benchmark, dict(protocol or {}))

    # ---- metadata and request handling (plain functions, run in a worker thread) ----

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
            "keys": dict(self.keys),
            "image_size": self.image_size,
            "max_message_bytes": self.max_message_bytes,
        }

    def handle(self, message: bytes) -> bytes:
        """Answer one binary request; raises :class:`BadRequest` (or ``WireError``) for the error frame."""
        request = wire.unpackb(message)
        if not isinstance(request, dict):
            raise BadRequest(f"a request must be a map of observations, got {type(request).__name__}")
        if "__control__" in request:
            return wire.packb(self._control(request))
        batched = bool(request.get("__batch__", False))
        obs, env_ids = self._observation(request, batched)
        start = time.perf_counter()
        with self._agent_lock:
            try:
                actions = self.agent.act(obs, env_ids)
            except Exception as exc:
                self.counters["agent_errors"] += 1
                raise BadRequest(f"the agent failed: {type(exc).__name__}: {exc}") from exc
        infer_ms = (time.perf_counter() - start) * 1000.0
        actions = self._check_actions(actions, len(env_ids))
        self.counters["requests"] += 1
        self.counters["observations"] += len(env_ids)
        self.counters["batched_requests"] += int(batched)
        return wire.packb({"actions": actions if batched else actions[0], "server_timing": {"infer_ms": infer_ms}})

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["__control__"]
        self.counters["control_requests"] += 1
        with self._agent_lock:
            if command == "configure":
                benchmark, protocol = request.get("benchmark"), request.get("protocol") or {}
                if not isinstance(benchmark, str) or not isinstance(protocol, dict):
                    raise BadRequest("configure needs 'benchmark' (str) and 'protocol' (map)")
                self.agent.configure(benchmark, protocol)
                self.benchmark = benchmark
                return {"ok": True, **self.metadata()}
            if command == "reset":
                env_ids = request.get("env_ids")
                if not isinstance(env_ids, list) or not all(isinstance(i, int) for i in env_ids):
                    raise BadRequest(f"reset needs 'env_ids', a list of ints, got {env_ids!r}")
                self.agent.reset(env_ids)
                return {"ok": True}
        if command == "stats":
            return {"ok": True, "counters": dict(self.counters)}
        raise BadRequest(f"unknown control command {command!r}; known: configure, reset, stats")

    def _observation(self, request: dict[str, Any], batched: bool) -> tuple[dict[str, Any], list[int]]:
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
                f"unknown observation key(s) {sorted(unknown)}; this server accepts {sorted(self.keys)} "
                f"or {list(CONTRACT_KEYS)} (start it with wire_keys=... to map others)"
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
            obs["language"] = [language]
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
            proprio = proprio.astype(np.float32)
            if not np.all(np.isfinite(proprio)):
                raise BadRequest("'proprio' holds NaN or inf")
            obs["proprio"] = proprio if batched else proprio[None]
        env_ids = request.get("env_ids", None if batched else [request.get("env_id", 0)])
        if env_ids is None:
            env_ids = list(range(batch))
        if not isinstance(env_ids, list) or len(env_ids) != batch or not all(isinstance(i, int) for i in env_ids):
            raise BadRequest(f"'env_ids' must be a list of {batch} ints, got {env_ids!r}")
        return obs, env_ids

    def _check_actions(self, actions: Any, batch: int) -> np.ndarray:
        arr = np.asarray(actions)
        if arr.ndim != 3 or arr.shape[0] != batch or arr.shape[2] != 7 or arr.dtype.kind != "f":
            self.counters["agent_errors"] += 1
            raise BadRequest(
                f"the agent returned {arr.dtype} {arr.shape}; agents must return float (B={batch}, chunk, 7)"
            )
        return np.ascontiguousarray(arr, dtype=np.float32)

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
                    reply = await asyncio.to_thread(self.handle, message)
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
            log.info("connection from %s closed; counters %s", websocket.remote_address, dict(self.counters))

    async def _log_periodically(self) -> None:
        while self.log_every_s > 0:
            await asyncio.sleep(self.log_every_s)
            log.info("counters %s", dict(self.counters))

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = self._loop.create_future()
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
        log.info("stopped; counters %s", dict(self.counters))

    def serve_forever(self) -> None:
        """Block until interrupted (Ctrl-C)."""
        try:
            asyncio.run(self._run())
        except KeyboardInterrupt:
            log.info("interrupted; counters %s", dict(self.counters))

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
