"""The pixel policy's parts without a simulator: perturbations, the trainer's determinism and checkpoints,
the agent's preprocessing and output mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.checkpoints import find_checkpoints
from policies.perturb import PerturbedAgent, check_perturbations, perturb_actions, perturb_images
from policies.pixel.agent import PixelAgent
from policies.pixel.train import Recipe, load_demos, train
from tasks.plan import EpisodeKey, select


def test_perturbations_do_what_they_say() -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.testing.assert_array_equal(perturb_images(images, ["flip_ud"])[:, 0], images[:, 3])
    np.testing.assert_array_equal(perturb_images(images, ["swap_rb"])[..., 0], images[..., 2])
    rotated = perturb_images(images, ["rot90"])
    np.testing.assert_array_equal(rotated[:, 0, :], images[:, :, 3])  # counter-clockwise: last column on top
    np.testing.assert_array_equal(perturb_images(images, ["invert_gripper"]), images)
    chunks = np.ones((2, 3, 7), dtype=np.float32)
    flipped = perturb_actions(chunks, ["invert_gripper"])
    assert (flipped[..., 6] == -1).all() and (flipped[..., :6] == 1).all() and (chunks[..., 6] == 1).all()
    with pytest.raises(ValueError, match="unknown perturbation"):
        check_perturbations(["mirror"])


def test_perturbed_agent_wraps_any_agent() -> None:
    agent = PerturbedAgent({"_target_": "policies.noop.NoopAgent"}, perturb=["invert_gripper"])
    agent.configure("calvin", {})
    obs = {"image": np.zeros((1, 8, 8, 3), np.uint8), "language": ["x"]}
    out = agent.act(obs, [0])
    assert out.shape[-1] == 7 and agent.chunk_size == agent.inner.chunk_size


def test_held_out_selection() -> None:
    plan = [EpisodeKey(k, 0, "t", k) for k in (3, 10, 12, 40, 41, 90)]
    assert [key.index for key in select(plan, episodes_from=12, episodes_per_task=2)] == [12, 40]


def write_dataset(folder: Path, episodes: int = 6, steps: int = 12, size: int = 16) -> None:
    """A small dataset in harness.record's format: the block's column in the image sets the action."""
    rng = np.random.RandomState(0)
    entries = []
    (folder / "episodes").mkdir(parents=True)
    for k in range(episodes):
        column = int(rng.randint(0, size - 2))
        image = np.zeros((steps, size, size, 3), np.uint8)
        image[:, 4:8, column : column + 2, 0] = 255
        actions = np.zeros((steps, 7), np.float32)
        actions[:, 0] = column / size - 0.5
        actions[:, 6] = np.where(np.arange(steps) < steps // 2, 1.0, -1.0)
        meta = {"episode": k, "success": True, "steps": steps}
        np.savez_compressed(folder / "episodes" / f"episode_{k:06d}.npz", image=image, actions=actions,
                            language=np.array(["lift the block"] * steps), task=np.array(["t"] * steps),
                            meta=np.array(json.dumps(meta)))  # fmt: skip
        entries.append({"episode": k, "task": "t", "success": True, "steps": steps,
                        "file": f"episodes/episode_{k:06d}.npz"})  # fmt: skip
    index = {"benchmark": "toy", "protocol": {}, "protocol_digest": "0" * 16, "image_size": size, "env_kwargs": {},
             "episodes": entries}  # fmt: skip
    (folder / "dataset.json").write_text(json.dumps(index))


RECIPE = Recipe(steps=6, batch_size=4, save_every=3, chunk=4, execute_steps=2, width=4, hidden=16, shift=1)


def test_training_is_bitwise_reproducible_and_sweepable(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data")
    demos = load_demos(tmp_path / "data", chunk=4)
    assert demos.images.shape == (72, 16, 16, 3) and demos.targets.shape == (72, 4, 7)
    # the chunk after the last step is padded with the last action
    np.testing.assert_array_equal(demos.targets[11], np.repeat(demos.targets[11][:1], 4, axis=0))
    first = train(tmp_path / "data", tmp_path / "a", RECIPE, log=False)
    again = train(tmp_path / "data", tmp_path / "b", RECIPE, log=False)
    other = train(tmp_path / "data", tmp_path / "c", Recipe(**{**RECIPE.to_dict(), "seed": 1}), log=False)
    assert [p.name for p in first] == ["step=3.pt", "step=6.pt"]
    for a, b in zip(first, again, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert first[-1].read_bytes() != other[-1].read_bytes()
    found, skipped = find_checkpoints(tmp_path / "a")
    assert [c.step for c in found] == [3, 6] and skipped == []
    header = json.loads((tmp_path / "a" / "recipe.json").read_text())
    assert header["recipe_digest"] == RECIPE.digest and header["dataset_digest"] == demos.digest


def test_agent_maps_the_network_output(tmp_path: Path) -> None:
    write_dataset(tmp_path / "data")
    (checkpoint,) = train(tmp_path / "data", tmp_path / "run", Recipe(**{**RECIPE.to_dict(), "save_every": 6}),
                          log=False)  # fmt: skip
    agent = PixelAgent(str(checkpoint), chunk_size=4, execute_steps=2)
    agent.configure("toy", {})
    obs = {"image": np.zeros((3, 224, 224, 3), np.uint8), "language": ["lift the block"] * 3}
    out = agent.act(obs, [0, 1, 2])
    assert out.shape == (3, 4, 7) and out.dtype == np.float32 and set(np.unique(out[..., 6])) <= {-1.0, 1.0}
    inverted = PixelAgent(str(checkpoint), chunk_size=4, execute_steps=2, perturb=["invert_gripper"])
    np.testing.assert_array_equal(inverted.act(obs, [0, 1, 2])[..., 6], -out[..., 6])
    with pytest.raises(ValueError, match="chunks of 4"):
        PixelAgent(str(checkpoint), chunk_size=8)
    with pytest.raises(RuntimeError, match="no weights"):
        PixelAgent().act(obs, [0])
