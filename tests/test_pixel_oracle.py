"""The pixel oracle on CALVIN: a small CNN trained with a fixed recipe from the scripted expert's
demonstrations of ``lift_red_block_table`` (the red block lies on one of two table spots with a random yaw,
next to other blocks, so the policy must find it in the image) must solve held-out scenes, and must fail once
the image path or the gripper mapping is broken on purpose. Everything runs through the harness.

The checkpoint is cached (``$VLA_GYM_CACHE/pixel_oracle_<key>``, key = digest of the setting, recipe, protocol
and torch version) and regenerated when missing: recording and training take about 3 of this test's minutes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from policies.pixel.oracle import BROKEN, OracleSetting, checkpoint, evaluate_checkpoint, successes
from vla_gym.calvin.assets import cache_dir

SETTING = OracleSetting()
HELD_OUT = 10  # held-out episodes scored intact
BROKEN_EPISODES = 6  # held-out episodes scored per broken condition
FLOOR = 8  # intact: at least 8/10 (measured 10/10)
CEILINGS = {"flip_ud": 1, "rot90": 1, "swap_rb": 3, "invert_gripper": 0}  # of 6 (measured: see NOTES)


@pytest.fixture(scope="module")
def oracle(shared_data: Path) -> tuple[Path, Path]:
    data = shared_data / "calvin"
    ckpt, _ = checkpoint(SETTING, data, cache_dir() / f"torch-{torch.__version__}")
    return data, ckpt


def _records(folder: Path) -> dict[int, tuple[bool, int]]:
    rows = [json.loads(line) for line in (folder / "episodes.jsonl").read_text().splitlines()]
    return {r["episode"]: (r["success"], r["steps"]) for r in rows}


def test_pixel_oracle_solves_held_out_scenes_and_collapses_when_broken(oracle, tmp_path: Path) -> None:
    data, ckpt = oracle
    intact = evaluate_checkpoint(SETTING, data, ckpt, tmp_path / "intact", (), HELD_OUT)
    assert intact["episodes"] == HELD_OUT and intact["overall"]["errors"] == 0
    assert successes(intact) >= FLOOR, f"intact image path: {successes(intact)}/{HELD_OUT} < {FLOOR}"
    scores = {}
    for name in BROKEN:
        metrics = evaluate_checkpoint(SETTING, data, ckpt, tmp_path / name, (name,), BROKEN_EPISODES)
        assert metrics["episodes"] == BROKEN_EPISODES and metrics["overall"]["errors"] == 0
        scores[name] = successes(metrics)
    print(f"pixel oracle: intact {successes(intact)}/{HELD_OUT}, broken (of {BROKEN_EPISODES}) {scores}")
    over = {name: wins for name, wins in scores.items() if wins > CEILINGS[name]}
    assert not over, f"broken paths scored above their ceilings {CEILINGS}: {scores}"
    # the same checkpoint on the same episodes gives the same outcomes (one worker instead of two)
    again = evaluate_checkpoint(SETTING, data, ckpt, tmp_path / "again", (), 3, num_envs=1)
    first = _records(tmp_path / "intact")
    assert again["episodes"] == 3
    for episode, outcome in _records(tmp_path / "again").items():
        assert first[episode] == outcome
