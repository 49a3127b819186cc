"""OpenVLA offline: prompt, crop, de-tokenise + un-normalise with a stand-in model, the REST client vs a stub."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from policies.openvla import (
    EMPTY_TOKEN_ID,
    OpenVLAAgent,
    OpenVLARestAgent,
    build_prompt,
    center_crop,
    decode_json_numpy,
    encode_json_numpy,
    tokens_to_normalized,
    unnormalize,
)
from policies.wire import AgentConnectionError, RemotePolicyError
from tasks.registry import BENCHMARKS
from tests.policy_tables import benchmark_keyed_constants, compose_policy

pytestmark = pytest.mark.timeout(60)

VOCAB = 32064  # OpenVLA's Llama-2: 32000 + 64 padding
PAD = 64
Q01 = [-0.02, -0.03, -0.04, -0.1, -0.2, -0.3, 0.0]
Q99 = [0.02, 0.05, 0.04, 0.1, 0.2, 0.3, 1.0]
MASK = [True] * 6 + [False]
NORM_STATS = {
    "libero_10_no_noops": {"action": {"q01": Q01, "q99": Q99, "mask": MASK}},
    "bridge_orig": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": MASK}},
}
BIN_CENTERS = (np.linspace(-1, 1, 256)[:-1] + np.linspace(-1, 1, 256)[1:]) / 2


def test_prompt() -> None:
    assert build_prompt("Put both the Alphabet Soup in the basket") == (
        "In: What action should the robot take to put both the alphabet soup in the basket?\nOut:"
    )


def test_center_crop_keeps_the_central_90_percent_of_the_area() -> None:
    x = np.tile(np.arange(224, dtype=np.float64), (224, 1))
    image = np.stack([x, x.T, np.zeros_like(x)], axis=-1).astype(np.uint8)  # R = column, G = row
    out = center_crop(image, 0.9)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    margin = 224 * (1 - np.sqrt(0.9)) / 2  # ~5.7 px cut on each side
    assert abs(float(out[112, 0, 0]) - margin) <= 1.5 and abs(float(out[112, -1, 0]) - (223 - margin)) <= 1.5
    assert abs(float(out[0, 112, 1]) - margin) <= 1.5 and abs(float(out[-1, 112, 1]) - (223 - margin)) <= 1.5
    assert np.array_equal(center_crop(image, 1.0), image)
    with pytest.raises(ValueError, match="crop area"):
        center_crop(image, 0.0)


def test_detokenise_and_unnormalise_maths() -> None:
    vocab = VOCAB - PAD
    # token vocab - 1 -> bin 0; vocab - 128 -> bin 127; vocab - 256 and beyond clip to the last bin (254)
    normalized = tokens_to_normalized(np.array([vocab - 1, vocab - 128, vocab - 256, vocab - 300, vocab + 5]), vocab)
    np.testing.assert_allclose(normalized, BIN_CENTERS[[0, 127, 254, 254, 0]])
    assert normalized[0] == pytest.approx(-1 + 1 / 255) and normalized[2] == pytest.approx(1 - 1 / 255)
    a = np.array([-1.0, 1.0, 0.0, 0.5, -0.5, 0.25, 0.8])
    got = unnormalize(a, Q01, Q99, MASK)
    want = [Q01[0], Q99[1], (Q01[2] + Q99[2]) / 2, 0.75 * 0.2 - 0.1, 0.25 * 0.4 - 0.2, 0.625 * 0.6 - 0.3, 0.8]
    np.testing.assert_allclose(got, want)


def _tokens_for(normalized_bins: list[int]) -> list[int]:
    return [VOCAB - PAD - (b + 1) for b in normalized_bins]


class FakeProcessor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, np.ndarray]] = []

    def __call__(self, prompt: str, image) -> dict:
        self.calls.append((prompt, np.asarray(image)))
        return {"input_ids": torch.tensor([[1, 319, 29901]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
                "pixel_values": torch.zeros(1, 6, 224, 224)}


class FakeModel:
    """Greedy generation returns fixed action tokens; records what generate saw."""

    config = SimpleNamespace(text_config=SimpleNamespace(vocab_size=VOCAB), pad_to_multiple_of=PAD, n_action_bins=256)

    def __init__(self, bins: list[int]) -> None:
        self.bins, self.calls = bins, []

    def generate(self, input_ids, max_new_tokens, do_sample, **kwargs):
        self.calls.append({"input_ids": input_ids, "max_new_tokens": max_new_tokens, "do_sample": do_sample, **kwargs})
        return torch.cat([input_ids, torch.tensor([_tokens_for(self.bins)])], dim=1)


def _obs(batch: int) -> dict:
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
            "language": ["Open the top drawer", "Put the eggplant in the basket"][:batch]}


def test_agent_with_a_stand_in_model() -> None:
    bins = [0, 254, 127, 191, 63, 100, 200]  # gripper bin 200 -> ~0.57 > 0.5 -> open
    model, processor = FakeModel(bins), FakeProcessor()
    agent = OpenVLAAgent.from_components(model, processor, NORM_STATS)
    agent.configure("libero_long", {})
    obs = _obs(2)
    actions = agent.act(obs, [0, 1])
    assert actions.shape == (2, 1, 7) and actions.dtype == np.float32
    assert (agent.chunk_size, agent.execute_steps) == (1, 1)
    want = unnormalize(BIN_CENTERS[bins], Q01, Q99, MASK)
    np.testing.assert_allclose(actions[0, 0, :6], want[:6], rtol=1e-5)
    assert actions[0, 0, 6] == 1.0
    prompt, image = processor.calls[0]
    assert prompt == "In: What action should the robot take to open the top drawer?\nOut:"
    np.testing.assert_array_equal(image, center_crop(obs["image"][0]))  # LIBERO: cropped
    call = model.calls[0]
    assert call["input_ids"][0, -1] == EMPTY_TOKEN_ID and call["attention_mask"].shape == (1, 4)
    assert call["max_new_tokens"] == 7 and call["do_sample"] is False and "pixel_values" in call

    model.bins = bins[:6] + [90]  # ~-0.29: closed
    agent.configure("simpler_bridge", {})
    processor.calls.clear()
    actions = agent.act(_obs(1), [3])
    np.testing.assert_allclose(actions[0, 0, :6], BIN_CENTERS[bins[:6]], rtol=1e-5)  # q01/q99 = -1/+1
    assert actions[0, 0, 6] == -1.0
    np.testing.assert_array_equal(processor.calls[0][1], _obs(1)["image"][0])  # Bridge: not cropped

    with pytest.raises(KeyError, match=r"policy\.benchmarks\.calvin\.unnorm_key="):
        agent.configure("calvin", {})
    bad = OpenVLAAgent.from_components(model, processor, NORM_STATS, benchmarks={"calvin": {"unnorm_key": "calvin_abc"}})
    with pytest.raises(KeyError, match=r"not in this checkpoint's statistics.*policy\.benchmarks\.calvin\.unnorm_key"):
        bad.configure("calvin", {})


def test_json_numpy_codec() -> None:
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    encoded = encode_json_numpy(image)
    assert encoded["dtype"] == "|u1" and encoded["shape"] == [2, 4, 3]
    np.testing.assert_array_equal(decode_json_numpy(json.loads(json.dumps(encoded))), image)
    action = np.linspace(0, 1, 7)
    np.testing.assert_array_equal(decode_json_numpy(json.dumps(encode_json_numpy(action))), action)
    np.testing.assert_array_equal(decode_json_numpy([1, 2, 3]), [1.0, 2.0, 3.0])
    with pytest.raises(RemotePolicyError):
        decode_json_numpy({"something": "else"})


@pytest.fixture
def act_server() -> Iterator:
    """A stand-in for OpenVLA's deploy.py: decodes the json-numpy image, answers a json-numpy action."""
    state = {"requests": [], "reply": np.array([0.01, -0.02, 0.03, 0.1, 0.2, 0.3, 0.9]), "delay": 0.0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "encoded" in payload:
                payload = json.loads(payload["encoded"])
            payload["image"] = decode_json_numpy(payload["image"])
            state["requests"].append((self.path, payload))
            time.sleep(state["delay"])
            reply = "error" if payload["instruction"] == "crash" else encode_json_numpy(state["reply"])
            body = json.dumps(reply).encode()
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except BrokenPipeError:  # the client timed out and left, as the test wants
                pass

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], state
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("double_encode", [False, True])
def test_rest_client_against_a_stub(act_server, double_encode) -> None:
    port, state = act_server
    agent = OpenVLARestAgent(url=f"http://127.0.0.1:{port}/act", timeout_s=5, double_encode=double_encode)
    agent.configure("libero_long", {})
    obs = _obs(2)
    actions = agent.act(obs, [0, 1])
    assert actions.shape == (2, 1, 7)
    np.testing.assert_allclose(actions[0, 0], [0.01, -0.02, 0.03, 0.1, 0.2, 0.3, 1.0], rtol=1e-6)
    path, payload = state["requests"][0]
    assert path == "/act" and payload["unnorm_key"] == "libero_10_no_noops"
    assert payload["instruction"] == "Open the top drawer"  # the server builds the prompt itself
    np.testing.assert_array_equal(payload["image"], center_crop(obs["image"][0]))
    agent.configure("simpler_bridge", {})
    state["reply"] = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2], dtype=np.float32)
    assert agent.act(_obs(1), [0])[0, 0, 6] == -1.0
    assert state["requests"][-1][1]["unnorm_key"] == "bridge_orig"
    with pytest.raises(RemotePolicyError, match="failed on this request"):
        agent.act({"image": obs["image"][:1], "language": ["crash"]}, [0])


