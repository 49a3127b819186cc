"""harness.record: demonstrations through the harness as a documented dataset (CALVIN, scripted expert)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hydra import compose, initialize_config_module

from harness.record import DATASET_FIELDS, FORMAT, episode_path, record
from policies.experts.rollout import run_expert_episode

TASK = "lift_red_block_table"


def _cfg(shared_data: Path, out: Path, *extra: str):
    with initialize_config_module("conf", version_base="1.3"):
        return compose("record", overrides=[
            "env=calvin", "env.protocol=vlm4vla_static", "policy=expert", f"+env.protocol_overrides.tasks=[{TASK}]",
            f"+env.kwargs.data_dir={shared_data / 'calvin'}", f"output_dir={out}", "progress=false", *extra,
        ])  # fmt: skip


def test_record_writes_the_episodes_as_executed_and_resumes(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "demos"
    index = record(_cfg(shared_data, out, "episodes_per_task=2", "num_envs=2", "record.image_size=32"))
    assert index["format"] == FORMAT and index["fields"] == DATASET_FIELDS
    assert index["num_episodes"] == 2 and index["image_size"] == 32
    assert index["protocol"]["tasks"] == [TASK] and index["protocol"]["name"] == "vlm4vla_static"
    first = index["episodes"][0]
    with np.load(out / first["file"]) as data:
        meta = json.loads(str(data["meta"]))
        image, actions, language = data["image"], data["actions"], data["language"]
        assert set(data.files) == {"image", "actions", "language", "task", "meta"}
    assert meta["episode"] == first["episode"] and meta["task"] == TASK
    assert meta["protocol_digest"] == index["protocol_digest"] and meta["success"] == first["success"]
    assert image.shape == (meta["steps"], 32, 32, 3) and image.dtype == np.uint8
    assert actions.shape == (meta["steps"], 7) and actions.dtype == np.float32
    assert set(language) == {"grasp and lift the red block"}

    # the actions are the ones executed: the same expert in a plain loop on the same episode takes them
    env = gym.make("VLA/Calvin-v0", data_dir=str(shared_data / "calvin"), protocol="vlm4vla_static",
                   protocol_overrides={"tasks": [TASK]})  # fmt: skip
    try:
        plain = run_expert_episode(env, first["episode"])
        np.testing.assert_array_equal(plain.actions, actions)
        assert plain.success == meta["success"]
        obs, _ = env.reset(seed=0, options={"episode": first["episode"]})
        from vla_gym.images import resize_square

        np.testing.assert_array_equal(resize_square(obs["image"], 32, "area"), image[0])
    finally:
        env.close()

    # resume: done episodes are not recorded again; one more episode is added
    stamp = episode_path(out, first["episode"]).stat().st_mtime_ns
    index = record(_cfg(shared_data, out, "episodes_per_task=3", "num_envs=1", "record.image_size=32"))
    assert index["num_episodes"] == 3
    assert episode_path(out, first["episode"]).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="image_size"):
        record(_cfg(shared_data, out, "episodes_per_task=3", "record.image_size=64"))
