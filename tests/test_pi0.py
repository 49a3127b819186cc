"""policy=pi0 with a tiny random PI0ForConditionalGeneration saved to disk and loaded like real weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.serve import PolicyServer
from policies.openpi_client import OpenPIClientAgent
from policies.pi0 import PI0Agent
from tasks.registry import BENCHMARKS
from tests.policy_tables import benchmark_keyed_constants, compose_policy

pytestmark = pytest.mark.timeout(120)

VOCAB, IMAGE_TOKEN = 320, 319
STATS = {
    "state_mean": [0.5] * 8, "state_std": [2.0] * 8,
    "actions_mean": [0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 0.5], "actions_std": [1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 0.5],
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PI0Config, PI0ForConditionalGeneration, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("pi0_tiny")
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["put both the alphabet soup and the tomato sauce in the basket", "open the drawer\n"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>").save_pretrained(folder)
    torch.manual_seed(0)
    layers = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
    config = PI0Config(
        vlm_config={
            "model_type": "paligemma",
            "text_config": {"model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, "vocab_size": VOCAB, **layers},
            "vision_config": {
                "model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 2, "patch_size": 14, "image_size": 56, "vision_use_head": False,
            },
            "projection_dim": 32, "image_token_id": IMAGE_TOKEN,
        },
        dit_config={"model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, **layers},
        chunk_size=10, max_state_dim=16, max_action_dim=16, num_inference_steps=3,
    )
    PI0ForConditionalGeneration(config).save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(STATS))
    return folder


def _obs(batch: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
        "language": ["put both the alphabet soup and the tomato sauce in the basket", "open the drawer"][:batch],
        "proprio": rng.normal(size=(batch, 8)).astype(np.float32),
    }


def test_chunks_from_the_real_model_are_per_episode_deterministic(weights) -> None:
    agent = PI0Agent(weights=str(weights))
    agent.configure("libero_long", {})
    assert (agent.chunk_size, agent.execute_steps) == (10, 5)
    obs = _obs(2)
    both = agent.act(obs, [0, 1])
    assert both.shape == (2, 10, 7) and both.dtype == np.float32 and np.all(np.isfinite(both))
    assert not np.allclose(both[0], both[1])
    # the second episode alone, in another env slot, gets the same chunk (noise keyed by the episode)
    other = PI0Agent(weights=str(weights))
    other.configure("libero_long", {})
    alone = other.act({k: v[1:] for k, v in obs.items()}, [7])
    np.testing.assert_allclose(alone[0], both[1], atol=1e-4)
    # the stream advances within an episode and restarts on reset
    again = agent.act(obs, [0, 1])
    assert not np.allclose(again, both)
    agent.reset([0, 1])
    np.testing.assert_allclose(agent.act(obs, [0, 1]), both, atol=1e-6)


def test_inputs_built_by_hand(weights) -> None:
    agent = PI0Agent(weights=str(weights))
    agent.configure("libero_long", {})
    obs = _obs(2)
    obs["image"][0] = 255
    obs["wrist_image"][0] = 0
    pixels = agent.pixel_values(obs)
    assert pixels.shape == (2, 2, 3, 56, 56)  # resized to the vision tower's size, two cameras
    assert torch.allclose(pixels[0, 0], torch.ones(1)) and torch.allclose(pixels[0, 1], -torch.ones(1))
    assert pixels.min() >= -1 and pixels.max() <= 1
    ids, mask = agent.prompt_ids(["open the drawer", "put both_the"], cameras=2)
    image_tokens = 2 * (56 // 14) ** 2
    assert torch.all(ids[:, :image_tokens] == IMAGE_TOKEN) and torch.all(ids[:, image_tokens] == agent.tokenizer.bos_token_id)
    text = agent.tokenizer.decode(ids[0, image_tokens + 1 : int(mask[0].sum())])
    assert text == "open the drawer\n"
    assert agent.tokenizer.decode(ids[1, image_tokens + 1 : int(mask[1].sum())]) == "put both the\n"
    assert mask[0].sum() != mask[1].sum() and torch.all(ids[mask == 0] == agent.tokenizer.pad_token_id)


def test_state_normalisation_unnormalisation_and_gripper(weights, monkeypatch) -> None:
    agent = PI0Agent(weights=str(weights))
    seen = {}
    normalized = np.zeros((1, 10, 16), dtype=np.float32)
    normalized[..., :7] = [1.0, 1.0, -1.0, 0.5, 0.0, 0.0, 1.0]

    def fake_sample(**kwargs):
        seen.update(kwargs)
        return torch.from_numpy(normalized.repeat(kwargs["state"].shape[0], axis=0))

    monkeypatch.setattr(agent.model, "sample_actions", fake_sample)
    obs = _obs(1)
    agent.configure("libero_long", {})
    actions = agent.act(obs, [0])
    want_state = (obs["proprio"][0] - 0.5) / (2.0 + 1e-8)
    np.testing.assert_allclose(seen["state"][0, :8].numpy(), want_state, rtol=1e-5)
    assert torch.all(seen["state"][0, 8:] == 0)  # zero-padded to max_state_dim
    # a * std + mean, then LIBERO's raw gripper (+1 close) becomes ours (-1)
    np.testing.assert_allclose(actions[0, 0], [1.1, 2.2, -2.7, 0.5, 0.0, 0.0, -1.0], rtol=1e-5)

    agent.configure("simpler_bridge", {})  # one camera, no state, gripper 1 open / 0 closed
    bridge = {k: v for k, v in obs.items() if k not in ("wrist_image", "proprio")}
    actions = agent.act(bridge, [0])
    assert seen["pixel_values"].shape[1] == 1 and torch.all(seen["state"] == 0)
    np.testing.assert_allclose(actions[0, 0, 6], 2 * 1.0 - 1.0)


def test_clear_errors(weights, tmp_path) -> None:
    agent = PI0Agent(weights=str(weights))
    agent.configure("libero_long", {})
    with pytest.raises(KeyError, match="proprio=true"):
        agent.act({k: v for k, v in _obs(1).items() if k != "proprio"}, [0])
    with pytest.raises(KeyError, match="wrist_image"):
        agent.act({k: v for k, v in _obs(1).items() if k != "wrist_image"}, [0])
    with pytest.raises(FileNotFoundError, match="weights folder"):
        PI0Agent(weights=str(tmp_path / "missing"))
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in weights.iterdir():
        if name.name != "processor_config.json":
            (bare / name.name).write_bytes(name.read_bytes())
    with pytest.raises(ValueError, match="normalize=false"):
        PI0Agent(weights=str(bare))
    PI0Agent(weights=str(bare), normalize=False)


def test_pi0_served_over_the_wire_matches_in_process(weights) -> None:
    obs = _obs(2, seed=5)
    local = PI0Agent(weights=str(weights))
    local.configure("calvin", {})
    want = local.act(obs, [0, 1])
    with PolicyServer(PI0Agent(weights=str(weights)), port=0, log_every_s=0) as server:
        client = OpenPIClientAgent(port=server.port, request_timeout_s=30, benchmarks={"calvin": {"keys": {
            "image": "observation/image", "wrist_image": "observation/wrist_image", "proprio": "observation/state",
            "language": "prompt",
        }}})
        client.configure("calvin", {})
        assert (client.chunk_size, client.execute_steps) == (10, 10)
        got = client.act(obs, [0, 1])
        client.close()
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_policy_config_instantiates(weights) -> None:
    from hydra.utils import instantiate

    agent = instantiate(compose_policy("pi0"), weights=str(weights))
    assert isinstance(agent, PI0Agent)
    agent.configure("simpler_bridge", {})
    assert agent.execute_steps == 4 and agent.act(_obs(1), [0]).shape == (1, 10, 7)
    agent.configure("calvin", {"execute_steps": 3})  # a protocol field of that name is not read any more
    assert agent.execute_steps == 10


# ---- the per-benchmark table: one copy (conf/policy/pi0.yaml), every registered benchmark ----------------------
# openpi's LIBERO client (examples/libero/main.py): both cameras, the state, LIBERO's raw gripper, replan every 5
LIBERO = {"cameras": ["image", "wrist_image"], "state": True, "gripper": "invert", "execute_steps": 5}


@pytest.fixture(scope="module")
def agent(weights) -> PI0Agent:
    return PI0Agent(weights=str(weights))


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_every_registered_benchmark_has_settings_or_a_clear_error(agent, benchmark) -> None:
    if benchmark not in agent.benchmarks:  # a benchmark registered later: the error says where to add it
        with pytest.raises(KeyError, match=rf"(?s)(?=.*\+policy\.benchmarks\.{benchmark}\.)(?=.*conf/policy/pi0\.yaml)"):
            agent.configure(benchmark, {})
        return
    if benchmark.startswith("libero_"):
        assert agent.benchmarks[benchmark] == LIBERO
    agent.configure(benchmark, {})
    assert agent.execute_steps == agent.benchmarks[benchmark]["execute_steps"]


def test_the_table_has_one_copy_and_missing_settings_are_named(weights) -> None:
    from omegaconf import OmegaConf

    import policies.pi0

    assert benchmark_keyed_constants(policies.pi0) == []  # no Python copy to drift from the YAML
    agent = PI0Agent(weights=str(weights), benchmarks={"libero_goal": {"execute_steps": 2}, "new": {"cameras": ["image"]}})
    table = OmegaConf.to_container(compose_policy("pi0").benchmarks)
    assert agent.benchmarks["libero_goal"] == {**table["libero_goal"], "execute_steps": 2}  # merged field by field
    assert {k: v for k, v in agent.benchmarks.items() if k not in ("libero_goal", "new")} == {
        k: v for k, v in table.items() if k != "libero_goal"
    }
    with pytest.raises(ValueError, match=r"policy\.benchmarks\.new\.gripper must be one of"):  # no default sign
        agent.configure("new", {})
    agent.benchmarks["new"]["gripper"] = "contract"
    with pytest.raises(ValueError, match=r"set policy\.benchmarks\.new\.execute_steps"):
        agent.configure("new", {})
    with pytest.raises(KeyError, match="no settings for benchmark 'metaworld'"):
        agent.configure("metaworld", {})
