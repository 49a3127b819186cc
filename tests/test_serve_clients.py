"""harness.serve with many clients: per-client agent state, batching across connections, contract limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from scale_helpers import StatefulAgent
from websockets.sync.client import connect

from harness.serve import PolicyServer
from policies import wire
from policies.openpi_client import OpenPIClientAgent, RemotePolicyError

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

BRIDGE = {"simpler_bridge": {"keys": {"image": "image", "language": "language"}}}




def _client(server: PolicyServer) -> OpenPIClientAgent:
    client = OpenPIClientAgent(port=server.port, request_timeout_s=20, benchmarks=BRIDGE, reconnect_backoff_s=0.01)
    client.configure("simpler_bridge", {})
    return client


def _episode(seed: int, steps: int = 6) -> list[dict[str, Any]]:
    """A client's observations for envs 0 and 1, step by step (different per seed)."""
    rng = np.random.default_rng(seed)
    return [
        {"image": rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8),
         "language": [f"pick the block {seed}", f"open drawer {seed}" + "!" * seed]}
        for _ in range(steps)
    ]  # fmt: skip


def _play(client: OpenPIClientAgent, observations: list[dict[str, Any]], ids: Sequence[int] = (0, 1)) -> np.ndarray:
    client.reset(list(ids))
    return np.stack([client.act(obs, list(ids)) for obs in observations])


def _alone(serving: Any, seed: int) -> np.ndarray:
    client = _client(serving(StatefulAgent(w=0.3, chunk_size=2, execute_steps=2)))
    try:
        return _play(client, _episode(seed))
    finally:
        client.close()


