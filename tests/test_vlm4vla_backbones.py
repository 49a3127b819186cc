"""VLM4VLA backbones on tiny random models: shapes, ranges, batch invariance, prompts, checkpoints."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from vlm_fixtures import FAMILY_NAMES, INSTRUCTIONS, images, tiny_agent

from policies.vlm4vla import VLM4VLAAgent
from policies.vlm4vla.checkpoint import CheckpointError, paper_state_dict, read_checkpoint


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_forward_shapes_ranges_and_batch_invariance(family: str) -> None:
    agent = tiny_agent(family)
    imgs = images(4)
    arm, grip = agent.predict(imgs, INSTRUCTIONS)
    assert arm.shape == (4, 10, 6) and grip.shape == (4, 10)
    assert np.all(np.abs(arm) <= 1.0) and np.all(np.isfinite(grip))
    # rows differ (the image and the instruction reach the action token)
    assert np.abs(arm[0] - arm[1]).max() > 1e-6
    singles = [agent.predict(imgs[i : i + 1], INSTRUCTIONS[i : i + 1]) for i in range(4)]
    arm1 = np.concatenate([s[0] for s in singles])
    grip1 = np.concatenate([s[1] for s in singles])
    assert np.abs(arm - arm1).max() <= 1e-5
    assert np.abs(grip - grip1).max() <= 1e-5
    # the hidden state itself is batch-invariant too (the head could hide differences through tanh)
    with torch.no_grad():
        tok = agent.model.action_token
        hb = agent.backbone.encode(imgs, INSTRUCTIONS, tok)
        hs = torch.cat([agent.backbone.encode(imgs[i : i + 1], INSTRUCTIONS[i : i + 1], tok) for i in range(4)])
    assert (hb - hs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", ["paligemma", "paligemma2"])
def test_paligemma_attention_is_causal(family: str) -> None:
    """transformers 5 makes PaliGemma's text model bidirectional by default; the policy forces causal."""
    agent = tiny_agent(family)
    lm = agent.backbone.vlm.model.language_model
    embeds = torch.randn(1, 12, agent.backbone.hidden_size, generator=torch.Generator().manual_seed(1))
    changed = embeds.clone()
    changed[0, -1] += 5.0
    mask = torch.ones(1, 12, dtype=torch.long)
    with torch.no_grad():
        a = lm(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        b = lm(inputs_embeds=changed, attention_mask=mask).last_hidden_state
    assert torch.allclose(a[0, :-1], b[0, :-1], atol=1e-6)  # the past never sees the future
    assert not torch.allclose(a[0, -1], b[0, -1])


@pytest.mark.parametrize("family", ["qwen25vl", "qwen3vl"])
def test_qwen_prompt_uses_real_token_ids(family: str) -> None:
    backbone = tiny_agent(family).backbone
    ids = backbone.tokenizer(backbone._prompt(3, "open the drawer"), add_special_tokens=False)["input_ids"]
    assert ids[:3] == [151644, 8948, 198]  # <|im_start|> system \n
    start = ids.index(151652)
    assert ids[start + 1 : start + 5] == [151655, 151655, 151655, 151653]
    assert ids[-3:] == [151644, 77091, 198]  # <|im_start|> assistant \n
    # 224 -> 448: Qwen2.5-VL 256 image tokens (patch 14), Qwen3-VL 196 (patch 16)
    batch = backbone.processor(images=list(images(1)), return_tensors="pt")
    count = int(batch["image_grid_thw"].prod(-1)[0]) // 4
    assert count == (256 if family == "qwen25vl" else 196)


def test_qwen3_deepstack_is_on_by_default_and_changes_outputs() -> None:
    agent = tiny_agent("qwen3vl")
    assert agent.deepstack and agent.backbone.options["deepstack"] is True
    imgs = images(1)
    on = agent.predict(imgs, INSTRUCTIONS[:1])[0]
    agent.backbone.options["deepstack"] = False
    try:
        off = agent.predict(imgs, INSTRUCTIONS[:1])[0]
    finally:
        agent.backbone.options["deepstack"] = True
    assert np.abs(on - off).max() > 1e-7
    # the MoE backbone follows the paper's RoboQwen3VLMOE, which feeds no deepstack features
    assert tiny_agent("qwen3vlmoe").deepstack is False


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_checkpoint_in_paper_layout_reproduces_outputs(family: str, tmp_path) -> None:
    source = tiny_agent(family, seed=3)
    imgs = images(2, seed=5)
    expected = source.predict(imgs, INSTRUCTIONS[:2])
    legacy = family in ("paligemma", "paligemma2", "qwen25vl")  # written with pre-4.52 key names
    state = paper_state_dict(source.model, family, legacy=legacy)
    assert all(k.startswith("model.") for k in state) and "model.action_token" in state
    assert "model.act_head.actions.mlp.6.weight" in state and "model.act_head.gripper.mlp.6.weight" in state
    if family == "paligemma":
        assert any(k.startswith("model.backbone.language_model.model.") for k in state)
    path = tmp_path / "step_1.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 1}, path)
    fresh = VLM4VLAAgent(family, model_path="tiny", checkpoint=str(path), device="cpu", dtype="float32",
                         benchmark="calvin", seed=11)
    got = fresh.predict(imgs, INSTRUCTIONS[:2])
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    # load_weights (sweeps) swaps weights in place
    other = tiny_agent(family, seed=0)
    before = other.predict(imgs, INSTRUCTIONS[:2])[0]
    other_state = paper_state_dict(other.model, family)
    other.load_weights(str(path))
    np.testing.assert_array_equal(other.predict(imgs, INSTRUCTIONS[:2])[0], expected[0])
    other.model.load_state_dict({k.removeprefix("model."): v for k, v in other_state.items()})
    np.testing.assert_array_equal(other.predict(imgs, INSTRUCTIONS[:2])[0], before)


def test_checkpoint_errors_are_clear(tmp_path) -> None:
    agent = tiny_agent("kosmos2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        read_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not a VLM4VLA checkpoint"):
        read_checkpoint(other)
    state = paper_state_dict(agent.model, "kosmos2")
    state.pop("model.act_head.mlp.0.bias")
    state["model.backbone.extra_layer.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError, match=r"1 missing .*act_head\.mlp\.0\.bias.*1 unexpected .*extra_layer"):
        agent.load_weights(str(bad))
    # a pickled object that weights_only refuses (Lightning's hyper-parameters): named, with the way out
    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": paper_state_dict(agent.model, "kosmos2"), "hparams": argparse.Namespace(lr=0.1)}, pickled)
    with pytest.raises(CheckpointError, match="trusted_checkpoint"):
        read_checkpoint(pickled)
    assert "backbone.text_model.model.embed_tokens.weight" in read_checkpoint(pickled, trusted=True)


def test_missing_base_model_folder_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        VLM4VLAAgent("qwen3vl", model_path=str(tmp_path / "missing"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        VLM4VLAAgent("qwen3vl", model_path=str(tmp_path / "empty"), device="cpu")
    with pytest.raises(KeyError, match="unknown VLM4VLA backbone family"):
        VLM4VLAAgent("llava", model_path="tiny", device="cpu")
