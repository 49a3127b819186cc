"""CALVIN's static and gripper cameras (PyBullet view/projection matrices, RGB uint8)."""

from __future__ import annotations

import numpy as np
import pybullet as p

from vla_gym.calvin.robot import GRIPPER_CAM_LINK

STATIC_EYE = (2.871459009488717, -2.166602199425597, 2.555159848480571)
STATIC_TARGET = (-0.026242351159453392, -0.0302329882979393, 0.3920000493526459)
STATIC_UP = (0.4041403970338857, 0.22629790978217404, 0.8862616969685161)
STATIC_FOV, STATIC_NEAR, STATIC_FAR = 10.0, 0.01, 10.0
GRIPPER_FOV, GRIPPER_NEAR, GRIPPER_FAR = 75.0, 0.01, 2.0
NATIVE_SIZES = {"static": 200, "gripper": 84}

RENDERERS = {"tiny": p.ER_TINY_RENDERER, "egl": p.ER_BULLET_HARDWARE_OPENGL}


def _rgb(cid: int, size: int, view: list[float], proj: list[float], renderer: int) -> np.ndarray:
    width, height, pixels = p.getCameraImage(
        width=size, height=size, viewMatrix=view, projectionMatrix=proj, renderer=renderer,
        physicsClientId=cid,
    )[:3]
    return np.asarray(pixels, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]


class Cameras:
    """Renders the two cameras of one client at the requested sizes with the requested renderer."""

    def __init__(self, cid: int, robot_uid: int, renderer: str = "tiny", sizes: dict[str, int] | None = None) -> None:
        if renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {sorted(RENDERERS)}, got {renderer!r}")
        self.cid = cid
        self.robot_uid = robot_uid
        self.renderer = RENDERERS[renderer]
        self.sizes = dict(NATIVE_SIZES if sizes is None else sizes)
        self.renders = 0  # images rendered in this client so far
        self.static_view = p.computeViewMatrix(STATIC_EYE, STATIC_TARGET, STATIC_UP, physicsClientId=cid)
        self.static_proj = p.computeProjectionMatrixFOV(
            fov=STATIC_FOV, aspect=1.0, nearVal=STATIC_NEAR, farVal=STATIC_FAR, physicsClientId=cid
        )
        self.gripper_proj = p.computeProjectionMatrixFOV(
            fov=GRIPPER_FOV, aspect=1.0, nearVal=GRIPPER_NEAR, farVal=GRIPPER_FAR, physicsClientId=cid
        )

    def spend_renders_until(self, count: int) -> None:
        """1x1 renders of the static view until ``count`` renders were made in this client: they advance the
        renderer's state (see ``world.EGL_SHADOWLESS_RENDERS``) but show nothing."""
        while self.renders < count:
            self.renders += 1
            _rgb(self.cid, 1, self.static_view, self.static_proj, self.renderer)

    def static(self) -> np.ndarray:
        self.renders += 1
        return _rgb(self.cid, self.sizes["static"], self.static_view, self.static_proj, self.renderer)

    def gripper(self) -> np.ndarray:
        """Looks along the camera link's +y with the link's -z as up."""
        pos, orn = p.getLinkState(self.robot_uid, GRIPPER_CAM_LINK, physicsClientId=self.cid)[:2]
        rot = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)
        view = p.computeViewMatrix(pos, np.asarray(pos) + rot[:, 1], -rot[:, 2], physicsClientId=self.cid)
        self.renders += 1
        return _rgb(self.cid, self.sizes["gripper"], view, self.gripper_proj, self.renderer)
