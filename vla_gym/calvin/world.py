"""One PyBullet world of scene D: client set-up, load order, the reset procedure and the 30 Hz step.

Load order fixes the body ids and with them the physics: robot (0), its pedestal (1), the finger gear and the
initial joint reset, blocks red, blue, pink (2, 3, 4), table (5), plane (6).
"""

from __future__ import annotations

import os
import pkgutil
from pathlib import Path

import numpy as np
import pybullet as p

from vla_gym.calvin.cameras import NATIVE_SIZES, Cameras
from vla_gym.calvin.robot import EVAL_GRIPPER_OPENING, EVAL_JOINTS, PandaRobot
from vla_gym.calvin.scene import PlayTable

TIME_STEP = 1.0 / 240.0
SUBSTEPS = 8  # 30 Hz control
GRAVITY = (0.0, 0.0, -9.8)


RENDERER_STATES = ("fresh", "warm")
# PyBullet's EGL renderer draws its first two images after start-up without shadows (measured on the recorded
# traces: the original's images right after its reset, a static and a gripper render, are shadow-free; every
# later one has shadows). "warm" spends those two on 1x1 renders, as a long-running original evaluation has
# by its second chain.
EGL_SHADOWLESS_RENDERS = 2
EGL_BACKGROUND = (178, 178, 204)  # what EGL draws where nothing is hit (TinyRenderer: white)
EGL_HELP = (
    "PyBullet's EGL renderer needs an EGL driver: on Debian/Ubuntu `apt-get install libegl1 libegl-mesa0 "
    "libgl1-mesa-dri libgbm1` (scripts/setup.sh does it; Mesa llvmpipe renders on the CPU), or NVIDIA's EGL on a "
    "GPU machine. Or pick a TinyRenderer protocol (gym.make('VLA/Calvin-v0', protocol='tiny')), whose images "
    "differ from the published pipeline's"
)


class EGLUnavailableError(RuntimeError):
    """No EGL context could be made for PyBullet's EGL renderer."""


def _egl_plugin_path() -> str:
    egl = pkgutil.get_loader("eglRenderer")
    if egl is None:
        raise EGLUnavailableError(f"PyBullet's eglRenderer plugin is not installed. {EGL_HELP}")
    return egl.get_filename()  # type: ignore[union-attr]


_EGL_PID: int | None = None  # the process that started EGL (inherited by forked children)


def _connect(renderer: str, window: int) -> tuple[int, int]:
    """A DIRECT client (the original's EGL set-up: window as large as the largest camera); plugin id or -1."""
    global _EGL_PID
    if renderer != "egl":
        return p.connect(p.DIRECT), -1
    if _EGL_PID is not None and _EGL_PID != os.getpid():
        raise EGLUnavailableError(
            "this process was forked from one that had already started EGL, and EGL does not survive a fork "
            "(the child would hang). Start env processes with the 'spawn' or 'forkserver' method (e.g. "
            "gym.make_vec(..., vectorization_mode='async', vector_kwargs={'context': 'spawn'})), or do not reset "
            "a CALVIN env in the parent before forking"
        )
    _EGL_PID = os.getpid()
    cid = p.connect(p.DIRECT, options=f"--width={window} --height={window}")
    plugin = p.loadPlugin(_egl_plugin_path(), "_eglRendererPlugin", physicsClientId=cid)
    if plugin < 0:
        p.disconnect(physicsClientId=cid)
        raise EGLUnavailableError(f"loading PyBullet's EGL plugin failed. {EGL_HELP}")
    return cid, plugin


def check_egl() -> None:
    """Raise :class:`EGLUnavailableError` unless PyBullet really renders through EGL here (no silent fallback).

    Checked in a throwaway client, so the renders it costs do not count against a world's renderer state.
    """
    cid, plugin = _connect("egl", 8)
    try:
        view = p.computeViewMatrix((0, 0, 10), (0, 0, 20), (0, 1, 0), physicsClientId=cid)
        proj = p.computeProjectionMatrixFOV(fov=10, aspect=1.0, nearVal=0.01, farVal=1.0, physicsClientId=cid)
        pixels = p.getCameraImage(1, 1, view, proj, renderer=p.ER_BULLET_HARDWARE_OPENGL, physicsClientId=cid)[2]
        rgb = tuple(int(v) for v in np.asarray(pixels, dtype=np.uint8).reshape(-1)[:3])
    finally:
        p.unloadPlugin(plugin, physicsClientId=cid)
        p.disconnect(physicsClientId=cid)
    if rgb != EGL_BACKGROUND:
        raise EGLUnavailableError(f"PyBullet did not render through EGL (background {rgb}, expected {EGL_BACKGROUND}). {EGL_HELP}")


_EGL_CHECKED = False


def _check_egl_once() -> None:
    global _EGL_CHECKED
    if not _EGL_CHECKED:
        check_egl()
        _EGL_CHECKED = True


class CalvinWorld:
    """Owns one DIRECT client. ``reset_to`` makes the state depend only on its arguments (see ``reset_to``).

    ``renderer_state`` (EGL only): "fresh" renders every episode as the original renders the first episode after
    its start-up (each reset gets a new client and EGL context); "warm" as it renders every later episode of a
    long-running evaluation (shadows from the first image on).
    """

    def __init__(self, data_dir: Path, *, renderer: str = "tiny", button_mode: str = "1431a46",
                 camera_sizes: dict[str, int] | None = None, renderer_state: str = "fresh") -> None:
        if renderer_state not in RENDERER_STATES:
            raise ValueError(f"renderer_state must be one of {RENDERER_STATES}, got {renderer_state!r}")
        self.data_dir = Path(data_dir)
        self.renderer = renderer
        self.renderer_state = renderer_state
        self.button_mode = button_mode
        self.camera_sizes = camera_sizes
        self._window = max((camera_sizes or NATIVE_SIZES).values())
        if renderer == "egl":
            _check_egl_once()
        self.cid, self._egl_plugin = _connect(renderer, self._window)
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
            if self.renderer == "egl":  # a new EGL context: its render count restarts as in a fresh process
                self._disconnect()
                self.cid, self._egl_plugin = _connect(self.renderer, self._window)
            self._build()
        self._pristine = False
        if self.renderer == "egl" and self.renderer_state == "warm":
            assert self.cameras is not None
            self.cameras.spend_renders_until(EGL_SHADOWLESS_RENDERS)
        self.table.reset(scene_obs)
        self.robot.reset(np.asarray(EVAL_JOINTS if joints is None else joints), gripper_opening / 2)
        p.stepSimulation(physicsClientId=self.cid)

    def observe_images(self, gripper: bool) -> dict[str, np.ndarray]:
        """The static image (and the gripper image): rendered in the original's order. The original renders
        both cameras at every observation; without the gripper camera, EGL's render count is kept as if it
        had been rendered, so shadows appear from the same image on."""
        assert self.cameras is not None
        images = {"static": self.cameras.static()}
        if gripper:
            images["gripper"] = self.cameras.gripper()
        elif self.renderer == "egl":
            self.cameras.spend_renders_until(EGL_SHADOWLESS_RENDERS)
        return images

    def step(self, action: np.ndarray) -> None:
        self.robot.apply_action(action)
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=self.cid)
        self.table.step()

    def _disconnect(self) -> None:
        if self._egl_plugin >= 0:
            p.unloadPlugin(self._egl_plugin, physicsClientId=self.cid)
            self._egl_plugin = -1
        p.disconnect(physicsClientId=self.cid)
        self.cid = -1

    def close(self) -> None:
        if self.cid >= 0:
            self._disconnect()
