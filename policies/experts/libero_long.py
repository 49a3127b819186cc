"""The LIBERO-Long scripted expert: a plan built from the task's BDDL goal predicates.

Predicates handled (all LIBERO-10 goals are conjunctions of these):

- ``("in", obj, region)`` / ``("on", obj, target)``: pick ``obj`` (top-down grasp: across the short side of
  boxes, cans and books; on the rim wall of mugs and bowls; on the body of moka pots), carry it above the
  target and lower it until it is blocked or at the release height, open, retreat. While carrying, the
  servo moves the *object's* position to the goal (end effector + goal - object), so grasp offsets cancel.
- ``("turnon", stove)``: push the knob's pointer round its axis until the joint passes the "on" range.
- ``("close", drawer region | door fixture)``: push a drawer along its slide axis, or sweep a hinged door
  closed along an arc, until the joint reaches its closed range.

Goals that already hold are skipped; "turn on" runs first (the hand is free), "close" last (after what goes
inside). Actions are robosuite OSC_POSE deltas in LIBERO's data convention: [-1, 1] maps to 0.05 m and
0.5 rad (axis-angle, world frame), gripper +1 open / -1 close in the contract.

The planner reads ``LiberoLongEnv.privileged_state()`` (poses, joints, goal predicates and the scene geometry:
region sites, object boxes, joint frames); it never touches the simulator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from policies.experts import motion as m

# LIBERO's Panda hand at its home pose points down (eef z = -world z) with its fingers closing along world y.
DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
HOME_FINGER_YAW = math.pi / 2
MAX_FINGER_SPAN = 0.075  # widest thing the Panda hand can close across, with margin

# Servo steps stay under the controller's 0.05 m per unit action: a run with the full step and a gain of 1.5
# on every move (init states 0-1) lost tasks 4 and 7 (objects left the plate / basket) and fixed nothing.
GAINS = m.Gains(pos=1.0, rot=1.0, max_pos_step=0.03, max_rot_step=0.3)
SLOW = m.Gains(pos=1.0, rot=1.0, max_pos_step=0.012, max_rot_step=0.2)
# LIBERO's flat stove knob (collision boxes): ring top 13 mm above the joint anchor, fin 24 mm thick
KNOB_RADIUS = 0.028  # where along the fin the fingers push
KNOB_BEHIND = 0.039  # fingers' centre off the fin's mid-plane on the way down: 12 mm fin + 11 mm finger + 16 mm
KNOB_PUSH_HEIGHT = 0.032  # grip site above the anchor: finger bottoms (11 mm lower) clear the ring
KNOB_PUSH = 0.03  # how far ahead of the fin the pushing target stays
# open Panda fingers seen from above, for grasp clearance: outer faces from the grasp centre along the closing
# direction, and half their width across it
FINGER_REACH = 0.055
FINGER_HALF_WIDTH = 0.012
CLEAR_ENOUGH = 0.02  # a grasp this far from every neighbour stays where it is
PUSH_TILT = 0.6  # rad the fingers lean into a push (see Planner._push_rot)
MAX_ATTEMPTS = 2  # a failed goal is started over once
REQUIRED_KEYS = ("objects", "joints", "robot", "goal", "sites", "boxes", "joint_frames", "bodies")


def down(yaw: float) -> np.ndarray:
    """Gripper pointing down, fingers closing along the world direction at angle ``yaw``."""
    return m.rot_z(yaw - HOME_FINGER_YAW) @ DOWN


def _near_yaw(yaw: float, reference: float) -> float:
    """``yaw`` or ``yaw + pi`` (the same grasp), whichever turns the wrist less from ``reference``."""
    a = reference + float(m.wrap_angle(yaw - reference))
    return a - math.pi if a - reference > math.pi / 2 else a + math.pi if a - reference < -math.pi / 2 else a


# ---------------------------------------------------------------------------------------------- world views
def obj_pose(world: dict[str, Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    entry = world["objects"][name]
    return np.asarray(entry["pos"], dtype=np.float64), m.quat_wxyz_to_mat(entry["quat"])


def obj_box(world: dict[str, Any], name: str) -> dict[str, Any]:
    """World-frame view of an object's collision box: centre, the vertical half-height, top and bottom z,
    and its horizontal axes as (world direction, half-extent) pairs."""
    pos, rot = obj_pose(world, name)
    box = world["boxes"][name]
    center = pos + rot @ np.asarray(box["center"])
    half = np.asarray(box["half"])
    vertical = int(np.argmax(np.abs(rot[2, :])))
    horizontal = [(rot[:, i] * np.array([1, 1, 0]), float(half[i])) for i in range(3) if i != vertical]
    horizontal = [(d / max(np.linalg.norm(d), 1e-9), h) for d, h in horizontal]
    hz = float(half[vertical])
    return {"center": center, "hz": hz, "top": center[2] + hz, "bottom": center[2] - hz, "horizontal": horizontal,
            "pos": pos}


def eef_pose(world: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    robot = world["robot"]
    return np.asarray(robot["eef_pos"], dtype=np.float64), m.quat_wxyz_to_mat(robot["eef_quat"])


# ---------------------------------------------------------------------------------------------- grasps
def grasp_spec(world: dict[str, Any], name: str, reference_yaw: float) -> tuple[np.ndarray, float]:
    """(grasp point in the object's body frame, finger yaw in the world) for a top-down grasp of ``name``."""
    pos, rot = obj_pose(world, name)
    view = obj_box(world, name)
    base = world["robot_base"]
    (d0, h0), (d1, h1) = view["horizontal"]
    if "mug" in name or "bowl" in name:
        # Rim grasp: fingers straddle the wall on the axis without the handle, on the side nearer the robot.
        radius_dir, radius = (d0, h0) if h0 <= h1 else (d1, h1)
        centre = view["center"]
        candidates = [centre + s * radius_dir * (radius - 0.008) for s in (1.0, -1.0)]
        point = min(candidates, key=lambda p: float(np.linalg.norm(p[:2] - base[:2])))
        point[2] = view["top"] - 0.02
        yaw = math.atan2(radius_dir[1], radius_dir[0])
    elif "moka_pot" in name:
        # The handle sticks out along the longer horizontal axis: grasp the pot's upper body across the other.
        across, handle = (d0, d1) if h0 <= h1 else (d1, d0)
        long_half, short_half = max(h0, h1), min(h0, h1)
        point = view["center"] - handle * (long_half - short_half)  # pot axis, away from the handle
        point[2] = view["top"] - 0.035
        yaw = math.atan2(across[1], across[0])
    else:
        (across, short_half), (along, long_half) = ((d0, h0), (d1, h1)) if h0 <= h1 else ((d1, h1), (d0, h0))
        point = view["center"].copy()
        point[2] = view["top"] - min(0.025, view["hz"])
        if long_half - short_half > 0.01:  # a box: slide the grasp along its long side away from neighbours
            point = _clearest_grasp(world, name, point, across, along, long_half)
        yaw = math.atan2(across[1], across[0])
    return rot.T @ (point - pos), _near_yaw(yaw, reference_yaw)


def _clearest_grasp(world: dict[str, Any], name: str, point: np.ndarray, across: np.ndarray, along: np.ndarray,
                    long_half: float) -> np.ndarray:
    """The grasp point on the box's long axis whose open fingers keep furthest from other objects (the
    centre unless a neighbour is within ``CLEAR_ENOUGH`` of a finger there)."""
    def clearance(p: np.ndarray) -> float:
        fingers = [p + s * across * FINGER_REACH + t * along * FINGER_HALF_WIDTH for s in (1, -1) for t in (1, -1)]
        gaps = [_xy_gap(world, other, f) for other in world["boxes"] if other != name for f in fingers
                if obj_box(world, other)["top"] > p[2]]
        return min(gaps, default=math.inf)

    if clearance(point) >= CLEAR_ENOUGH:
        return point
    reach = max(0.0, long_half - 0.015)
    candidates = [point + along * reach * k / 4 for k in range(-4, 5)]
    return max(candidates, key=lambda p: (round(clearance(p), 3), -float(np.linalg.norm(p - point))))


def _xy_gap(world: dict[str, Any], other: str, p: np.ndarray) -> float:
    """Horizontal distance from point ``p`` to ``other``'s collision box (0 inside)."""
    pos, rot = obj_pose(world, other)
    box = world["boxes"][other]
    local = rot.T @ (p - pos) - np.asarray(box["center"])
    outside = np.maximum(np.abs(local) - np.asarray(box["half"]), 0.0)
    vertical = int(np.argmax(np.abs(rot[2, :])))
    outside[vertical] = 0.0
    return float(np.linalg.norm(outside))


class _Memory:
    """Small per-phase state for 'blocked' detection (the descent stops when the hand stops moving)."""

    def __init__(self) -> None:
        self.last_z: float | None = None
        self.still = 0

    def blocked(self, ctx: m.PhaseContext, after: int = 6) -> bool:
        z = float(ctx.eef_pos[2])
        if self.last_z is not None and abs(z - self.last_z) < 0.0008 and ctx.steps >= after:
            self.still += 1
        else:
            self.still = 0
        self.last_z = z
        return self.still >= 3


# ---------------------------------------------------------------------------------------------- the planner
class Planner:
    """LIBERO-Long expert for one episode (see the module docstring)."""

    def __init__(self, protocol: dict[str, Any]) -> None:
        self.protocol = dict(protocol)
        self.machine = m.SkillMachine(m.LIBERO_OSC, GAINS)
        self.failure: str | None = None
        self._planned = False
        self._goals: list[tuple[str, ...]] = []
        self._yaw = 0.0
        self._slot: dict[str, int] = {}  # placement slot per object when several share one target
        self._fin: float | None = None  # tracked angle of the stove knob's fin half being pushed
        self._knob_yaw: float | None = None  # finger yaw while pushing the knob
        self._next = 0  # index of the next goal to start
        self._attempts = 0  # attempts at the current goal

    @property
    def stage(self) -> str:
        return "plan" if not self._planned else self.machine.stage

    def act(self, obs: dict[str, Any], privileged: dict[str, Any]) -> np.ndarray:
        missing = [k for k in REQUIRED_KEYS if k not in privileged]
        if missing:
            raise KeyError(
                f"the LIBERO expert needs privileged keys {missing}: pass LiberoLongEnv.privileged_state() "
                "(env.unwrapped.privileged_state()), which reports the scene geometry"
            )
        if not self._planned:
            self._plan(privileged)
        if self.machine.failure is not None and self._attempts < MAX_ATTEMPTS:
            self._retry(privileged)
        if self.machine.done and self._next < len(self._goals):
            self._start_goal(privileged)
        pos, rot = eef_pose(privileged)
        action = self.machine.act(privileged, pos, rot)
        self.failure = self.machine.failure
        return action.astype(np.float32)

    # ---- planning --------------------------------------------------------------------------------------
    def _plan(self, world: dict[str, Any]) -> None:
        """Order the goals that do not hold yet; each goal's phases are built when it starts (from the
        world as it is then)."""
        self._planned = True
        self._yaw = m.yaw_of(eef_pose(world)[1] @ DOWN.T) + HOME_FINGER_YAW
        goals = [tuple(g[:-1]) for g in world["goal"] if not g[-1]]
        order = {"turnon": 0, "in": 1, "on": 1, "close": 2}
        for g in goals:
            if g[0] not in order:
                raise ValueError(f"the LIBERO expert cannot plan predicate {g[0]!r} (goal {g})")
        goals.sort(key=lambda g: order[g[0]])  # stable: BDDL order within a kind
        targets = [g[2] for g in goals if g[0] in ("in", "on")]
        for i, g in enumerate(goals):
            if g[0] in ("in", "on") and targets.count(g[2]) > 1:
                self._slot[g[1]] = sum(1 for h in goals[:i] if h[0] in ("in", "on") and h[2] == g[2])
        self._goals = goals

    def _phases(self, world: dict[str, Any], goal: tuple[str, ...]) -> list[m.Phase]:
        if goal[0] in ("in", "on"):
            return self._pick_and_place(world, goal[1], goal[2], goal[0])
        if goal[0] == "turnon":
            return self._turn_on(world, goal[1])
        return self._close(world, goal[1])

    def _start_goal(self, world: dict[str, Any]) -> None:
        goal = self._goals[self._next]
        self._next += 1
        self._attempts = 1
        phases = self._phases(world, goal)
        if self._next == len(self._goals):
            phases += m.move_to("done", lambda c: (c.eef_pos, None), m.GRIPPER_OPEN, max_steps=10_000,
                                pos_tol=-1.0, timeout_ok=True)
        self.machine.extend(phases)

    def _retry(self, world: dict[str, Any]) -> None:
        """The current goal's skill failed: back off upwards with the gripper open and start the goal over."""
        self._attempts += 1
        goal = self._goals[self._next - 1]
        phases = m.move_to("retreat", m.relative((0, 0, 0.08)), m.GRIPPER_OPEN, max_steps=30, pos_tol=0.02,
                           timeout_ok=True)
        phases += self._phases(world, goal)
        if self._next == len(self._goals):
            phases += m.move_to("done", lambda c: (c.eef_pos, None), m.GRIPPER_OPEN, max_steps=10_000,
                                pos_tol=-1.0, timeout_ok=True)
        self.machine.replace_remaining(phases)

    def _pick_and_place(self, world: dict[str, Any], obj: str, target: str, kind: str) -> list[m.Phase]:
        local, yaw = grasp_spec(world, obj, self._yaw)
        grip_rot = down(yaw)

        def grasp_point(ctx: m.PhaseContext) -> m.Target:
            pos, rot = obj_pose(ctx.world, obj)
            return pos + rot @ local, grip_rot

        start_z = float(obj_pose(world, obj)[0][2])

        def lifted(ctx: m.PhaseContext) -> bool:
            return float(obj_pose(ctx.world, obj)[0][2]) > start_z + 0.03

        pick = f"pick_{obj}"
        phases = m.grasp(pick, grasp_point, approach_height=0.10, close_steps=12, max_steps=150)
        for p in phases[:2]:
            p.rot_tol = 0.08
        phases[1].gains = SLOW
        carry_z = self._carry_height(world, obj, target)
        phases.append(m.Phase(pick, lambda c: (np.array([c.start_pos[0], c.start_pos[1], carry_z]), grip_rot),
                              m.GRIPPER_CLOSE, max_steps=100, pos_tol=0.02, check=lifted))

        place = f"place_{obj}_{kind}_{target}"
        goal_xy, release_bottom = self._goal_point(world, obj, target, kind)
        place_yaw = _near_yaw(0.0, yaw) if target.startswith("desk_caddy") else yaw
        place_rot = down(place_yaw)

        def shift_to(z_bottom: float | None) -> m.TargetFn:
            def fn(ctx: m.PhaseContext) -> m.Target:
                view = obj_box(ctx.world, obj)
                delta = np.zeros(3)
                delta[:2] = goal_xy(ctx.world) - view["pos"][:2]
                target_z = carry_z if z_bottom is None else ctx.eef_pos[2] + (z_bottom - view["bottom"])
                return np.array([ctx.eef_pos[0] + delta[0], ctx.eef_pos[1] + delta[1], target_z]), place_rot
            return fn

        memory = _Memory()
        phases += [
            m.Phase(place, shift_to(None), m.GRIPPER_CLOSE, max_steps=200, pos_tol=0.012, rot_tol=0.1),
            m.Phase(place, shift_to(release_bottom), m.GRIPPER_CLOSE, max_steps=120, pos_tol=0.006,
                    gains=SLOW, until=lambda c: _at_release(c, obj, release_bottom) or memory.blocked(c),
                    timeout_ok=True),
            *m.hold_gripper(place, m.GRIPPER_OPEN, 10),
            m.Phase(place, m.relative((0, 0, 0.10)), m.GRIPPER_OPEN, max_steps=60, pos_tol=0.02, timeout_ok=True),
        ]
        return phases

    def _carry_height(self, world: dict[str, Any], obj: str, target: str) -> float:
        """End-effector height while carrying: the object's bottom clears the target's top by 6 cm."""
        view = obj_box(world, obj)
        eef_minus_bottom = (view["top"] - min(0.025, view["hz"])) - view["bottom"]  # grasp point above bottom
        if target in world["sites"]:
            site = world["sites"][target]
            parent_top = site["pos"][2] + site["size"][2]
            for name in world["boxes"]:
                if target.startswith(name + "_"):
                    parent_top = max(parent_top, obj_box(world, name)["top"])
        else:
            parent_top = obj_box(world, target)["top"]
        return max(parent_top + 0.06, view["bottom"] + 0.10) + eef_minus_bottom

    def _goal_point(self, world: dict[str, Any], obj: str, target: str, kind: str) -> tuple[Any, float]:
        """(world -> goal xy of the object's body, release height of the object's bottom)."""
        slot = self._slot.get(obj)
        if target in world["sites"]:
            site0 = world["sites"][target]
            size = np.asarray(site0["size"])

            def xy(w: dict[str, Any]) -> np.ndarray:
                site = w["sites"][target]
                p = np.asarray(site["pos"])[:2].copy()
                if slot is not None:  # two objects on one region: side by side along the region's longer axis
                    axis = 0 if size[0] >= size[1] else 1
                    p[axis] += (slot - 0.5) * 2 * min(0.045, size[axis] * 0.6)
                if target.startswith("living_room_table_plate_right"):
                    p[1] += 0.02  # keep clear of the plate's rim
                return p

            if kind == "in":
                bottom = site0["pos"][2] - size[2] + 0.02
            else:
                bottom = site0["pos"][2] + size[2] + 0.01
            return xy, float(bottom)
        top = obj_box(world, target)["top"]
        return (lambda w: np.asarray(w["objects"][target]["pos"])[:2].copy()), float(top + 0.01)

    def _turn_on(self, world: dict[str, Any], fixture: str) -> list[m.Phase]:
        """Stove knobs are a low ring with a fin across it (along the knob's local y; the joint's qpos grows
        counter-clockwise). The closed fingers, closing along the fin, go down just behind one half of the fin
        (in the counter-clockwise sense), above the ring, and push it round; the target keeps following the
        fin and stays ``KNOB_PUSH`` ahead of it, so the push has the force to beat the joint's damping."""
        joint = next(j for j, f in world["joint_frames"].items() if f["object"] == fixture)
        body = next(b for b, v in world["bodies"].items() if v["joint"] == joint)
        skill = f"turnon_{fixture}"
        base = np.asarray(world["robot_base"])
        anchor0 = np.asarray(world["joint_frames"][joint]["anchor"])

        def fin_angle(w: dict[str, Any]) -> float:
            fin = np.asarray(w["bodies"][body]["mat"]) @ np.array([0.0, 1.0, 0.0])
            a = math.atan2(fin[1], fin[0])
            ref = self._fin if self._fin is not None else a
            return _nearest_half_turn(a, ref)

        first = fin_angle(world)
        # the fin half nearer the robot: its far side is the one the hand reaches without crossing the knob
        self._fin = min((first, first + math.pi), key=lambda a: float(np.linalg.norm(
            anchor0[:2] + KNOB_RADIUS * np.array([math.cos(a), math.sin(a)]) - base[:2])))

        def pose(w: dict[str, Any], side: float, lift: float) -> m.Target:
            """Fingers ``side`` metres off the fin (negative: behind it), ``lift`` above pushing height."""
            self._fin = fin_angle(w)
            anchor = np.asarray(w["joint_frames"][joint]["anchor"])
            radial = np.array([math.cos(self._fin), math.sin(self._fin), 0.0])
            tangent = np.array([-radial[1], radial[0], 0.0])
            point = anchor + KNOB_RADIUS * radial + side * tangent + [0.0, 0.0, KNOB_PUSH_HEIGHT + lift]
            # the previous yaw is the reference, so the hand never flips half a turn as the fin rotates
            self._knob_yaw = _near_yaw(self._fin, self._knob_yaw if self._knob_yaw is not None else self._yaw)
            return point, down(self._knob_yaw)

        push = m.Gains(pos=1.0, rot=1.0, max_pos_step=0.05, max_rot_step=0.3)
        turned = lambda c: float(np.asarray(c.world["joints"][joint]).reshape(-1)[0]) > 0.75  # noqa: E731
        return [
            m.Phase(skill, lambda c: pose(c.world, -KNOB_BEHIND, 0.08), m.GRIPPER_CLOSE, max_steps=150),
            # the fingers may graze the ring on the way down: close enough is enough
            m.Phase(skill, lambda c: pose(c.world, -KNOB_BEHIND, 0.0), m.GRIPPER_CLOSE, max_steps=60, gains=SLOW,
                    pos_tol=0.006, timeout_ok=True),
            m.Phase(skill, lambda c: pose(c.world, KNOB_PUSH, 0.0), m.GRIPPER_CLOSE, max_steps=150, until=turned,
                    gains=push, check=turned),
            m.Phase(skill, m.relative((0, 0, 0.08)), m.GRIPPER_OPEN, max_steps=40, pos_tol=0.02, timeout_ok=True),
        ]

    def _close(self, world: dict[str, Any], thing: str) -> list[m.Phase]:
        if thing in world["sites"] and world["sites"][thing]["joints"]:
            joint = world["sites"][thing]["joints"][0]
        else:
            joint = next(j for j, f in world["joint_frames"].items() if f["object"] == thing)
        frame = world["joint_frames"][joint]
        body = next(b for b, v in world["bodies"].items() if v["joint"] == joint)
        skill = f"close_{thing}"
        qpos = lambda w: float(np.asarray(w["joints"][joint]).reshape(-1)[0])  # noqa: E731
        rot = down(self._yaw)
        if frame["type"] == "slide":
            return self._push_drawer(skill, joint, body, qpos, self._push_rot(np.asarray(frame["axis"])))
        return self._sweep_door(skill, joint, body, qpos, rot)

    def _push_rot(self, axis: np.ndarray) -> np.ndarray:
        """Hand pose for pushing along horizontal ``axis``: the fingers close across the push (the hand's
        thin side leads) and point forwards-down, so the palm stays behind the face being pushed and does not
        hit the cabinet front above a drawer before the drawer is shut."""
        axis = axis * np.array([1.0, 1.0, 0.0])
        axis = axis / max(float(np.linalg.norm(axis)), 1e-9)
        yaw = _near_yaw(math.atan2(axis[1], axis[0]) + math.pi / 2, self._yaw)
        tilt = np.cross([0.0, 0.0, -1.0], axis)
        return m.axis_angle_to_mat(PUSH_TILT * tilt / np.linalg.norm(tilt)) @ down(yaw)

    def _push_drawer(self, skill: str, joint: str, body: str, qpos: Any, rot: np.ndarray) -> list[m.Phase]:
        def face(w: dict[str, Any], depth: float) -> np.ndarray:
            part = w["bodies"][body]
            axis = np.asarray(w["joint_frames"][joint]["axis"])  # closing direction (towards +qpos)
            mat = np.asarray(part["mat"])
            center = np.asarray(part["pos"]) + mat @ np.asarray(part["center"])
            extent = float(np.abs(mat @ np.asarray(part["half"])) @ np.abs(axis))
            p = center - axis * (extent - depth)
            p[2] = center[2] + 0.01
            return p

        closed = lambda c: qpos(c.world) > 0.001  # noqa: E731
        return [
            m.Phase(skill, lambda c: (face(c.world, -0.05) + [0, 0, 0.10], rot), m.GRIPPER_CLOSE, max_steps=150),
            m.Phase(skill, lambda c: (face(c.world, -0.04), rot), m.GRIPPER_CLOSE, max_steps=100, pos_tol=0.01),
            m.Phase(skill, lambda c: (face(c.world, 0.04), rot), m.GRIPPER_CLOSE, max_steps=150, until=closed,
                    gains=SLOW),
            m.Phase(skill, m.relative((0, 0, 0.0)), m.GRIPPER_CLOSE, max_steps=5, min_steps=5, pos_tol=math.inf,
                    check=closed),
        ]

    def _sweep_door(self, skill: str, joint: str, body: str, qpos: Any, rot: np.ndarray) -> list[m.Phase]:
        def door_point(w: dict[str, Any], lead: float, along: float, out: float) -> np.ndarray:
            """A point on the door's outer face, ``along`` of its width from the hinge, ``out`` off the face,
            at the door's current angle + ``lead``."""
            part = w["bodies"][body]
            anchor = np.asarray(w["joint_frames"][joint]["anchor"])
            spin = m.rot_z(lead)
            mat = spin @ np.asarray(part["mat"])
            center, half = np.asarray(part["center"]), np.asarray(part["half"])
            local = np.array([center[0] + half[0] * (2 * along - 1), center[1] - half[1] - out, center[2]])
            return anchor + mat @ local - np.array([0, 0, 0.0])

        closed = lambda c: qpos(c.world) > -0.004  # noqa: E731
        return [
            m.Phase(skill, lambda c: (door_point(c.world, 0.0, 0.75, 0.06) + [0, 0, 0.02], rot), m.GRIPPER_CLOSE,
                    max_steps=200, pos_tol=0.015),
            m.Phase(skill, lambda c: (door_point(c.world, 0.35, 0.75, 0.0), rot), m.GRIPPER_CLOSE, max_steps=250,
                    until=closed, gains=SLOW),
            m.Phase(skill, m.relative((0, 0, 0.0)), m.GRIPPER_CLOSE, max_steps=5, min_steps=5, pos_tol=math.inf,
                    check=closed),
        ]


def _nearest_half_turn(angle: float, reference: float) -> float:
    """``angle + k * pi`` closest to ``reference`` (a fin has two halves)."""
    return angle + math.pi * round((reference - angle) / math.pi)


def _at_release(ctx: m.PhaseContext, obj: str, bottom: float) -> bool:
    return obj_box(ctx.world, obj)["bottom"] <= bottom + 0.003
