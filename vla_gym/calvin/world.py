"""One PyBullet world of scene D: client set-up, load order, the reset procedure and the 30 Hz step.

Load order fixes the body ids and with them the physics: robot (0), its pedestal (1), the finger gear and the
initial joint reset, blocks red, blue, pink (2, 3, 4), table (5), plane (6).
"""

from __future__ import annotations

import pkgutil
from pathlib import Path

import numpy as np
import pybullet as p

from vla_gym.calvin.cameras import Cameras
from vla_gym.calvin.robot import EVAL_GRIPPER_OPENING, EVAL_JOINTS, PandaRobot
from vla_gym.calvin.scene import PlayTable

TIME_STEP = 1.0 / 240.0
SUBSTEPS = 8  # 30 Hz control
GRAVITY = (0.0, 0.0, -9.8)


class CalvinWorld:
    """Owns one DIRECT client. ``reset_to`` makes the state depend only on its arguments (see ``_rebuild``)."""

    def __init__(self, data_dir: Path, *, renderer: str = "tiny", button_mode: str = "1431a46",
                 camera_sizes: dict[str, int] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.cid = p.connect(p.DIRECT)
        self._egl_plugin = -1
        if renderer == "egl":
            egl = pkgutil.get_loader("eglRenderer")
            if egl is None:
                raise RuntimeError("renderer 'egl' needs PyBullet's eglRenderer plugin, which is not installed")
            self._egl_plugin = p.loadPlugin(egl.get_filename(), "_eglRendererPlugin", physicsClientId=self.cid)
            if self._egl_plugin < 0:
                raise RuntimeError("renderer 'egl': loading PyBullet's EGL plugin failed (no EGL device?)")
        self.renderer = renderer
        self.button_mode = button_mode
        self.camera_sizes = camera_sizes
        self.robot = PandaRobot(self.cid)
        self.table = PlayTable(self.cid, button_mode)
        self.cameras: Cameras | None = None
        self._build()
        self._pristine = True  # nothing has happened since the last build

    def _build(self) -> None:
        """Empty world, parameters, bodies in the original's order. Fresh contact caches by construction."""
        cid = self.cid
        p.resetSimulation(physicsClientId=cid)
        p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=cid)
        p.setTimeStep(TIME_STEP, physicsClientId=cid)
        p.resetSimulation(physicsClientId=cid)
        p.setGravity(*GRAVITY, physicsClientId=cid)
        self.robot = PandaRobot(cid)
        self.table = PlayTable(cid, self.button_mode)
        self.robot.load(self.data_dir)
        self.table.load_blocks(self.data_dir)
        self.table.load_table(self.data_dir)
        self.table.load_plane(self.data_dir)
        self.cameras = Cameras(cid, self.robot.uid, self.renderer, self.camera_sizes)

    def reset_to(self, scene_obs: np.ndarray, joints: np.ndarray | None = None,
                 gripper_opening: float = EVAL_GRIPPER_OPENING) -> None:
        """Fresh world, then scene state, robot joints + motor targets + target pose, then one physics step.

        Rebuilding (rather than resetting states in place) also drops the contact caches of earlier episodes,
        so the outcome depends only on the arguments.
        """
        if not self._pristine:
            self._build()
        self._pristine = False
        self.table.reset(scene_obs)
        self.robot.reset(np.asarray(EVAL_JOINTS if joints is None else joints), gripper_opening / 2)
        p.stepSimulation(physicsClientId=self.cid)

    def step(self, action: np.ndarray) -> None:
        self.robot.apply_action(action)
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=self.cid)
        self.table.step()

    def close(self) -> None:
        if self.cid >= 0:
            if self._egl_plugin >= 0:
                p.unloadPlugin(self._egl_plugin, physicsClientId=self.cid)
            p.disconnect(physicsClientId=self.cid)
            self.cid = -1