def test_rest_client_never_hangs(act_server) -> None:
    port, state = act_server
    state["delay"] = 1.0
    agent = OpenVLARestAgent(url=f"http://127.0.0.1:{port}/act", timeout_s=0.2, max_retries=1, retry_backoff_s=0.01)
    agent.configure("simpler_bridge", {})
    start = time.monotonic()
    with pytest.raises(AgentConnectionError, match="after 1 retries"):
        agent.act(_obs(1), [0])
    assert time.monotonic() - start < 3 and agent.stats["retries"] == 1
    gone = OpenVLARestAgent(url="http://127.0.0.1:9/act", timeout_s=1, max_retries=2, retry_backoff_s=0.01)
    gone.configure("simpler_bridge", {})
    with pytest.raises(AgentConnectionError, match="unreachable"):
        gone.act(_obs(1), [0])
    assert gone.stats == {"requests": 0, "retries": 2, "failures": 1}


def test_policy_configs_instantiate(tmp_path) -> None:
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    agent = instantiate(compose_policy("openvla_rest"), url="http://127.0.0.1:1/act")
    assert isinstance(agent, OpenVLARestAgent) and agent.url == "http://127.0.0.1:1/act"
    agent.configure("libero_long", {})
    assert agent.unnorm_key == "libero_10_no_noops" and agent.crop
    with pytest.raises(KeyError, match=r"policy\.benchmarks\.calvin\.unnorm_key"):
        agent.configure("calvin", {})
    with pytest.raises(InstantiationException, match="weights folder") as info:
        instantiate(compose_policy("openvla"), weights=str(tmp_path / "nothing"))
    assert isinstance(info.value.__cause__, FileNotFoundError)


