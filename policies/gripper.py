"""Gripper conventions of external policies, mapped to the env contract's +1 open / -1 close."""

from __future__ import annotations

import numpy as np

#: contract: already +1 open / -1 close; invert: -1 open / +1 close (LIBERO's raw actions);
#: zero_one: 1 open / 0 closed (Bridge data), mapped linearly to [-1, 1]
GRIPPER_MAPPINGS = ("contract", "invert", "zero_one")


def check_gripper_mapping(mapping: str, where: str = "gripper") -> str:
    if mapping not in GRIPPER_MAPPINGS:
        raise ValueError(f"{where} must be one of {GRIPPER_MAPPINGS}, got {mapping!r}")
    return mapping


def map_gripper(actions: np.ndarray, mapping: str) -> np.ndarray:
    """A float32 copy of ``actions`` (..., 7) whose last column is converted from ``mapping`` to the contract."""
    check_gripper_mapping(mapping)
    out = np.array(actions, dtype=np.float32, copy=True)
    if mapping == "invert":
        out[..., 6] = -out[..., 6]
    elif mapping == "zero_one":
        out[..., 6] = 2.0 * out[..., 6] - 1.0
    return out
