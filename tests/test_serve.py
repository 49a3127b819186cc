"""harness.serve over loopback: our client and openpi-client's own client against our server; bad input,
dropped connections and timeouts never hang and are counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import websockets
from openpi_client.action_chunk_broker import ActionChunkBroker
from openpi_client.websocket_client_policy import WebsocketClientPolicy
from websockets.sync.client import connect

from harness.serve import PolicyServer
from policies import wire
from policies.openpi_client import AgentConnectionError, OpenPIClientAgent, RemotePolicyError
from policies.random_agent import RandomAgent
from tasks.registry import BENCHMARKS
from tests._wire_agents import EchoAgent, FailingAgent, SlowAgent
from tests.policy_tables import benchmark_keyed_constants, compose_policy

pytestmark = [
    pytest.mark.timeout(60),
    # openpi-client 0.1.2 opens its connection without a context manager
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

SIZE = 224


def _obs(batch: int, seed: int = 0, wrist: bool = True, proprio: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    obs = {
        "image": rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8),
        "language": [f"task number {i}" + "!" * i for i in range(batch)],
    }
    if wrist:
        obs["wrist_image"] = rng.integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
    if proprio:
        obs["proprio"] = rng.normal(size=(batch, 8)).astype(np.float32)
    return obs




def _client(server: PolicyServer, **kwargs) -> OpenPIClientAgent:
    kwargs.setdefault("request_timeout_s", 10)
    kwargs.setdefault("connect_timeout_s", 5)
    return OpenPIClientAgent(host="127.0.0.1", port=server.port, **kwargs)


@pytest.mark.parametrize("batched", ["auto", False])
def test_our_client_matches_the_agent_in_process(serving, batched) -> None:
    remote_agent = EchoAgent()
    server = serving(remote_agent)
    client = _client(server, batched=batched)
    client.configure("libero_long", {"name": "default", "max_steps": 520})
    assert remote_agent.configured == [("libero_long", {"name": "default", "max_steps": 520})]
    assert (client.chunk_size, client.execute_steps) == (4, 2)
    obs, env_ids = _obs(3), [5, 7, 9]
    client.reset(env_ids)
    assert remote_agent.resets == [[5, 7, 9]]
    got = client.act(obs, env_ids)
    want = EchoAgent().act(obs, env_ids)
    assert got.dtype == np.float32 and got.shape == (3, 4, 7)
    np.testing.assert_array_equal(got, want)  # keys mapped there and back, gripper untouched (contract server)
    assert server.counters["observations"] == 3
    assert server.counters["batched_requests"] == (1 if batched == "auto" else 0)
    assert server.counters["requests"] == (1 if batched == "auto" else 3)
    client.close()


def test_random_agent_served_is_the_random_agent() -> None:
    obs, env_ids = _obs(2, seed=3, wrist=False, proprio=False), [0, 1]
    with PolicyServer(RandomAgent(seed=4, chunk_size=5, execute_steps=5), port=0, log_every_s=0) as server:
        client = _client(server, benchmarks={"calvin": {"keys": {"image": "observation/image", "language": "prompt"}}})
        client.configure("calvin", {})
        remote = [client.act(obs, env_ids) for _ in range(3)]
        client.close()
    local_agent = RandomAgent(seed=4, chunk_size=5, execute_steps=5)
    local = [local_agent.act(obs, env_ids) for _ in range(3)]
    for r, loc in zip(remote, local, strict=True):
        np.testing.assert_array_equal(r, loc)
    assert not np.array_equal(remote[0], remote[1])  # the stream advances per env across calls


def test_openpi_package_client_against_our_server(serving) -> None:
    server = serving(EchoAgent(chunk_size=6, execute_steps=3))
    policy = WebsocketClientPolicy(host="127.0.0.1", port=server.port)
    meta = policy.get_server_metadata()
    assert meta["server"] == "vla-gym" and meta["chunk_size"] == 6 and meta["action_convention"] == "contract"
    obs = _obs(1)
    element = {
        "observation/image": obs["image"][0],
        "observation/wrist_image": obs["wrist_image"][0],
        "observation/state": obs["proprio"][0],
        "prompt": obs["language"][0],
    }
    reply = policy.infer(element)
    want = EchoAgent(chunk_size=6).act(obs, [0])[0]
    np.testing.assert_array_equal(reply["actions"], want)
    assert reply["server_timing"]["infer_ms"] >= 0
    broker = ActionChunkBroker(policy, action_horizon=3)
    steps = [broker.infer(element)["actions"] for _ in range(4)]
    np.testing.assert_array_equal(np.stack(steps[:3]), want[:3])
    np.testing.assert_array_equal(steps[3], want[0])  # a new chunk after the horizon
    # an error frame makes openpi's client raise, and the same connection keeps serving
    with pytest.raises(RuntimeError, match="unknown observation key"):
        policy.infer({**element, "observation/other": np.zeros(3)})
    np.testing.assert_array_equal(policy.infer(element)["actions"], want)
    assert server.counters["errors_bad_request"] == 1


def _raw(server: PolicyServer):
    ws = connect(f"ws://127.0.0.1:{server.port}", open_timeout=5, proxy=None, max_size=None, legacy=True)
    wire.unpackb(ws.recv(timeout=5))  # metadata
    return ws


def test_bad_requests_get_error_frames_and_the_connection_survives(serving) -> None:
    server = serving(FailingAgent(), max_message_bytes=400_000)
    obs = _obs(1)
    good = {"observation/image": obs["image"][0], "prompt": "pick"}
    bad_requests = [
        (b"\xc1garbage", "decode", "not a msgpack"),
        (wire.packb([1, 2, 3]), "bad_request", "must be a map"),
        (wire.packb({"prompt": "pick"}), "bad_request", "lacks 'image'"),
        (wire.packb({**good, "camera": obs["image"][0]}), "bad_request", "unknown observation key"),
        (wire.packb({**good, "observation/image": obs["image"][0, :100]}), "bad_request", "shape (224, 224, 3)"),
        (wire.packb({**good, "observation/image": obs["image"][0].astype(np.int16)}), "bad_request", "uint8"),
        (wire.packb({**good, "observation/state": np.array([np.nan], np.float32)}), "bad_request", "NaN"),
        (wire.packb({**good, "prompt": 3}), "bad_request", "must be a string"),
        (wire.packb({**good, "__batch__": True}), "bad_request", "list of strings"),
        (wire.packb({**good, "prompt": "please fail"}), "bad_request", "fails on purpose"),
        (wire.packb({**good, "prompt": "wrong shape"}), "bad_request", "agent returned"),
        (wire.packb({"__control__": "dance"}), "bad_request", "unknown control"),
        (b"\x00" * 500_000, "oversized", "exceeds the limit"),
    ]
    ws = _raw(server)
    try:
        for data, kind, text in bad_requests:
            ws.send(data)
            reply = ws.recv(timeout=5)
            assert isinstance(reply, str) and text in reply and kind in reply, (kind, text, reply)
        ws.send("a text frame")
        assert "binary frames" in ws.recv(timeout=5)
        ws.send(wire.packb(good))  # the same connection still serves
        reply = wire.unpackb(ws.recv(timeout=5))
        assert reply["actions"].shape == (4, 7)
        ws.send(wire.packb({"__control__": "stats"}))
        counters = wire.unpackb(ws.recv(timeout=5))["counters"]
    finally:
        ws.close()
    assert counters["errors"] == len(bad_requests) + 1
    assert counters["errors_oversized"] == 1 and counters["errors_decode"] == 1
    assert counters["errors_text_frame"] == 1 and counters["agent_errors"] == 2
    assert counters["requests"] == 1


def test_transport_oversize_closes_only_that_connection(serving) -> None:
    server = serving(EchoAgent(), max_message_bytes=200_000)
    ws = _raw(server)
    ws.send(b"\x00" * 450_000)  # over twice the limit: the transport refuses it
    with pytest.raises(websockets.ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    client = _client(server, benchmarks={"simpler_bridge": {"keys": {"image": "image", "language": "language"}}})
    client.configure("simpler_bridge", {})
    assert client.act(_obs(1, wrist=False, proprio=False), [0]).shape == (1, 4, 7)
    with pytest.raises(RemotePolicyError, match="too big"):  # 450 KB of images in one batched message
        client.act(_obs(3, wrist=False, proprio=False), [0, 1, 2])
    deadline = time.monotonic() + 5
    while server.counters["errors_transport_oversized"] != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.counters["errors_transport_oversized"] == 2


def test_api_key(serving) -> None:
    server = serving(EchoAgent(), api_key="s3cret")
    with pytest.raises(AgentConnectionError, match="HTTP 401"):
        _client(server).configure("calvin", {})
    with pytest.raises(websockets.InvalidStatus):
        WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key="wrong")
    assert server.counters["auth_rejected"] == 2
    client = _client(server, api_key="s3cret")
    client.configure("calvin", {})
    assert client.act(_obs(2), [0, 1]).shape == (2, 4, 7)
    policy = WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key="s3cret")
    assert policy.get_server_metadata()["server"] == "vla-gym"


def test_dropped_connection_reconnects_and_reconfigures(serving) -> None:
    agent = EchoAgent()
    server = serving(agent)
    client = _client(server, reconnect_backoff_s=0.01)
    client.configure("libero_long", {"a": 1})
    obs = _obs(2)
    first = client.act(obs, [0, 1])
    server.drop_connections()
    time.sleep(0.1)
    np.testing.assert_array_equal(client.act(obs, [0, 1]), first)
    assert client.stats["reconnects"] == 1 and client.stats["connects"] == 2
    # the new connection configured the same again: the agent keeps its state (configured once)
    assert agent.configured == [("libero_long", {"a": 1})]
    assert server.counters["connections"] == 2


def test_server_gone_ends_the_episode_as_an_error_quickly(serving) -> None:
    server = serving(EchoAgent())
    client = _client(server, max_reconnects=2, reconnect_backoff_s=0.05, connect_timeout_s=1)
    client.configure("calvin", {})
    server.stop()
    start = time.monotonic()
    with pytest.raises(AgentConnectionError, match="after 2 reconnect"):
        client.act(_obs(1), [0])
    assert time.monotonic() - start < 5
    assert client.stats["reconnects"] == 2 and client.stats["failures"] == 1


def test_slow_server_times_out_instead_of_hanging(serving) -> None:
    server = serving(SlowAgent(delay_s=1.5))
    client = _client(server, request_timeout_s=0.3, max_reconnects=1, reconnect_backoff_s=0.01)
    client.configure("calvin", {})
    start = time.monotonic()
    with pytest.raises(AgentConnectionError, match="TimeoutError"):
        client.act(_obs(1), [0])
    assert time.monotonic() - start < 4


def test_error_frame_raises_without_retry_and_keeps_the_stream_in_step(serving) -> None:
    server = serving(FailingAgent())
    client = _client(server, batched=False)
    client.configure("libero_long", {})
    obs = _obs(3)
    obs["language"][1] = "please fail"
    with pytest.raises(RemotePolicyError, match="fails on purpose"):
        client.act(obs, [0, 1, 2])
    assert client.stats["reconnects"] == 0
    good = _obs(2)
    np.testing.assert_array_equal(client.act(good, [0, 1]), EchoAgent().act(good, [0, 1]))


def test_client_refuses_missing_observation_keys(serving) -> None:
    server = serving(EchoAgent())
    client = _client(server)
    client.configure("libero_long", {})  # default keys send proprio as observation/state
    with pytest.raises(KeyError, match="proprio"):
        client.act(_obs(1, proprio=False), [0])


@pytest.fixture
def openpi_like_server() -> Iterator:
    """A stand-in for an unmodified openpi server: metadata {} style, one observation per message, (10, 8)
    actions in LIBERO's raw convention (gripper +1 = close)."""
    from websockets.sync.server import serve

    received: list[dict] = []

    def handler(ws) -> None:
        ws.send(wire.packb({"policy_name": "pi05_libero"}))
        for message in ws:
            obs = wire.unpackb(message)
            received.append(obs)
            actions = np.zeros((10, 8))
            actions[:, 0] = float(obs["observation/state"].sum())
            actions[:, 1] = np.arange(10)
            actions[:, 6] = 1.0
            ws.send(wire.packb({"actions": actions}))

    server = serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.socket.getsockname()[1], received
    server.shutdown()
    thread.join(5)