# ---- the per-benchmark table: one copy (conf/policy/base/openvla.yaml), every registered benchmark ----------
# OpenVLA's experiments/robot/libero/run_libero_eval.py (its LIBERO fine-tunes) and its Bridge statistics
PUBLISHED_UNNORM_KEYS = {
    "libero_spatial": "libero_spatial_no_noops",
    "libero_object": "libero_object_no_noops",
    "libero_goal": "libero_goal_no_noops",
    "libero_long": "libero_10_no_noops",
    "simpler_bridge": "bridge_orig",
}


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_every_registered_benchmark_has_its_settings_or_a_clear_error(benchmark: str) -> None:
    stats = {key: NORM_STATS["libero_10_no_noops"] for key in PUBLISHED_UNNORM_KEYS.values()}
    local = OpenVLAAgent.from_components(FakeModel([0] * 7), FakeProcessor(), stats)
    for agent in (local, OpenVLARestAgent()):
        if benchmark not in agent.benchmarks:  # a suite registered later: the error says where to add it
            with pytest.raises(KeyError, match=rf"(?s)(?=.*\+policy\.benchmarks\.{benchmark}\.)(?=.*conf/policy/base/openvla)"):
                agent.configure(benchmark, {})
            continue
        # every LIBERO suite is cropped, as OpenVLA's LIBERO fine-tunes were trained
        assert agent.benchmarks[benchmark]["center_crop"] is benchmark.startswith("libero_")
        if benchmark in PUBLISHED_UNNORM_KEYS:
            agent.configure(benchmark, {})
            assert (agent.unnorm_key, agent.crop) == (PUBLISHED_UNNORM_KEYS[benchmark], benchmark.startswith("libero_"))
        else:  # no published statistics (CALVIN, LIBERO-90): name the override, never guess a key
            with pytest.raises(KeyError, match=rf"policy\.benchmarks\.{benchmark}\.unnorm_key=<dataset key"):
                agent.configure(benchmark, {})


def test_the_table_has_one_copy_and_overrides_reach_it() -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    import policies.openvla

    assert benchmark_keyed_constants(policies.openvla) == []  # no Python copy to drift from the YAML
    direct = OpenVLARestAgent().benchmarks
    for name in ("openvla", "openvla_rest"):  # both share base/openvla.yaml
        assert OmegaConf.to_container(compose_policy(name).benchmarks) == direct
    # a user's command-line override of one field keeps the rest of the entry
    cfg = compose_policy("openvla_rest", "policy.benchmarks.libero_90.unnorm_key=libero_90_no_noops")
    agent = instantiate(cfg)
    agent.configure("libero_90", {})
    assert (agent.unnorm_key, agent.crop) == ("libero_90_no_noops", True)
    # and so does a Python caller's; an entry for a new benchmark must say whether to crop
    agent = OpenVLARestAgent(benchmarks={"libero_goal": {"unnorm_key": "mine"}, "new": {"unnorm_key": "k"}})
    agent.configure("libero_goal", {})
    assert (agent.unnorm_key, agent.crop) == ("mine", True)
    with pytest.raises(ValueError, match=r"policy\.benchmarks\.new\.center_crop must be true or false"):
        agent.configure("new", {})
    with pytest.raises(KeyError, match="no settings for benchmark 'metaworld'"):
        agent.configure("metaworld", {})
