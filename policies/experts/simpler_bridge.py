"""Scripted privileged expert for SimplerEnv-Bridge (WidowX): the four pick-and-place tasks.

One :class:`Planner` per episode. It reads the source and target object poses from
``env.unwrapped.privileged_state()`` (world frame, quaternions w, x, y, z), and runs: approach above the
source (turning the gripper so that its fingers close across the object's narrow side), descend, close,
lift, carry above the target, lower, open, back off upwards, then hold still until the episode's last step
(Bridge scores success at the final step).

Action units: ``[dx, dy, dz]`` in metres in the robot's base frame, ``[droll, dpitch, dyaw]`` in radians,
gripper +1 open / -1 close. ManiSkill's controller keeps a target pose and adds each delta to it, so, as on
CALVIN, the planner steers that target: it starts from the TCP at the episode's first step and adds every
delta it sends (deterministic; no wind-up while the arm lags).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from policies.experts.motion import (
    GRIPPER_CLOSE,
    GRIPPER_OPEN,
    ActionScale,
    Gains,
    Phase,
    PhaseContext,
    SkillMachine,
    Target,
    TargetFn,
    quat_wxyz_to_mat,
)

#: the contract's Bridge units: metres and radians, no clipping by the controller (its limits are 1 m / 90 deg)
BRIDGE_DELTA = ActionScale(pos_unit=1.0, rot_unit=1.0, limit=None, rotation="axis_angle")
GAINS = Gains(pos=1.0, rot=1.0, max_pos_step=0.04)
SLOW = Gains(pos=1.0, rot=1.0, max_pos_step=0.02)
MAX_YAW_STEP = 0.25  # radians per step while turning the gripper

# Heights (metres, world z) relative to the objects' centres
ABOVE = 0.07  # approach and carry height above the source / target
GRASP_DZ = 0.0  # TCP (between the fingertips) at the source's centre height when closing
PLACE_CLEARANCE = 0.015  # release this far above resting on the target
CLOSE_STEPS = 4
OPEN_STEPS = 3
LONG_SIDE_RATIO = 1.3  # an object this much longer along y than x needs the gripper turned


@dataclasses.dataclass(frozen=True)
class BridgeView:
    """The planner's snapshot, in the robot's base frame (where actions are expressed)."""

    tcp: np.ndarray  # TCP position in the base frame
    source: np.ndarray
    target: np.ndarray
    source_size: np.ndarray  # |bbox| in the world frame at the episode's start
    target_size: np.ndarray
    base_rot: np.ndarray  # base -> world rotation
    gripper_openness: float
    grasped: bool

    @classmethod
    def from_privileged(cls, state: dict[str, Any]) -> BridgeView:
        required = ("robot_base_pose", "tcp_pose_in_base", "source_pose", "target_pose", "source_bbox_size",
                    "target_bbox_size")
        missing = [k for k in required if k not in state]
        if missing:
            raise KeyError(f"Bridge privileged state lacks {missing}; pass env.unwrapped.privileged_state() of "
                           "VLA/SimplerBridge-v0")
        base = np.asarray(state["robot_base_pose"], dtype=np.float64)
        base_p, base_r = base[:3], quat_wxyz_to_mat(base[3:7])

        def to_base(p: Any) -> np.ndarray:
            return base_r.T @ (np.asarray(p, dtype=np.float64)[:3] - base_p)

        return cls(
            tcp=np.asarray(state["tcp_pose_in_base"], dtype=np.float64)[:3],
            source=to_base(state["source_pose"]),
            target=to_base(state["target_pose"]),
            source_size=np.abs(np.asarray(state["source_bbox_size"], dtype=np.float64)),
            target_size=np.abs(np.asarray(state["target_bbox_size"], dtype=np.float64)),
            base_rot=base_r,
            gripper_openness=float(state.get("gripper_openness", 1.0)),
            grasped=bool(state.get("grasped", False)),
        )


def _view(ctx: PhaseContext) -> BridgeView:
    return ctx.world  # type: ignore[no-any-return]


def _arrived(target: TargetFn, tol: float) -> Any:
    def cond(ctx: PhaseContext) -> bool:
        pos, _ = target(ctx)
        return float(np.linalg.norm(pos - ctx.eef_pos)) < 1e-3 and float(np.linalg.norm(pos - _view(ctx).tcp)) < tol

    return cond


def _reach(skill: str, target: TargetFn, gripper: float, tol: float, max_steps: int,
           gains: Gains | None = None) -> Phase:
    return Phase(skill, target, gripper, max_steps=max_steps, until=_arrived(target, tol), timeout_ok=True,
                 gains=gains)


def _hold(skill: str, gripper: float, steps: int) -> Phase:
    return Phase(skill, lambda ctx: (ctx.start_pos, None), gripper, max_steps=steps, min_steps=steps,
                 pos_tol=math.inf, rot_tol=math.inf)


def plan(view: BridgeView) -> tuple[list[Phase], float]:
    """The phases of one pick-and-place and the gripper yaw turn (radians) to make before grasping."""
    size = view.source_size
    turn = math.pi / 2 if size[1] > LONG_SIDE_RATIO * size[0] else 0.0  # fingers close along world y
    src0 = view.source.copy()
    half_src = size[2] / 2
    half_tgt = view.target_size[2] / 2

    def above_source(ctx: PhaseContext) -> Target:
        return src0 + np.array([0.0, 0.0, ABOVE]), None

    def at_source(ctx: PhaseContext) -> Target:
        return src0 + np.array([0.0, 0.0, GRASP_DZ]), None

    def lifted(ctx: PhaseContext) -> Target:
        return ctx.start_pos + np.array([0.0, 0.0, ABOVE]), None

    def carried_offset(ctx: PhaseContext) -> np.ndarray:
        return _view(ctx).source - _view(ctx).tcp  # where the held object hangs relative to the TCP

    def above_target(ctx: PhaseContext) -> Target:
        tgt = _view(ctx).target
        off = carried_offset(ctx)
        z = tgt[2] + half_tgt + half_src + ABOVE - off[2]
        return np.array([tgt[0] - off[0], tgt[1] - off[1], z]), None

    def onto_target(ctx: PhaseContext) -> Target:
        pos, _ = above_target(ctx)
        return pos - np.array([0.0, 0.0, ABOVE - PLACE_CLEARANCE]), None

    phases = [
        Phase("approach", above_source, GRIPPER_OPEN, max_steps=14, until=_arrived(above_source, 0.015),
              timeout_ok=True, min_steps=math.ceil(turn / MAX_YAW_STEP) + 1),
        _reach("grasp", at_source, GRIPPER_OPEN, tol=0.008, max_steps=6, gains=SLOW),
        _hold("grasp", GRIPPER_CLOSE, CLOSE_STEPS),
        _reach("lift", lifted, GRIPPER_CLOSE, tol=0.02, max_steps=6),
        _reach("carry", above_target, GRIPPER_CLOSE, tol=0.015, max_steps=14),
        _reach("place", onto_target, GRIPPER_CLOSE, tol=0.01, max_steps=6, gains=SLOW),
        _hold("place", GRIPPER_OPEN, OPEN_STEPS),
        _reach("retreat", lifted, GRIPPER_OPEN, tol=0.02, max_steps=5),
    ]
    return phases, turn


class Planner:
    """One Bridge episode (see the module docstring)."""

    def __init__(self, protocol: dict[str, Any]) -> None:
        self.protocol = dict(protocol)
        self._machine: SkillMachine | None = None
        self._target: np.ndarray | None = None  # the controller's target position (base frame), tracked
        self._turn = 0.0
        self._turned = 0.0

    @property
    def stage(self) -> str:
        return "start" if self._machine is None else self._machine.stage

    @property
    def failure(self) -> str | None:
        if self._machine is None:
            return None
        if self._machine.failure is not None:
            return self._machine.failure
        return None

    def act(self, obs: dict[str, Any], privileged: dict[str, Any]) -> np.ndarray:
        view = BridgeView.from_privileged(privileged)
        if self._machine is None:
            phases, self._turn = plan(view)
            self._machine = SkillMachine(BRIDGE_DELTA, GAINS, phases)
            self._target = view.tcp.copy()
        assert self._target is not None
        action = self._machine.act(view, self._target, np.eye(3))
        # turn the gripper about the vertical while it approaches (before the fingers reach the object)
        remaining = self._turn - self._turned
        if abs(remaining) > 1e-9 and self._machine.stage == "approach":
            step = float(np.clip(remaining, -MAX_YAW_STEP, MAX_YAW_STEP))
            action[3:6] = (0.0, 0.0, step)
            self._turned += step
        self._target = self._target + action[:3]
        return action.astype(np.float32)
