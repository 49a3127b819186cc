"""A small motion library shared by the scripted experts.

- :class:`ActionScale`: how a benchmark's delta action maps to metres and radians (and how its controller
  clips), with :func:`pose_action` turning a pose error into a 7-d contract action.
- Rotation helpers (numpy only, deterministic): quaternions (wxyz and xyzw), rotation matrices, axis-angle
  and extrinsic-xyz Euler angles (``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``, PyBullet's and Bridge's rpy).
- A tiny skill state machine: a plan is a list of :class:`Phase` (move towards a target pose with a given
  gripper command until converged, a condition holds or a step budget runs out); skills (``move_to``,
  ``grasp``, ``lift``, ``place``, ``push``, ``turn``, ``press``, ``pull`` for open/close articulations) are
  factories returning phases that share one skill name, which is what ``stage``/``failure`` report.

Targets are callables of a :class:`PhaseContext` (the planner's world snapshot plus the end-effector pose
now and at the phase's start), so a target can follow a moving object or stay relative to where the phase
began.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

GRIPPER_OPEN = 1.0
GRIPPER_CLOSE = -1.0
ROTATION_FORMS = ("axis_angle", "euler_xyz")


# ---------------------------------------------------------------------------------------------- scaling
@dataclasses.dataclass(frozen=True)
class ActionScale:
    """A benchmark's delta-action units.

    ``pos_unit`` metres and ``rot_unit`` radians per action unit; ``limit`` the per-component bound the
    controller clips to (``None``: it does not clip); ``rotation``: ``"axis_angle"`` (the rotation vector of
    ``R_target @ R_current.T``, world frame: robosuite OSC) or ``"euler_xyz"`` (difference of extrinsic xyz
    Euler angles, wrapped to (-pi, pi]: controllers that add the delta to the current Euler angles).
    """

    pos_unit: float
    rot_unit: float
    limit: float | None = 1.0
    rotation: str = "axis_angle"

    def __post_init__(self) -> None:
        if self.pos_unit <= 0 or self.rot_unit <= 0:
            raise ValueError(f"pos_unit and rot_unit must be > 0, got {self.pos_unit}, {self.rot_unit}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0 or None, got {self.limit}")
        if self.rotation not in ROTATION_FORMS:
            raise ValueError(f"rotation must be one of {ROTATION_FORMS}, got {self.rotation!r}")


#: robosuite 1.4 OSC_POSE (LIBERO): input [-1, 1] -> output 0.05 m / 0.5 rad, axis-angle delta
LIBERO_OSC = ActionScale(pos_unit=0.05, rot_unit=0.5, limit=1.0, rotation="axis_angle")


@dataclasses.dataclass(frozen=True)
class Gains:
    """Proportional gains and per-step caps of the pose servo (metres / radians per step)."""

    pos: float = 1.0
    rot: float = 1.0
    max_pos_step: float | None = None
    max_rot_step: float | None = None


def rotation_error(current: np.ndarray, target: np.ndarray, form: str = "axis_angle") -> np.ndarray:
    """The (3,) rotation that takes ``current`` to ``target`` (3x3 matrices) in the given action form."""
    if form == "axis_angle":
        return mat_to_axis_angle(target @ current.T)
    if form == "euler_xyz":
        return wrap_angle(mat_to_euler_xyz(target) - mat_to_euler_xyz(current))
    raise ValueError(f"rotation form must be one of {ROTATION_FORMS}, got {form!r}")


def _cap(vec: np.ndarray, cap: float | None) -> np.ndarray:
    if cap is None:
        return vec
    norm = float(np.linalg.norm(vec))
    return vec * (cap / norm) if norm > cap else vec


def pose_action(
    cur_pos: np.ndarray,
    cur_rot: np.ndarray,
    tgt_pos: np.ndarray,
    tgt_rot: np.ndarray | None,
    gripper: float,
    scale: ActionScale,
    gains: Gains = Gains(),
) -> np.ndarray:
    """One contract action ``[dpos(3), drot(3), gripper]`` servoing towards the target pose.

    The error is multiplied by the gains, capped to the per-step maxima (by norm, so the direction is kept),
    divided by the benchmark's units and clipped to its controller's limit (the controller would clip the
    same way). ``tgt_rot=None`` leaves the orientation alone (zero rotation).
    """
    dpos = _cap(gains.pos * (np.asarray(tgt_pos, dtype=np.float64) - cur_pos), gains.max_pos_step)
    if tgt_rot is None:
        drot = np.zeros(3)
    else:
        drot = _cap(gains.rot * rotation_error(cur_rot, tgt_rot, scale.rotation), gains.max_rot_step)
    action = np.concatenate([dpos / scale.pos_unit, drot / scale.rot_unit, [float(gripper)]])
    if scale.limit is not None:
        action[:6] = np.clip(action[:6], -scale.limit, scale.limit)
    return action


# ---------------------------------------------------------------------------------------------- rotations
def quat_wxyz_to_mat(q: Sequence[float]) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def quat_xyzw_to_mat(q: Sequence[float]) -> np.ndarray:
    x, y, z, w = q
    return quat_wxyz_to_mat((w, x, y, z))


def mat_to_quat_wxyz(m: np.ndarray) -> np.ndarray:
    """Unit quaternion (w >= 0) of a rotation matrix (Shepperd's method)."""
    m = np.asarray(m, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    out = np.asarray(q) / np.linalg.norm(q)
    return -out if out[0] < 0 else out


def mat_to_quat_xyzw(m: np.ndarray) -> np.ndarray:
    w, x, y, z = mat_to_quat_wxyz(m)
    return np.array([x, y, z, w])


def quat_mul_wxyz(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def quat_conj_wxyz(q: Sequence[float]) -> np.ndarray:
    w, x, y, z = q
    return np.array([w, -x, -y, -z])


def axis_angle_to_mat(rotvec: Sequence[float]) -> np.ndarray:
    """Rodrigues' formula."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * (kx @ kx)


def mat_to_axis_angle(m: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, angle in [0, pi]) of a rotation matrix."""
    q = mat_to_quat_wxyz(m)
    sin_half = float(np.linalg.norm(q[1:]))
    if sin_half < 1e-12:
        return np.zeros(3)
    angle = 2.0 * math.atan2(sin_half, q[0])
    return q[1:] / sin_half * angle


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def euler_xyz_to_mat(euler: Sequence[float]) -> np.ndarray:
    """Extrinsic x-y-z (roll, pitch, yaw): ``Rz(yaw) @ Ry(pitch) @ Rx(roll)``."""
    roll, pitch, yaw = euler
    return rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)


def mat_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_xyz_to_mat`, pitch in [-pi/2, pi/2]."""
    m = np.asarray(m, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -m[2, 0])))
    if abs(m[2, 0]) < 1.0 - 1e-9:
        roll = math.atan2(m[2, 1], m[2, 2])
        yaw = math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: put everything into yaw
        roll = 0.0
        yaw = math.atan2(-m[0, 1], m[1, 1])
    return np.array([roll, pitch, yaw])


def wrap_angle(angle: Any) -> Any:
    """Wrap angles (scalar or array) to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def yaw_of(m: np.ndarray) -> float:
    """Heading of a rotation's x axis in the world xy plane."""
    return math.atan2(m[1, 0], m[0, 0])


def rotation_angle(m: np.ndarray) -> float:
    return float(np.linalg.norm(mat_to_axis_angle(m)))


# ---------------------------------------------------------------------------------------------- skills
@dataclasses.dataclass
class PhaseContext:
    """What a phase's target and conditions see: the planner's world snapshot and the end-effector pose."""

    world: Any
    eef_pos: np.ndarray
    eef_rot: np.ndarray
    start_pos: np.ndarray  # end-effector pose when the phase began
    start_rot: np.ndarray
    steps: int  # steps taken in this phase so far


Target = tuple[np.ndarray, "np.ndarray | None"]
TargetFn = Callable[[PhaseContext], Target]
Condition = Callable[[PhaseContext], bool]


@dataclasses.dataclass
class Phase:
    """One servo segment of a skill.

    Runs until the pose is within ``pos_tol``/``rot_tol`` (after at least ``min_steps``) or ``until`` holds;
    after ``max_steps`` it fails the skill unless ``timeout_ok``. ``check``, when given, must hold when the
    phase ends or the skill fails. ``gains`` overrides the machine's servo gains.
    """

    skill: str
    target: TargetFn
    gripper: float
    max_steps: int = 100
    min_steps: int = 0
    pos_tol: float = 0.01
    rot_tol: float = 0.1
    until: Condition | None = None
    check: Condition | None = None
    timeout_ok: bool = False
    gains: Gains | None = None


class SkillMachine:
    """Runs a list of phases in order; ``stage`` is the running skill, ``failure`` the skill that failed."""

    def __init__(self, scale: ActionScale, gains: Gains = Gains(), phases: Sequence[Phase] = ()) -> None:
        self.scale = scale
        self.gains = gains
        self.phases: list[Phase] = list(phases)
        self.index = 0
        self.failure: str | None = None
        self._steps = 0
        self._start: tuple[np.ndarray, np.ndarray] | None = None
        self._gripper = GRIPPER_OPEN

    @property
    def done(self) -> bool:
        return self.index >= len(self.phases)

    @property
    def stage(self) -> str:
        if self.failure is not None:
            return self.failure
        return "done" if self.done else self.phases[self.index].skill

    def extend(self, phases: Sequence[Phase]) -> None:
        self.phases.extend(phases)

    def replace_remaining(self, phases: Sequence[Phase]) -> None:
        """Drop the phases not yet finished (and any failure) and continue with ``phases`` (re-planning)."""
        self.phases = self.phases[: self.index] + list(phases)
        self.failure = None
        self._steps = 0
        self._start = None

    def hold(self) -> np.ndarray:
        """Stay still with the last gripper command (what a finished or failed plan returns)."""
        out = np.zeros(7)
        out[6] = self._gripper
        return out

    def act(self, world: Any, eef_pos: np.ndarray, eef_rot: np.ndarray) -> np.ndarray:
        """The next action; advances through phases that are already satisfied (at most one per call)."""
        eef_pos = np.asarray(eef_pos, dtype=np.float64)
        eef_rot = np.asarray(eef_rot, dtype=np.float64)
        for _ in range(2):  # a finished phase hands over to the next within the same step
            if self.failure is not None or self.done:
                return self.hold()
            phase = self.phases[self.index]
            if self._start is None:
                self._start = (eef_pos.copy(), eef_rot.copy())
                self._steps = 0
            ctx = PhaseContext(world, eef_pos, eef_rot, self._start[0], self._start[1], self._steps)
            tgt_pos, tgt_rot = phase.target(ctx)
            if self._finished(phase, ctx, tgt_pos, tgt_rot):
                if phase.check is not None and not phase.check(ctx):
                    self.failure = phase.skill
                    return self.hold()
                self.index += 1
                self._start = None
                continue
            if self._steps >= phase.max_steps:
                if not phase.timeout_ok or (phase.check is not None and not phase.check(ctx)):
                    self.failure = phase.skill
                    return self.hold()
                self.index += 1
                self._start = None
                continue
            self._steps += 1
            self._gripper = float(phase.gripper)
            return pose_action(eef_pos, eef_rot, tgt_pos, tgt_rot, phase.gripper, self.scale, phase.gains or self.gains)
        return self.hold()

    def _finished(self, phase: Phase, ctx: PhaseContext, tgt_pos: np.ndarray, tgt_rot: np.ndarray | None) -> bool:
        if ctx.steps < phase.min_steps:
            return False
        if phase.until is not None:
            return bool(phase.until(ctx))
        if float(np.linalg.norm(np.asarray(tgt_pos) - ctx.eef_pos)) > phase.pos_tol:
            return False
        return tgt_rot is None or rotation_angle(tgt_rot @ ctx.eef_rot.T) <= phase.rot_tol


# ---- skill factories: each returns the phases of one named skill ----------------------------------------
def const(pos: Sequence[float], rot: np.ndarray | None = None) -> TargetFn:
    """A fixed target pose."""
    p = np.asarray(pos, dtype=np.float64)
    return lambda ctx: (p, rot)


def relative(offset: Sequence[float], rot: np.ndarray | None = None) -> TargetFn:
    """The phase's start position plus ``offset`` (world frame)."""
    off = np.asarray(offset, dtype=np.float64)
    return lambda ctx: (ctx.start_pos + off, rot)


def offset(target: TargetFn, delta: Sequence[float]) -> TargetFn:
    """``target`` shifted by ``delta`` (world frame)."""
    d = np.asarray(delta, dtype=np.float64)

    def fn(ctx: PhaseContext) -> Target:
        pos, rot = target(ctx)
        return np.asarray(pos) + d, rot

    return fn


def move_to(skill: str, target: TargetFn, gripper: float, **phase_kw: Any) -> list[Phase]:
    return [Phase(skill, target, gripper, **phase_kw)]


def hold_gripper(skill: str, gripper: float, steps: int, check: Condition | None = None) -> list[Phase]:
    """Stay where the phase began for ``steps`` steps while the gripper opens or closes."""
    return [
        Phase(skill, relative((0, 0, 0)), gripper, max_steps=steps, min_steps=steps, pos_tol=math.inf,
              rot_tol=math.inf, check=check)
    ]


def grasp(
    skill: str,
    target: TargetFn,
    *,
    approach_height: float = 0.08,
    close_steps: int = 15,
    check: Condition | None = None,
    approach_tol: float = 0.01,
    descend_tol: float = 0.008,
    max_steps: int = 120,
) -> list[Phase]:
    """Approach above ``target`` (gripper open), descend onto it, close; ``check`` confirms the grasp."""
    return [
        Phase(skill, offset(target, (0, 0, approach_height)), GRIPPER_OPEN, max_steps=max_steps, pos_tol=approach_tol),
        Phase(skill, target, GRIPPER_OPEN, max_steps=max_steps, pos_tol=descend_tol),
        *hold_gripper(skill, GRIPPER_CLOSE, close_steps, check=check),
    ]


def lift(
    skill: str, height: float, rot: np.ndarray | None = None, *, check: Condition | None = None,
    max_steps: int = 80, pos_tol: float = 0.02,
) -> list[Phase]:
    """Raise the closed gripper by ``height`` from where the phase starts."""
    return [Phase(skill, relative((0, 0, height), rot), GRIPPER_CLOSE, max_steps=max_steps, pos_tol=pos_tol,
                  check=check)]


def place(
    skill: str,
    target: TargetFn,
    *,
    approach_height: float = 0.08,
    release_steps: int = 10,
    retreat_height: float = 0.08,
    check: Condition | None = None,
    approach_tol: float = 0.015,
    descend_tol: float = 0.01,
    max_steps: int = 150,
) -> list[Phase]:
    """Carry to above ``target`` (closed), lower onto it, open, retreat upwards; ``check`` after release."""
    return [
        Phase(skill, offset(target, (0, 0, approach_height)), GRIPPER_CLOSE, max_steps=max_steps, pos_tol=approach_tol),
        Phase(skill, target, GRIPPER_CLOSE, max_steps=max_steps, pos_tol=descend_tol),
        *hold_gripper(skill, GRIPPER_OPEN, release_steps),
        Phase(skill, relative((0, 0, retreat_height)), GRIPPER_OPEN, max_steps=60, pos_tol=0.02, timeout_ok=True,
              check=check),
    ]


def push(
    skill: str, start: TargetFn, end: TargetFn, *, gripper: float = GRIPPER_CLOSE, until: Condition | None = None,
    check: Condition | None = None, max_steps: int = 120, pos_tol: float = 0.01, gains: Gains | None = None,
) -> list[Phase]:
    """Go to ``start``, then sweep to ``end`` (or until ``until`` holds)."""
    return [
        Phase(skill, start, gripper, max_steps=max_steps, pos_tol=pos_tol),
        Phase(skill, end, gripper, max_steps=max_steps, pos_tol=pos_tol, until=until, check=check, gains=gains),
    ]


def press(
    skill: str, point: TargetFn, *, depth: float = 0.02, approach_height: float = 0.05,
    until: Condition | None = None, check: Condition | None = None, max_steps: int = 80,
) -> list[Phase]:
    """Approach above ``point``, push ``depth`` below it (or until ``until``), back off upwards."""
    return [
        Phase(skill, offset(point, (0, 0, approach_height)), GRIPPER_CLOSE, max_steps=max_steps, pos_tol=0.01),
        Phase(skill, offset(point, (0, 0, -depth)), GRIPPER_CLOSE, max_steps=max_steps, pos_tol=0.005, until=until,
              timeout_ok=until is not None),
        Phase(skill, relative((0, 0, approach_height)), GRIPPER_CLOSE, max_steps=max_steps, pos_tol=0.02,
              timeout_ok=True, check=check),
    ]


def turn(
    skill: str, angle: float, *, gripper: float = GRIPPER_CLOSE, until: Condition | None = None,
    check: Condition | None = None, max_steps: int = 80, rot_tol: float = 0.05,
) -> list[Phase]:
    """Rotate the end effector by ``angle`` about the world z axis from where the phase starts."""

    def target(ctx: PhaseContext) -> Target:
        return ctx.start_pos, rot_z(angle) @ ctx.start_rot

    return [Phase(skill, target, gripper, max_steps=max_steps, pos_tol=0.02, rot_tol=rot_tol, until=until,
                  check=check, timeout_ok=until is not None)]


def pull(
    skill: str, handle: TargetFn, direction: Sequence[float], distance: float, *, grip: bool = True,
    approach: Sequence[float] = (0, 0, 0.06), close_steps: int = 12, until: Condition | None = None,
    check: Condition | None = None, max_steps: int = 150, gains: Gains | None = None,
) -> list[Phase]:
    """Open/close an articulation: reach ``handle`` (from ``handle + approach``), optionally grip it, move
    ``distance`` along ``direction`` (or until ``until`` holds), release and back off along ``approach``."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    grip_cmd = GRIPPER_CLOSE if grip else GRIPPER_OPEN
    phases = [
        Phase(skill, offset(handle, approach), GRIPPER_OPEN, max_steps=max_steps, pos_tol=0.01),
        Phase(skill, handle, GRIPPER_OPEN if grip else grip_cmd, max_steps=max_steps, pos_tol=0.008),
    ]
    if grip:
        phases += hold_gripper(skill, GRIPPER_CLOSE, close_steps)
    phases.append(
        Phase(skill, relative(d * distance), grip_cmd, max_steps=max_steps, pos_tol=0.01, until=until,
              timeout_ok=until is not None, gains=gains)
    )
    if grip:
        phases += hold_gripper(skill, GRIPPER_OPEN, close_steps)
    phases.append(Phase(skill, relative(approach), GRIPPER_OPEN, max_steps=60, pos_tol=0.02, timeout_ok=True,
                        check=check))
    return phases