def test_client_maps_keys_and_gripper_for_an_openpi_server(openpi_like_server) -> None:
    port, received = openpi_like_server
    from hydra.utils import instantiate

    client = instantiate(compose_policy("openpi"), port=port, request_timeout_s=10)
    assert isinstance(client, OpenPIClientAgent)
    client.configure("libero_long", {})
    assert client.execute_steps == 5 and client.chunk_size == 5  # the chunk length comes with the first reply
    obs = _obs(3)
    client.reset([0, 1, 2])  # openpi servers keep no episode state: nothing is sent
    actions = client.act(obs, [0, 1, 2])
    assert actions.shape == (3, 10, 7) and actions.dtype == np.float32
    assert (client.chunk_size, client.execute_steps) == (10, 5)
    np.testing.assert_allclose(actions[:, 0, 0], obs["proprio"].sum(axis=1), rtol=1e-5)
    np.testing.assert_array_equal(actions[0, :, 1], np.arange(10))
    assert np.all(actions[..., 6] == -1.0)  # LIBERO's +1 (close) is our -1
    assert len(received) == 3  # one message per observation, in order
    for b, sent in enumerate(received):
        assert set(sent) == {"observation/image", "observation/wrist_image", "observation/state", "prompt"}
        np.testing.assert_array_equal(sent["observation/image"], obs["image"][b])
        np.testing.assert_array_equal(sent["observation/wrist_image"], obs["wrist_image"][b])
        assert sent["prompt"] == obs["language"][b]
    client.close()


