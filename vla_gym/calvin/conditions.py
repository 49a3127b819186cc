"""The evaluation chains and the seeded scene state of each chain's initial condition.

A condition names the LED, lightbulb, slider, drawer and where each block is (table / slider_left /
slider_right). Block spots on the table and every block's yaw are drawn from ``numpy.random.RandomState``
seeded with a 32-bit FNV-1 hash (initial value 0) of the UTF-16-LE text of ``str(condition.values())``, so
one condition always yields the same scene.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla_gym.calvin.assets import sequences_file

SEQUENCES_FILE = "eval_sequences.json"
CHAIN_LENGTH = 5

TABLE_SPOTS = (
    (5.00000896e-02, -1.20000177e-01, 4.59990009e-01),
    (2.29995412e-01, -1.19995140e-01, 4.59990010e-01),
)
SLIDER_SPOTS = {
    "slider_left": (-2.40851662e-01, 9.24044687e-02, 4.60990009e-01),
    "slider_right": (7.03416330e-02, 9.24044687e-02, 4.60990009e-01),
}
YAW_RANGE = (np.pi / 2 - np.pi / 8, np.pi / 2 + np.pi / 8)
SLIDER_LEFT_POS = 0.28
DRAWER_OPEN_POS = 0.22
SWITCH_ON_POS = 0.088
CONDITION_KEYS = ("led", "lightbulb", "slider", "drawer", "red_block", "blue_block", "pink_block", "grasped")

_FNV_PRIME = 16777619


def fnv1_32(data: bytes) -> int:
    """32-bit FNV-1 (multiply, then xor) starting from 0 rather than the usual offset basis."""
    h = 0
    for byte in data:
        h = ((h * _FNV_PRIME) & 0xFFFFFFFF) ^ byte
    return h


def condition_seed(condition: Mapping[str, Any]) -> int:
    return fnv1_32(str(condition.values()).encode("utf-16-le"))


def check_condition(condition: Mapping[str, Any]) -> None:
    missing = [k for k in CONDITION_KEYS if k not in condition]
    if missing:
        raise KeyError(f"initial condition lacks {missing}; it needs the keys {list(CONDITION_KEYS)}")
    places = ("table", "slider_left", "slider_right")
    for block in ("red_block", "blue_block", "pink_block"):
        if condition[block] not in places:
            raise ValueError(f"initial condition {block}={condition[block]!r}: must be one of {places}")
    if condition["slider"] not in ("left", "right") or condition["drawer"] not in ("open", "closed"):
        raise ValueError(f"initial condition slider must be left|right and drawer open|closed, got {dict(condition)}")
    if condition["led"] not in (0, 1) or condition["lightbulb"] not in (0, 1):
        raise ValueError(f"initial condition led and lightbulb must be 0 or 1, got {dict(condition)}")


def scene_obs_for(condition: Mapping[str, Any]) -> np.ndarray:
    """The 24-d scene state of ``condition`` (key order matters for the seed: keep the file's order)."""
    check_condition(condition)
    rng = np.random.RandomState(condition_seed(condition))
    table = [np.array(s) for s in TABLE_SPOTS]
    rng.shuffle(table)
    obs = np.zeros(24)
    obs[0] = SLIDER_LEFT_POS if condition["slider"] == "left" else 0.0
    obs[1] = DRAWER_OPEN_POS if condition["drawer"] == "open" else 0.0
    obs[3] = SWITCH_ON_POS if condition["lightbulb"] == 1 else 0.0
    obs[4] = condition["lightbulb"]
    obs[5] = condition["led"]
    red, blue, pink = condition["red_block"], condition["blue_block"], condition["pink_block"]
    obs[6:9] = SLIDER_SPOTS[red] if red in SLIDER_SPOTS else table[0]
    obs[11] = rng.uniform(*YAW_RANGE)
    if blue in SLIDER_SPOTS:
        obs[12:15] = SLIDER_SPOTS[blue]
    else:
        obs[12:15] = table[1] if red == "table" else table[0]
    obs[17] = rng.uniform(*YAW_RANGE)
    obs[18:21] = SLIDER_SPOTS[pink] if pink in SLIDER_SPOTS else table[1]
    obs[23] = rng.uniform(*YAW_RANGE)
    return obs


def load_chains(data_dir: Path) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """The evaluation chains in file order: (initial condition, five task names).

    The folder's own chains file if it has one, else the generated one (see ``assets.sequences_file``).
    """
    path = sequences_file(data_dir)
    with open(path) as f:
        raw = json.load(f)
    chains = []
    for k, (condition, tasks) in enumerate(raw):
        check_condition(condition)
        if len(tasks) != CHAIN_LENGTH:
            raise ValueError(f"{path}: chain {k} has {len(tasks)} tasks, expected {CHAIN_LENGTH}")
        chains.append((dict(condition), tuple(tasks)))
    return chains