def test_two_clients_with_the_same_env_ids_get_what_each_gets_alone(serving) -> None:
    want = {seed: _alone(serving, seed) for seed in (1, 2)}
    assert not np.array_equal(want[1], want[2])
    agent = StatefulAgent(w=0.3, chunk_size=2, execute_steps=2)
    server = serving(agent, max_wait_ms=20)
    clients = {seed: _client(server) for seed in (1, 2)}
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(2)

    def play(seed: int) -> None:
        barrier.wait()
        got[seed] = _play(clients[seed], _episode(seed))

    threads = [threading.Thread(target=play, args=(seed,)) for seed in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in clients.values():
        client.close()
    for seed in (1, 2):
        np.testing.assert_array_equal(got[seed], want[seed])
    assert sorted(agent.count) == [0, 1, 2, 3]  # the agent saw four envs, not two shared ones
    # the same with openpi-client's own client (no env ids, no reset): one env per connection
    agent = StatefulAgent(w=0.3)
    server = serving(agent)
    policies = [WebsocketClientPolicy(host="127.0.0.1", port=server.port) for _ in range(2)]
    image = np.full((224, 224, 3), 7, np.uint8)
    replies = [[p.infer({"observation/image": image, "prompt": "x"})["actions"] for p in policies] for _ in range(3)]
    for a, b in replies:
        np.testing.assert_array_equal(a, b)  # each connection's state advanced once per own call
    assert not np.array_equal(replies[0][0], replies[1][0])


class _GatedAgent(StatefulAgent):
    """Its reset blocks while ``gate`` is clear: requests queue up behind it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()  # set while a reset waits at the gate

    def reset(self, env_ids: Sequence[int]) -> None:
        if not self.gate.is_set():
            self.blocked.set()
        self.gate.wait(30)
        super().reset(env_ids)


def test_requests_of_several_clients_are_merged_into_one_agent_call(serving) -> None:
    want = {seed: _alone(serving, seed)[0] for seed in (3, 4, 5)}
    agent = _GatedAgent(w=0.3, chunk_size=2, execute_steps=2)
    server = serving(agent)
    clients = {seed: _client(server) for seed in (3, 4, 5)}
    clients[3].reset([0, 1])
    clients[4].reset([0, 1])
    agent.gate.clear()
    got: dict[int, np.ndarray] = {}

    def run(seed: int, job: str) -> None:
        if job == "reset":
            clients[seed].reset([0, 1])
        else:
            got[seed] = clients[seed].act(_episode(seed)[0], [0, 1])

    blocker = threading.Thread(target=run, args=(5, "reset"))
    blocker.start()
    assert agent.blocked.wait(20)  # the agent thread now waits in that reset
    deadline = time.monotonic() + 20
    acts = [threading.Thread(target=run, args=(seed, "act")) for seed in (3, 4)]
    for thread in acts:
        thread.start()
    while len(server._queue) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server._queue) == 2
    agent.gate.set()
    for thread in [blocker, *acts]:
        thread.join(30)
    for seed in (3, 4):
        np.testing.assert_array_equal(got[seed], want[seed])
    stats = server.stats()
    assert stats["batch_sizes"] == {"4": 1} and stats["merged_calls"] == 1
    assert agent.batch_sizes == [4]
    assert stats["max_wait_ms"] > 0
    for client in clients.values():
        client.close()


def test_a_named_run_keeps_its_state_across_reconnects(serving) -> None:
    want = _alone(serving, 6)
    server = serving(StatefulAgent(w=0.3, chunk_size=2, execute_steps=2))
    client = _client(server)
    observations = _episode(6)
    client.reset([0, 1])
    got = [client.act(observations[0], [0, 1])]
    server.drop_connections()
    got += [client.act(obs, [0, 1]) for obs in observations[1:]]
    assert client.stats["reconnects"] == 1
    np.testing.assert_array_equal(np.stack(got), want)
    client.close()


def test_a_client_cannot_reconfigure_the_agent_under_another(serving) -> None:
    server = serving(StatefulAgent())
    first = _client(server)
    second = OpenPIClientAgent(port=server.port, request_timeout_s=10, benchmarks={"calvin": BRIDGE["simpler_bridge"]})
    with pytest.raises(RemotePolicyError, match="configured for .*simpler_bridge.* by another client"):
        second.configure("calvin", {})
    first.close()
    time.sleep(0.2)
    second.configure("calvin", {})  # alone now: allowed
    second.close()


def test_every_field_is_held_to_the_contract(serving) -> None:
    server = serving(StatefulAgent())
    image = np.zeros((224, 224, 3), np.uint8)
    good = {"observation/image": image, "prompt": "pick"}
    batch = {"image": np.zeros((2, 224, 224, 3), np.uint8), "language": ["a", "b"], "__batch__": True}
    bad = [
        ({**good, "prompt": "x" * 100_000}, "at most 512"),
        ({**good, "prompt": "x" * 513}, "at most 512"),
        ({**good, "prompt": "pick\x00up"}, "printable"),
        ({**good, "prompt": "pick \u00e9"}, "printable"),
        ({**good, "observation/state": np.zeros(65, np.float32)}, "1..64 values"),
        ({**good, "observation/state": np.zeros((1, 8), np.float32)}, "1 dims"),
        ({**good, "observation/image": image.astype(np.float32)}, "uint8"),
        ({**good, "observation/wrist_image": image[:, :, :1]}, "shape (224, 224, 3)"),
        ({**good, "env_id": -1}, "0..2147483647"),
        ({**good, "env_id": 2**40}, "0..2147483647"),
        ({**good, "env_id": True}, "ints"),
        ({**good, "env_ids": [0]}, "belongs to batched"),
        ({**good, "__batch__": "yes"}, "true or false"),
        ({**batch, "env_ids": [3, 3]}, "distinct"),
        ({**batch, "env_ids": [0]}, "list of 2 ints"),
        ({**batch, "language": ["a", "b" * 600]}, "at most 512"),
        ({"__control__": "configure", "benchmark": "b" * 200}, "1..128"),
        ({"__control__": "configure", "benchmark": "calvin", "protocol": {"x": "y" * 70_000}}, "65536 bytes"),
        ({"__control__": "configure", "benchmark": "calvin", "client_run": 5}, "client_run"),
        ({"__control__": "reset", "env_ids": list(range(1000))}, "1..256"),
        ({"__control__": "reset", "env_ids": [1.5]}, "ints"),
        ({"__control__": ["configure"]}, "unknown control"),
    ]
    ws = connect(f"ws://127.0.0.1:{server.port}", open_timeout=5, proxy=None, max_size=None, legacy=True)
    try:
        wire.unpackb(ws.recv(timeout=5))
        for request, text in bad:
            ws.send(wire.packb(request))
            reply = ws.recv(timeout=10)
            assert isinstance(reply, str) and "bad_request" in reply and text in reply, (text, reply[:300])
        ws.send(wire.packb(good))
        assert wire.unpackb(ws.recv(timeout=10))["actions"].shape == (1, 7)  # still serving
        ws.send(wire.packb({**good, "prompt": "x" * 512}))  # at the limit: fine
        assert wire.unpackb(ws.recv(timeout=10))["actions"].shape == (1, 7)
    finally:
        ws.close()
    assert server.counters["errors_bad_request"] == len(bad)
