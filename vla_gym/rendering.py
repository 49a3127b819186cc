"""Headless OpenGL backend selection for MuJoCo-based envs.

MuJoCo (and robosuite on top of it) read ``MUJOCO_GL`` / ``PYOPENGL_PLATFORM`` once, when their rendering
modules are first imported, so the choice must be made before that and cannot change afterwards in the
same process. Order of precedence: the ``gl`` argument, then the ``MUJOCO_GL`` environment variable, then
automatic: EGL if an EGL context can be created here, else OSMesa. Both give bitwise-identical images on
Mesa's software rasteriser; EGL uses the GPU where one is present.
"""

from __future__ import annotations

import os
import subprocess
import sys

HEADLESS_BACKENDS = ("egl", "osmesa")
KNOWN_BACKENDS = (*HEADLESS_BACKENDS, "glfw", "glx")

# Modules whose import freezes the backend choice for the rest of the process.
_FREEZING_MODULES = ("robosuite.utils.binding_utils", "mujoco.egl", "mujoco.osmesa", "OpenGL.GL")

_PROBE = (
    "import mujoco\n"
    "m = mujoco.MjModel.from_xml_string('<mujoco/>')\n"
    "r = mujoco.Renderer(m, 8, 8)\n"
    "r.render()\n"
    "r.close()\n"
)

_INSTALL_HINT = (
    "install Mesa's EGL (Debian/Ubuntu: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1) "
    "or OSMesa (apt-get install libosmesa6), or set MUJOCO_GL to a backend that works here"
)


def probe_backend(backend: str, timeout: float = 60.0) -> bool:
    """True if MuJoCo can render one tiny frame with ``backend`` (checked in a child process, which is the
    only way to try a backend without freezing this process's choice)."""
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    try:
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _frozen_backend() -> str | None:
    """The backend already fixed in this process, if rendering modules were imported."""
    if any(name in sys.modules for name in _FREEZING_MODULES):
        return os.environ.get("MUJOCO_GL", "").lower() or None
    return None


def select_gl_backend(gl: str | None = None) -> str:
    """Choose and export the MuJoCo GL backend; returns it (``"egl"`` or ``"osmesa"``, or an explicit one).

    Raises ``ValueError`` for an unknown backend or for one that conflicts with the backend this process
    already uses, and ``RuntimeError`` when no headless backend works here.
    """
    requested = (gl or os.environ.get("MUJOCO_GL") or "").lower().strip() or None
    if requested is not None and requested not in KNOWN_BACKENDS:
        raise ValueError(f"unknown GL backend {requested!r}: use one of {KNOWN_BACKENDS} (or leave it unset)")
    frozen = _frozen_backend()
    if frozen is not None:
        if requested is not None and requested != frozen:
            raise ValueError(
                f"GL backend {requested!r} requested, but this process already renders with {frozen!r}: "
                "the backend can only be chosen before the first env is built (set MUJOCO_GL at start-up)"
            )
        return frozen
    if requested is None:
        for candidate in HEADLESS_BACKENDS:
            if probe_backend(candidate):
                requested = candidate
                break
        else:
            raise RuntimeError(
                f"no headless OpenGL backend works here (tried {HEADLESS_BACKENDS}): {_INSTALL_HINT}"
            )
    os.environ["MUJOCO_GL"] = requested
    # PyOpenGL must load the same platform library as MuJoCo's context (glfw/glx use the default).
    if requested in HEADLESS_BACKENDS:
        os.environ["PYOPENGL_PLATFORM"] = requested
    return requested
