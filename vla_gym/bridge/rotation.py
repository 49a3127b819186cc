"""Rotation conversions for the Bridge action: roll/pitch/yaw deltas -> axis-angle (rotation vector).

Bridge data stores the end-effector rotation delta as roll, pitch, yaw about the fixed x, y, z axes (the
static "sxyz" convention: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)); ManiSkill's end-effector controller takes an
axis-angle vector. SimplerEnv's policy adapters do this same conversion before every step.
"""

from __future__ import annotations

import numpy as np


def euler_xyz_to_quat(rpy: np.ndarray) -> np.ndarray:
    """Quaternion (w, x, y, z) of static-axes roll/pitch/yaw."""
    roll, pitch, yaw = (float(v) for v in np.asarray(rpy, dtype=np.float64).reshape(3))
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.array(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ]
    )


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, angle in [0, pi]) of a quaternion (w, x, y, z)."""
    q = np.asarray(quat, dtype=np.float64).reshape(4)
    q = q / np.linalg.norm(q)
    if q[0] < 0:  # q and -q are the same rotation; this picks the angle in [0, pi]
        q = -q
    w, xyz = q[0], q[1:]
    s = np.linalg.norm(xyz)
    angle = 2.0 * np.arctan2(s, w)
    if s < 1e-12:
        return 2.0 * xyz  # small-angle limit: angle/s -> 2
    return xyz * (angle / s)


def euler_xyz_to_axis_angle(rpy: np.ndarray) -> np.ndarray:
    """Roll/pitch/yaw (radians, static x-y-z axes) -> axis-angle vector (radians)."""
    return quat_to_axis_angle(euler_xyz_to_quat(rpy))


def quat_to_euler_xyz(quat: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_xyz_to_quat` (pitch in [-pi/2, pi/2])."""
    w, x, y, z = (float(v) for v in np.asarray(quat, dtype=np.float64).reshape(4))
    roll = np.arctan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = np.arcsin(np.clip(2 * (w * y - z * x), -1.0, 1.0))
    yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return np.array([roll, pitch, yaw])
