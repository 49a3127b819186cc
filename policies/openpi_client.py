"""``policy=openpi``: an agent that queries a policy server speaking openpi's websocket + msgpack protocol.

Works with an unmodified openpi pi0/pi05 server (one observation per message, openpi keys, the model's own
action convention) and with ``python -m harness.serve`` (batched requests, reset/configure messages, actions
already in our contract): the server's metadata on connect says which one it is.

Per benchmark, ``benchmarks.<name>`` maps our observation keys to the server's (``keys``), says how the
server's gripper maps to ours (``gripper``: ``contract`` = +1 open already, ``invert`` = -1 open,
``zero_one`` = 1 open / 0 closed) and how many actions of each chunk to execute (``action_horizon``; the
agent's ``action_horizon`` overrides it on every benchmark; a vla-gym server's own agent decides for itself).
The table's one copy is ``conf/policy/openpi.yaml``; entries given to the constructor are merged over it.

Reliability: every socket operation has a timeout; a dropped connection or a timed-out reply is retried on a
fresh connection at most ``max_reconnects`` times, then :class:`AgentConnectionError` ends the episode as an
error; an error frame from the server raises :class:`RemotePolicyError` at once (retrying would not help).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import websockets
from websockets.sync.client import ClientConnection, connect

from policies import wire
from policies.base import Agent, Observation, batch_size
from policies.gripper import GRIPPER_MAPPINGS, map_gripper
from policies.tables import merged_table, table_entry
from policies.wire import AgentConnectionError, RemotePolicyError

__all__ = ["AgentConnectionError", "OpenPIClientAgent", "RemotePolicyError"]

log = logging.getLogger(__name__)

_CONTRACT_KEYS = ("image", "wrist_image", "language", "proprio")
#: conf/policy/<TABLE>.yaml holds the per-benchmark table (keys, gripper, action_horizon)
TABLE = "openpi"


class OpenPIClientAgent(Agent):
    """Client agent for openpi-protocol policy servers (see the module docstring)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = 8000,
        api_key: str | None = None,
        benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
        action_horizon: int | None = None,
        action_convention: str = "auto",
        batched: str | bool = "auto",
        connect_timeout_s: float = 10.0,
        request_timeout_s: float = 60.0,
        max_reconnects: int = 3,
        reconnect_backoff_s: float = 0.5,
        max_message_mb: float = 64.0,
    ) -> None:
        if action_convention not in ("auto", "server"):
            raise ValueError(f"action_convention must be 'auto' or 'server', got {action_convention!r}")
        if batched not in ("auto", True, False):
            raise ValueError(f"batched must be 'auto', true or false, got {batched!r}")
        if max_reconnects < 0 or connect_timeout_s <= 0 or request_timeout_s <= 0:
            raise ValueError("max_reconnects must be >= 0 and the timeouts > 0")
        self.uri = host if host.startswith("ws") else f"ws://{host}"
        if port is not None:
            self.uri += f":{port}"
        self.api_key = api_key or None
        self.benchmarks = merged_table(TABLE, benchmarks)
        self.action_horizon = action_horizon
        self.action_convention = action_convention
        self.batched = batched
        self.connect_timeout_s = float(connect_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.max_reconnects = int(max_reconnects)
        self.reconnect_backoff_s = float(reconnect_backoff_s)
        self.max_message_bytes = int(max_message_mb * 2**20)
        self.stats: collections.Counter[str] = collections.Counter()
        #: names this client's run to a vla-gym server: its env ids (and the agent's state for them) are its own
        #: there, across reconnects, and never meet another client's equal ids
        self.client_run = uuid.uuid4().hex
        self.server_metadata: dict[str, Any] = {}
        # one connection per calling thread (the runner may call act from several threads at once, see
        # concurrent_calls_safe); all of them, to close them all
        self._local = threading.local()
        self._all: set[ClientConnection] = set()
        self._all_lock = threading.Lock()
        self._benchmark: str | None = None
        self._protocol: dict[str, Any] = {}
        self._keys: dict[str, str] = {}
        self._gripper: str | None = None

    #: act/reset may run in several threads at once (each has its own connection; a vla-gym server keeps this
    #: client's env ids together across them by its run name)
    concurrent_calls_safe = True

    # ---- connection ----

    @property
    def _ws(self) -> ClientConnection | None:
        return getattr(self._local, "ws", None)

    @_ws.setter
    def _ws(self, ws: ClientConnection | None) -> None:
        old = getattr(self._local, "ws", None)
        with self._all_lock:
            if old is not None:
                self._all.discard(old)
            if ws is not None:
                self._all.add(ws)
        self._local.ws = ws

    @property
    def ours(self) -> bool:
        """Whether the server is ``harness.serve`` (batched requests, control messages, contract actions)."""
        return self.server_metadata.get("server") == "vla-gym"

    def _connect(self) -> ClientConnection:
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        try:
            ws = connect(
                self.uri,
                open_timeout=self.connect_timeout_s,
                close_timeout=2.0,
                compression=None,
                max_size=self.max_message_bytes,
                additional_headers=headers,
                proxy=None,
                legacy=True,  # a long-lived connection, closed by _drop()
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            hint = " (wrong or missing api_key)" if status == 401 else ""
            raise AgentConnectionError(f"{self.uri} refused the connection: HTTP {status}{hint}") from exc
        try:
            metadata = wire.unpackb(ws.recv(timeout=self.connect_timeout_s))
        except BaseException:
            ws.close()
            raise
        if not isinstance(metadata, dict):
            ws.close()
            raise AgentConnectionError(f"{self.uri} sent {type(metadata).__name__} metadata, expected a map")
        self.server_metadata = metadata
        self.stats["connects"] += 1
        log.info("connected to %s (%s)", self.uri, metadata.get("server", "openpi"))
        if self.ours and self._benchmark is not None:
            # a fresh connection may reach a restarted server: configure it again
            ws.send(wire.packb({
                "__control__": "configure", "benchmark": self._benchmark, "protocol": self._protocol,
                "client_run": self.client_run,  # keeps this client's env ids apart from other clients'
            }))  # fmt: skip
            reply = self._reply(ws)
            if isinstance(reply, dict):  # chunk sizes as configured for this benchmark
                self.server_metadata.update({k: v for k, v in reply.items() if k != "ok"})
        return ws

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # already broken: nothing to release
                pass
            self._ws = None

    def _reply(self, ws: ClientConnection) -> Any:
        data = ws.recv(timeout=self.request_timeout_s)
        if isinstance(data, str):
            raise RemotePolicyError(f"policy server {self.uri} answered with an error:\n{data}")
        return wire.unpackb(data)

    def _roundtrip(self, messages: list[bytes]) -> list[Any]:
        """Send messages (pipelined) and return their replies, reconnecting on transport failures."""
        last: BaseException | None = None
        for attempt in range(self.max_reconnects + 1):
            if attempt:
                self.stats["reconnects"] += 1
                time.sleep(self.reconnect_backoff_s * attempt)
            try:
                if self._ws is None:
                    self._ws = self._connect()
                for message in messages:
                    self._ws.send(message)
                replies, error = [], None
                for _ in messages:
                    try:
                        replies.append(self._reply(self._ws))
                    except RemotePolicyError as exc:  # keep reading so the stream stays in step
                        error = error or exc
                if error is not None:
                    self.stats["error_frames"] += 1
                    raise error
                self.stats["requests"] += len(messages)
                return replies
            except (websockets.ConnectionClosed, OSError, TimeoutError, wire.WireError) as exc:
                if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 1009:
                    self._drop()  # resending the same message cannot help
                    self.stats["error_frames"] += 1
                    raise RemotePolicyError(
                        f"policy server {self.uri} refused a message as too big: {exc.rcvd.reason}"
                    ) from exc
                # a late reply could arrive on this connection later: never reuse it
                self._drop()
                last = exc
                log.warning("policy server %s: %s: %s (attempt %d)", self.uri, type(exc).__name__, exc, attempt + 1)
        self.stats["failures"] += 1
        raise AgentConnectionError(
            f"policy server {self.uri} unreachable or not answering after {self.max_reconnects} reconnect(s): "
            f"{type(last).__name__}: {last}"
        ) from last

    # ---- agent interface ----

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        cfg = table_entry(self.benchmarks, benchmark, "the openpi client", TABLE)
        keys = {str(k): str(v) for k, v in dict(cfg.get("keys") or {}).items()}
        bad = sorted(set(keys) - set(_CONTRACT_KEYS))
        if bad:
            raise KeyError(f"policy.benchmarks.{benchmark}.keys maps unknown observation key(s) {bad}; "
                           f"our keys are {list(_CONTRACT_KEYS)}")
        if "image" not in keys or "language" not in keys:
            raise KeyError(f"policy.benchmarks.{benchmark}.keys must map 'image' and 'language' to the server's keys")
        gripper = cfg.get("gripper")
        if gripper is not None and gripper not in GRIPPER_MAPPINGS:
            raise ValueError(f"policy.benchmarks.{benchmark}.gripper must be one of {GRIPPER_MAPPINGS}, got {gripper!r}")
        self._benchmark, self._protocol = benchmark, dict(protocol)
        self._keys, self._gripper = keys, gripper
        self._drop()  # the next connection configures a vla-gym server for this benchmark
        self._roundtrip([])  # connect now: fail fast on a wrong address or key
        if gripper is None and not (self.ours and self.action_convention == "auto"):
            raise ValueError(
                f"how does the server's gripper map to ours on {benchmark}? set policy.benchmarks.{benchmark}."
                f"gripper to one of {GRIPPER_MAPPINGS} (openpi servers answer in their training data's sign)"
            )
        if self.ours:  # the served agent, configured for this benchmark, knows its chunking
            self.chunk_size = int(self.server_metadata.get("chunk_size", 1))
            horizon = self.action_horizon or int(self.server_metadata.get("execute_steps", 1))
        else:  # openpi servers announce no chunk length: the table says how many to run
            horizon = self.action_horizon or cfg.get("action_horizon")
            if horizon is None:
                raise ValueError(
                    f"how many actions of each chunk to execute on {benchmark}? set policy.action_horizon or "
                    f"policy.benchmarks.{benchmark}.action_horizon (openpi servers do not say)"
                )
        self.execute_steps = int(horizon)
        self.chunk_size = max(self.chunk_size, self.execute_steps)

    def reset(self, env_ids: Sequence[int]) -> None:
        if self.ours:  # openpi servers keep no per-episode state
            self._roundtrip([wire.packb({"__control__": "reset", "env_ids": [int(i) for i in env_ids]})])

    def _wire_obs(self, obs: Observation, index: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ours, theirs in self._keys.items():
            if ours not in obs:
                raise KeyError(
                    f"the observation lacks {ours!r}, which policy.benchmarks.{self._benchmark}.keys sends as "
                    f"{theirs!r}: build the env with it (e.g. proprio=true) or drop that mapping"
                )
            value = obs[ours]
            if index is not None:
                value = value[index]
            elif ours != "language":
                value = np.ascontiguousarray(value)
            out[theirs] = value
        return out

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if self._benchmark is None:
            raise RuntimeError("call configure(benchmark, protocol) before act()")
        batch = batch_size(obs)
        use_batch = self.ours and self.server_metadata.get("batched") and self.batched in ("auto", True)
        if self.batched is True and not use_batch:
            raise RuntimeError(f"batched=true but the server at {self.uri} does not take batched requests")
        if use_batch:
            request = self._wire_obs(obs, None)
            request[self._keys["language"]] = [str(s) for s in obs["language"]]
            request["__batch__"] = True
            request["env_ids"] = [int(i) for i in env_ids]
            (reply,) = self._roundtrip([wire.packb(request)])
            chunks = [self._actions(reply, batched=True)]
        else:
            messages = []
            for b in range(batch):
                single = self._wire_obs(obs, b)
                if self.ours:
                    single["env_id"] = int(env_ids[b])
                messages.append(wire.packb(single))
            chunks = [self._actions(reply, batched=False)[None] for reply in self._roundtrip(messages)]
        actions = np.concatenate(chunks, axis=0)
        if actions.shape[0] != batch:
            raise RemotePolicyError(f"the server returned {actions.shape[0]} action chunks for {batch} observations")
        return actions

    def _actions(self, reply: Any, *, batched: bool) -> np.ndarray:
        if not isinstance(reply, dict) or "actions" not in reply:
            raise RemotePolicyError(f"the server's reply has no 'actions': {str(reply)[:200]}")
        actions = np.asarray(reply["actions"])
        if actions.dtype.kind not in "iuf":
            raise RemotePolicyError(f"the server's actions have dtype {actions.dtype}, expected numbers")
        if actions.ndim == (2 if batched else 1):  # a server that returns one action, not a chunk
            actions = actions[..., None, :]
        if actions.ndim != (3 if batched else 2) or actions.shape[-1] < 7:
            raise RemotePolicyError(
                f"the server's actions have shape {actions.shape}; expected "
                f"({'B, ' if batched else ''}horizon, >=7)"
            )
        # openpi models may pad the action vector (e.g. to 32 dims): the first 7 are the arm + gripper
        actions = actions[..., :7]
        if not np.all(np.isfinite(actions)):
            raise RemotePolicyError("the server's actions hold NaN or inf")
        mapping = "contract" if (self.ours and self.action_convention == "auto") else self._gripper
        assert mapping is not None  # configure() refused a missing gripper where it applies
        out = map_gripper(actions, mapping)
        self.chunk_size = max(out.shape[-2], self.execute_steps)  # openpi servers announce no chunk length
        return out

    def close(self) -> None:
        if self.stats:
            log.info("openpi client %s: %s", self.uri, dict(self.stats))
        if self._ws is not None and self.ours:  # let the server drop this run's state; best effort
            try:
                self._ws.send(wire.packb({"__control__": "close"}))
                self._reply(self._ws)
            except Exception:  # the server may be gone already
                pass
        self._drop()
        with self._all_lock:
            others, self._all = list(self._all), set()
        for ws in others:  # connections of other threads
            try:
                ws.close()
            except Exception:  # already broken: nothing to release
                pass