def test_chunk_length_for_openpi_servers_comes_from_the_table(openpi_like_server) -> None:
    port, _ = openpi_like_server
    client = OpenPIClientAgent(port=port, request_timeout_s=10)
    client.configure("calvin", {"execute_steps": 3})  # a protocol field of that name is not read any more
    assert client.execute_steps == 10  # the table's
    client.configure("simpler_bridge", {})
    assert client.execute_steps == 4
    client.benchmarks["calvin"]["action_horizon"] = None
    with pytest.raises(ValueError, match="policy.action_horizon"):
        client.configure("calvin", {})
    override = OpenPIClientAgent(port=port, request_timeout_s=10, action_horizon=3)
    override.configure("calvin", {})
    assert override.execute_steps == 3  # the agent's own setting wins on every benchmark
    client.close()
    override.close()


# ---- the per-benchmark table: one copy (conf/policy/openpi.yaml), every registered benchmark -------------------
OPENPI_LIBERO = {  # openpi's examples/libero/main.py, the same on every suite
    "keys": {"image": "observation/image", "wrist_image": "observation/wrist_image", "proprio": "observation/state",
             "language": "prompt"},
    "gripper": "invert",
    "action_horizon": 5,
}


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_every_registered_benchmark_has_client_settings_or_a_clear_error(openpi_like_server, benchmark) -> None:
    port, _ = openpi_like_server
    client = OpenPIClientAgent(port=port, request_timeout_s=10)
    if benchmark not in client.benchmarks:  # a benchmark registered later: the error says where to add it
        with pytest.raises(KeyError, match=rf"(?s)(?=.*\+policy\.benchmarks\.{benchmark}\.)(?=.*conf/policy/openpi\.yaml)"):
            client.configure(benchmark, {})
        return
    if benchmark.startswith("libero_"):
        assert client.benchmarks[benchmark] == OPENPI_LIBERO
    client.configure(benchmark, {})
    assert client.execute_steps == client.benchmarks[benchmark]["action_horizon"]
    client.close()


def test_client_table_has_one_copy_and_missing_settings_are_named(openpi_like_server) -> None:
    from omegaconf import OmegaConf

    import policies.openpi_client

    port, _ = openpi_like_server
    assert benchmark_keyed_constants(policies.openpi_client) == []  # no Python copy to drift from the YAML
    client = OpenPIClientAgent(port=port, request_timeout_s=10, benchmarks={"toy": {"keys": {"image": "i"}}})
    assert OmegaConf.to_container(compose_policy("openpi").benchmarks) == {
        k: v for k, v in client.benchmarks.items() if k != "toy"
    }
    with pytest.raises(KeyError, match="no settings for benchmark 'metaworld'"):
        client.configure("metaworld", {})
    with pytest.raises(KeyError, match=r"policy\.benchmarks\.toy\.keys must map 'image' and 'language'"):
        client.configure("toy", {})
    client.benchmarks["toy"]["keys"]["language"] = "prompt"
    with pytest.raises(ValueError, match=r"set policy\.benchmarks\.toy\.gripper"):  # an openpi server: no default
        client.configure("toy", {})
    client.close()
