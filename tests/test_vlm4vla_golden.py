"""VLM4VLA policies against the paper's own code: golden recordings of tiny random-weight models.

``<data>/vlm4vla/golden/<family>/`` holds, per backbone family, the base-model folder files (no weights), a
bare state dict (CALVIN head, chunk 10) and the converted container of the paper's ``transform_ckpt.py``
(LIBERO/Bridge head, chunk 4) beside the training configs, three image + instruction inputs, and what the
original evaluation wrappers returned. Every family folder found there is checked (any other family recorded
in the same layout is picked up too), building the agent as a user's command does:
``policy=<config> policy.model_path=<base folder> policy.checkpoint=<file>`` (Hydra compose + instantiate).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from vla_gym.bridge.rotation import euler_xyz_to_axis_angle

GOLDEN = SHARED_DATA / "vlm4vla" / "golden"
SHARED_FAMILIES = ("qwen25vl", "paligemma", "kosmos2")  # recorded and shared; others may be added
CONFIG_OF = {"qwen25vl": "qwen25vl3b", "qwen3vl": "qwen3vl2b", "qwen3vlmoe": "qwen3vl30b-a3b",
             "paligemma": "paligemma", "paligemma2": "paligemma2", "kosmos2": "kosmos2"}
TOL = 1e-5


def _families() -> list[str]:
    found = sorted(p.name for p in GOLDEN.glob("*") if (p / "outputs.npz").is_file()) if GOLDEN.is_dir() else []
    return sorted(set(found) | set(SHARED_FAMILIES))


def compose_policy(overrides: list[str]):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@functools.cache
def golden_agent(family: str, checkpoint: str, *extra: str):
    """The agent exactly as ``policy=<family config> policy.model_path=... policy.checkpoint=...`` builds it."""
    from hydra.utils import instantiate

    folder = GOLDEN / family
    if not (folder / "outputs.npz").is_file():
        raise FileNotFoundError(f"golden recording {folder} is missing (VLA_GYM_TEST_DATA={SHARED_DATA})")
    cfg = compose_policy([
        f"policy={CONFIG_OF[family]}",
        f"policy.model_path={folder / 'base_model_files'}",
        f"policy.checkpoint='{folder / checkpoint}'",
        "policy.device=cpu",
        *extra,
    ])
    return instantiate(cfg.policy)


@functools.cache
def recording(family: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    inputs = np.load(GOLDEN / family / "inputs.npz")
    outputs = np.load(GOLDEN / family / "outputs.npz")
    return {k: inputs[k] for k in inputs.files}, {k: outputs[k] for k in outputs.files}


def _close(got: np.ndarray, want: np.ndarray, what: str) -> float:
    diff = float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())
    assert diff <= TOL, f"{what}: max abs difference {diff:.3g} > {TOL}"
    return diff


def _run(agent, benchmark: str, images: np.ndarray, language: list[str], batched: bool) -> np.ndarray:
    agent.configure(benchmark, {})
    if batched:
        agent.reset(range(len(images)))
        return agent.act({"image": images, "language": language}, list(range(len(images))))
    rows = []
    for i in range(len(images)):
        agent.reset([0])
        rows.append(agent.act({"image": images[i : i + 1], "language": language[i : i + 1]}, [0])[0])
    return np.stack(rows)


@pytest.mark.parametrize("family", _families())
def test_calvin_from_the_bare_state_dict(family: str) -> None:
    agent = golden_agent(family, "calvin_state_dict.pt")
    inputs, out = recording(family)
    images, language = inputs["images"], [str(s) for s in inputs["instructions"]]
    assert agent.dtype == torch.float32 and agent.chunk_size == 10
    assert agent.train_config is not None and agent.train_config.chunk == 10
    arm, grip = agent.predict(images, language)
    _close(arm, out["calvin_raw_arm"], "raw arm")
    _close(grip, out["calvin_raw_gripper"][..., 0], "gripper logits")
    with torch.inference_mode():
        hidden = agent.backbone.encode(images, language, agent.model.action_token)
    _close(hidden.numpy(), out["calvin_action_hidden"], "hidden state at the action token")
    for batched in (True, False):
        act = _run(agent, "calvin", images, language, batched)
        assert act.shape == (3, 10, 7)
        _close(act, out["calvin_final"], f"CALVIN actions (batched={batched})")


@pytest.mark.parametrize("family", _families())
def test_libero_and_bridge_from_the_converted_container(family: str) -> None:
    # The recording fed the model the image as is (the paper's LIBERO crop is checked on its own below),
    # hence center_crop=false: the paper's --center_crop switch.
    agent = golden_agent(family, "libero_bridge_converted.pt", "policy.center_crop=false")
    inputs, out = recording(family)
    images, language = inputs["images"], [str(s) for s in inputs["instructions"]]
    assert agent.chunk_size == 4
    for i in range(3):  # batch 1, raw outputs
        arm, grip = agent.predict(images[i : i + 1], language[i : i + 1])
        _close(arm[0], out["chunk4_raw_arm"][i], f"raw arm, input {i}")
        _close(grip[0], out["chunk4_raw_gripper"][i, :, 0], f"gripper logits, input {i}")
    for batched in (True, False):
        libero = _run(agent, "libero_long", images, language, batched)
        _close(libero[..., :6], out["libero_final"][..., :6], f"LIBERO arm (batched={batched})")
        # the paper's wrapper flips the gripper for the simulator; the env contract is +1 open
        np.testing.assert_array_equal(libero[..., 6], -out["libero_final"][..., 6])
        bridge = _run(agent, "simpler_bridge", images, language, batched)
        _close(bridge[..., :6], out["bridge_final"][..., :6], f"Bridge arm (batched={batched})")
        _close(bridge[..., :3], out["bridge_env_world_vector"], "Bridge world vector")
        axangle = np.stack([[euler_xyz_to_axis_angle(a[3:6].astype(np.float64)) for a in row] for row in bridge])
        _close(axangle, out["bridge_env_rot_axangle"], "Bridge axis-angle (as the env converts it)")
        np.testing.assert_array_equal(bridge[..., 6], out["bridge_env_gripper"][..., 0])


def test_container_loads_weights_only_and_names_its_config() -> None:
    from policies.vlm4vla.checkpoint import read_checkpoint_file

    path = GOLDEN / "kosmos2" / "libero_bridge_converted.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)  # the paper's container, safe loading
    assert "state_dict" in raw and "hyper_parameters" in raw
    state, container = read_checkpoint_file(path)
    assert "act_head.gripper.mlp.6.weight" in state and "hyper_parameters" in container
    agent = golden_agent("kosmos2", "libero_bridge_converted.pt", "policy.center_crop=false")
    assert Path(agent.train_config.source).name in ("policy_config_libero.json", "policy_config_bridge.json")
    # the head's widths come from the checkpoint (64 -> 32 -> 16 here; the paper's 1024 -> 512 -> 256)
    spec = agent.model.act_head.spec
    assert spec.width == 64 and spec.tower == (64, 32, 16) and spec.chunk == 4


def test_libero_crop_reproduces_the_papers_tensorflow_crop_bitwise() -> None:
    from policies.vlm4vla.preprocess import centre_crop_resize

    data = np.load(GOLDEN / "libero_crop" / "libero_crop_golden.npz")
    ours = centre_crop_resize(data["inputs"])
    assert ours.shape == data["outputs"].shape == (10, 224, 224, 3)
    np.testing.assert_array_equal(ours, data["outputs"])
