"""From LIBERO's raw observation dict to the contract's: upright images at 224, optional proprio.

Image transform (documented, and pinned by the fidelity test): ``img[::-1, ::-1]`` (LIBERO renders upside
down; a 180-degree rotation makes it upright, as LIBERO-trained policies saw it), then, when the render size
differs from 224, ``cv2.resize(..., interpolation=INTER_AREA)``.

Proprio (``proprio=True``), float32 (8,), openpi's LIBERO state layout: end-effector position (3, metres,
world frame), end-effector orientation as an axis-angle vector (3, radians; from robosuite's xyzw
quaternion, angle ``2 acos(w)``), gripper finger joint positions (2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_gym.images import resize_square

PROPRIO_DIM = 8


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate LIBERO's render by ``rotation`` degrees (0 or 180); returns a contiguous copy."""
    return np.ascontiguousarray(image[::-1, ::-1] if rotation == 180 else image)


def resize(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    return resize_square(image, size, interpolation)  # a copy: never alias another observation key's array


def quat_xyzw_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Axis-angle vector (axis * angle) of a unit quaternion in (x, y, z, w) order.

    The angle is ``2 * acos(w)`` in [0, 2 pi] with no sign canonicalisation, the convention of the LIBERO
    datasets' state vectors (so policies trained on them see the values they were trained on).
    """
    q = np.asarray(quat, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    sin_half = np.sqrt(1.0 - w * w)
    if sin_half < 1e-12:
        return np.zeros(3)
    return q[:3] * (2.0 * np.arccos(w)) / sin_half


def proprio(raw_obs: dict[str, Any]) -> np.ndarray:
    return np.concatenate(
        [
            raw_obs["robot0_eef_pos"],
            quat_xyzw_to_axis_angle(raw_obs["robot0_eef_quat"]),
            raw_obs["robot0_gripper_qpos"],
        ]
    ).astype(np.float32)
