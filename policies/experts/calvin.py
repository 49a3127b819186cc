"""Scripted privileged expert for CALVIN (scene D): one plan per subtask, for all 34 tasks.

A :class:`Planner` handles ONE subtask (the harness starts a fresh one when ``info["subtask_changed"]``). On
its first call it reads the task (``privileged["tasks"][privileged["subtask_index"]]``, else the
instruction in ``obs["language"]``) and the scene, and builds a list of skill phases (see
``policies.experts.motion``); each step it servoes the controller's target pose towards the running phase's
target. CALVIN's relative action adds ``a[:3] * 0.02`` m and ``a[3:6] * 0.05`` rad (Euler xyz) to a target
pose that the env never re-syncs with the real TCP, so the expert steers that target pose directly (no
integral wind-up when the arm is blocked) and asks the real TCP to have arrived where it matters.

Skills: ``transit`` (rise, go around the cabinet, descend), ``grasp``, ``lift``, ``place``, ``rotate``,
``push``, ``slide`` (sliding door), ``pull_drawer``/``push_drawer``, ``switch`` and ``press`` (button).
Fixture geometry comes from the env's ground truth (``privileged_state()["fixtures"]``) through the state view in
``policies.experts.calvin_scene``, which also holds the sizes and fixed surfaces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from policies.experts import calvin_scene as sc
from policies.experts.calvin_scene import SceneView
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
    axis_angle_to_mat,
    euler_xyz_to_mat,
    rot_y,
    rotation_angle,
    yaw_of,
)
from tasks.calvin import INSTRUCTIONS

#: CALVIN's relative action: 0.02 m and 0.05 rad (added to the target's Euler xyz angles) per unit. The
#: env does not clip; the expert keeps to [-1, 1], the range of the dataset's actions.
CALVIN_REL = ActionScale(pos_unit=0.02, rot_unit=0.05, limit=1.0, rotation="euler_xyz")
GAINS = Gains(pos=1.0, rot=1.0, max_pos_step=0.02, max_rot_step=0.05)
SLOW = Gains(pos=1.0, rot=1.0, max_pos_step=0.008, max_rot_step=0.05)

HOME_YAW = 1.5  # heading of the TCP's x axis at the evaluation's initial pose (joint 7 mid-range)
Z_SAFE = 0.56  # transit height of the TCP: a held block clears the blocks and the drawer
Y_FRONT = -0.03  # transit lane in front of the cabinet (the sliding door stands behind it)
GRASP_ABOVE_CENTRE = 0.008  # TCP above a block's centre when grasping (fingertips clear the surface)
SWITCH_TILT = math.radians(35)
SLIDE_MIN, SLIDE_MAX = 0.0, 0.28  # the slide joint's range (door right .. door left)
DOOR_CLEARANCE = 0.13  # how far the door's edge must be from the TCP for the hand to fit beside it
# place_in_drawer spots keep this far from the drawer's side walls: the longest block half-length (0.04) and
# room for the open fingers
DRAWER_WALL_ROOM = 0.066
DRAWER_WALL_THICKNESS = 0.03  # the drawer's side walls (x -0.026 .. 0.004 and 0.356 .. 0.385)
SLIDER_LEFT_X, SLIDER_RIGHT_X = -0.24085, 0.07034  # where the chains put blocks in the compartment
SLIDER_YAW = math.pi / 2  # hand square to the cabinet (its long side along x) inside the compartment
SLIDER_GRASP_SHIFT_Y = -0.006  # grasp blocks in the compartment a little in front of their centre
SLIDER_LEAN = math.radians(15)
SLIDER_PLACE_Y = 0.085  # not too deep: the cabinet's top starts at y = 0.14
TASK_OF_INSTRUCTION = {text: task for task, text in INSTRUCTIONS.items()}

Condition = Callable[[PhaseContext], bool]


def down(yaw: float) -> np.ndarray:
    """Gripper pointing straight down, its x axis at heading ``yaw``."""
    return euler_xyz_to_mat((math.pi, 0.0, yaw))


def _near(angle: float, reference: float, period: float) -> float:
    """The angle ``angle + k * period`` closest to ``reference``."""
    return float(angle + round((reference - angle) / period) * period)


def world(ctx: PhaseContext) -> SceneView:
    return ctx.world  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------ phases
def arrived(target: TargetFn, tol: float, rot_tol: float = 0.08) -> Condition:
    """The controller's target is at ``target`` and the real TCP within ``tol`` of it."""

    def cond(ctx: PhaseContext) -> bool:
        pos, rot = target(ctx)
        view = world(ctx)
        if float(np.linalg.norm(pos - ctx.eef_pos)) > min(tol, 0.004):
            return False
        if float(np.linalg.norm(pos - view.tcp_pos)) > tol:
            return False
        return rot is None or rotation_angle(rot @ view.tcp_rot.T) <= rot_tol

    return cond


def reach(skill: str, target: TargetFn, gripper: float, tol: float = 0.01, *, max_steps: int = 90,
          timeout_ok: bool = False, gains: Gains | None = None, until: Condition | None = None,
          check: Condition | None = None, rot_tol: float = 0.08) -> Phase:
    """Servo to ``target`` until the real TCP is there (or ``until`` holds)."""
    done = arrived(target, tol, rot_tol)
    cond = done if until is None else (lambda ctx: until(ctx) or done(ctx))
    return Phase(skill, target, gripper, max_steps=max_steps, until=cond, timeout_ok=timeout_ok, gains=gains,
                 check=check)


def hold(skill: str, gripper: float, steps: int, rot: np.ndarray | None = None,
         check: Condition | None = None) -> Phase:
    """Keep the target pose for ``steps`` steps while the gripper moves."""
    return Phase(skill, lambda ctx: (ctx.start_pos, rot), gripper, max_steps=steps, min_steps=steps,
                 pos_tol=math.inf, rot_tol=math.inf, check=check)


def fixed(pos: Any, rot: np.ndarray | None) -> TargetFn:
    p = np.asarray(pos, dtype=np.float64)
    return lambda ctx: (p, rot)


def transit(skill: str, goal: np.ndarray, rot: np.ndarray, gripper: float, view: SceneView,
            z_safe: float = Z_SAFE) -> list[Phase]:
    """Back off, rise to ``z_safe``, go around the cabinet's front if needed, stop above ``goal``.

    A subtask may end mid-skill (the env checks success every step), so the gripper may start next to a
    knob, a handle or the door: it first backs off towards the robot, then rises, and only turns to ``rot``
    once it is up. Waypoints: back off; straight up; out of the slider compartment to the front lane;
    across in the lane; back along y to above the goal.
    """
    start = view.target_pos
    z = max(z_safe, float(start[2]))
    back = np.array([start[0], start[1] - 0.04, start[2] + 0.01])
    points = [np.array([start[0], back[1], z])]
    if back[1] > Y_FRONT:
        points.append(np.array([start[0], Y_FRONT, z]))
    if goal[1] > Y_FRONT:
        points.append(np.array([goal[0], Y_FRONT, z]))
    points.append(np.array([goal[0], goal[1], z]))
    phases = []
    if start[2] < z_safe - 0.02:
        phases.append(reach(skill, fixed(back, None), gripper, tol=0.02, max_steps=15, timeout_ok=True))
    phases.append(reach(skill, fixed(points[0], None), gripper, tol=0.03, max_steps=40, timeout_ok=True))
    for point in points[1:]:
        phases.append(reach(skill, fixed(point, rot), gripper, tol=0.03, rot_tol=0.25, max_steps=90))
    return phases


# ------------------------------------------------------------------------------------------ skills
def grip_yaw(block: sc.BlockView) -> float:
    """Fingers across the block's 0.04 m side: the TCP's x axis along the block's x axis."""
    return _near(block.yaw, HOME_YAW, math.pi)


def block_target(name: str, dz: float, rot: np.ndarray) -> TargetFn:
    """Follows the block: ``dz`` above its centre, gripper at ``rot``."""

    def fn(ctx: PhaseContext) -> Target:
        b = world(ctx).blocks[name]
        return b.pos + np.array([0.0, 0.0, dz]), rot

    return fn


def offset_target(target: TargetFn, shift: np.ndarray) -> TargetFn:
    def fn(ctx: PhaseContext) -> Target:
        pos, rot = target(ctx)
        return pos + shift, rot

    return fn


def holding(name: str) -> Condition:
    def cond(ctx: PhaseContext) -> bool:
        view = world(ctx)
        return view.touching_robot(name) and view.gripper_width > 0.02

    return cond


def grasp(view: SceneView, name: str, skill: str = "grasp") -> list[Phase]:
    block = view.blocks[name]
    in_slider = bool(block.pos[1] > 0.016)
    # In the compartment the hand (0.23 m wide across the fingers) must stay square to the cabinet, or its
    # corners catch the cabinet's top; the fingers then turn a block that sits askew as they close.
    yaw = SLIDER_YAW if in_slider else grip_yaw(block)
    shift = np.array([0.0, SLIDER_GRASP_SHIFT_Y if in_slider else 0.0, 0.0])
    rot = down(yaw)
    if in_slider:
        # lean the fingers towards the nearer side wall so that the hand's far end clears it
        lean = -SLIDER_LEAN if block.pos[0] > sum(sc.SLIDER_X) / 2 else SLIDER_LEAN
        rot = rot_y(lean) @ rot
    above = block.pos + shift + np.array([0.0, 0.0, 0.07])
    first = door_clear_of(view, float(block.pos[0]), skill) if in_slider else []
    return [
        *first,
        *transit(skill, above, rot, GRIPPER_OPEN, view),
        reach(skill, offset_target(block_target(name, 0.07, rot), shift), GRIPPER_OPEN, tol=0.01, max_steps=60),
        reach(skill, offset_target(block_target(name, GRASP_ABOVE_CENTRE, rot), shift), GRIPPER_OPEN, tol=0.006,
              max_steps=60, timeout_ok=True, gains=SLOW),
        hold(skill, GRIPPER_CLOSE, 10, rot, check=holding(name)),
    ]


def lift(name: str, height: float, skill: str = "lift", above_z: float | None = None) -> list[Phase]:
    """Raise the grasped block by ``height``, and at least until its centre passes ``above_z``.

    ``above_z`` matters when the subtask began while the block was still falling (pushed into the drawer):
    the success check measures the lift from that higher start.
    """
    first: dict[str, float] = {}

    def target(ctx: PhaseContext) -> Target:
        if "z" not in first:  # the block's height when the lift begins
            first["z"] = float(world(ctx).blocks[name].pos[2])
        extra = 0.0 if above_z is None else above_z - first["z"]
        return ctx.start_pos + np.array([0.0, 0.0, max(height, extra)]), None

    return [reach(skill, target, GRIPPER_CLOSE, tol=0.015, max_steps=60, timeout_ok=True, check=holding(name))]


def held_offset(view: SceneView, name: str) -> np.ndarray:
    """Where the held block's centre is relative to the controller's target position."""
    return view.blocks[name].pos - view.target_pos


def place(view: SceneView, name: str, spot: np.ndarray, surface_z: float, skill: str = "place",
          yaw: float | None = None, drop: float = 0.006) -> list[Phase]:
    """Carry the held block over ``spot`` (x, y), lower it onto ``surface_z``, open, rise."""
    off = held_offset(view, name)
    cur_yaw = yaw_of(view.target_rot)
    rot = down(cur_yaw if yaw is None else yaw)
    z_rest = surface_z + sc.BLOCK_HALF_HEIGHT + drop - off[2]
    goal = np.array([spot[0] - off[0], spot[1] - off[1], z_rest])
    above = goal + np.array([0.0, 0.0, 0.06])
    return [
        *transit(skill, above, rot, GRIPPER_CLOSE, view),
        reach(skill, fixed(above, rot), GRIPPER_CLOSE, tol=0.01, max_steps=60),
        reach(skill, fixed(goal, rot), GRIPPER_CLOSE, tol=0.006, max_steps=60, timeout_ok=True, gains=SLOW),
        hold(skill, GRIPPER_OPEN, 8, rot),
        reach(skill, fixed(goal + np.array([0.0, 0.0, 0.08]), None), GRIPPER_OPEN, tol=0.02, max_steps=40,
              timeout_ok=True),
    ]


def rotate(view: SceneView, name: str, direction: float) -> list[Phase]:
    """Grasp, lift a little, turn the gripper by 90 degrees about z (left = +), set down, release."""
    block = view.blocks[name]
    yaw = grip_yaw(block)
    turned = down(yaw + direction * math.radians(88))

    def turn_target(ctx: PhaseContext) -> Target:
        return ctx.start_pos, turned

    phases = grasp(view, name, "rotate")
    phases += [
        Phase("rotate", lambda ctx: (ctx.start_pos + np.array([0.0, 0.0, 0.012]), None), GRIPPER_CLOSE,
              max_steps=10, min_steps=6, pos_tol=0.004),
        reach("rotate", turn_target, GRIPPER_CLOSE, tol=0.01, rot_tol=0.06, max_steps=80, timeout_ok=True),
        Phase("rotate", lambda ctx: (ctx.start_pos - np.array([0.0, 0.0, 0.01]), turned), GRIPPER_CLOSE,
              max_steps=10, min_steps=6, pos_tol=0.004),
        hold("rotate", GRIPPER_OPEN, 8, turned),
        reach("rotate", lambda ctx: (ctx.start_pos + np.array([0.0, 0.0, 0.08]), None), GRIPPER_OPEN, tol=0.02,
              max_steps=40, timeout_ok=True),
    ]
    return phases


def half_extent_along(block: sc.BlockView, axis: np.ndarray) -> float:
    """Half the block's extent along a horizontal world axis."""
    ax, ay = block.rot[:2, 0], block.rot[:2, 1]
    return abs(float(ax @ axis[:2])) * sc.BLOCK_HALF_LENGTH[block.name] + abs(float(ay @ axis[:2])) * 0.02


def push(view: SceneView, name: str, direction: np.ndarray, distance: float, stop: float,
         skill: str = "push", end: float | None = None) -> list[Phase]:
    """Closed fingertips just above the surface behind the block, then sweep along ``direction``.

    Stops once the block has moved ``stop`` along ``direction`` (or the TCP reached ``end`` along it).
    """
    block = view.blocks[name]
    d = np.array([direction[0], direction[1], 0.0]) / np.linalg.norm(direction)
    rot = down(HOME_YAW)
    z = block.pos[2] - sc.BLOCK_HALF_HEIGHT + 0.012 + sc.FINGER_BELOW_TCP
    start = block.pos - d * (half_extent_along(block, d) + 0.035)
    start[2] = z
    finish = start + d * distance
    start0 = block.pos.copy()

    def moved(ctx: PhaseContext) -> bool:
        b = world(ctx).blocks[name]
        return float((b.pos - start0) @ d) > stop

    return [
        *transit(skill, start + np.array([0.0, 0.0, 0.06]), rot, GRIPPER_CLOSE, view),
        reach(skill, fixed(start, rot), GRIPPER_CLOSE, tol=0.008, max_steps=60, timeout_ok=True),
        reach(skill, fixed(finish, rot), GRIPPER_CLOSE, tol=0.01, max_steps=90, gains=SLOW, until=moved,
              timeout_ok=True, check=moved),
        reach(skill, lambda ctx: (ctx.start_pos + np.array([0.0, 0.0, 0.08]), None), GRIPPER_OPEN, tol=0.02,
              max_steps=40, timeout_ok=True),
    ]


def slide_door(view: SceneView, target: float, skill: str = "slide", held: str | None = None) -> list[Phase]:
    """Push the sliding door's knob sideways until the slide joint reaches ``target`` (0 .. 0.28).

    With a block in the gripper (``held``), the block does the pushing: the hand turns it lengthwise along
    the door so that it stays clear of the door's sloping face, and holds it at the knob's height.
    """
    s0 = view.slide
    direction = -1.0 if target > s0 else 1.0  # the door moves by -s along x
    if held is None:
        rot = down(HOME_YAW)
        reach_x = 0.011
        dy, dz = -0.008, 0.012
    else:
        rot = down(_near(0.0, yaw_of(view.target_rot), math.pi))
        reach_x = sc.BLOCK_HALF_LENGTH[held]
        off = held_offset(view, held)
        dy, dz = -0.014, -off[2]
    side = -direction * (sc.SLIDE_KNOB_HALF_WIDTH + reach_x + 0.012)  # stand on the far side of the knob

    def start_target(ctx: PhaseContext) -> Target:
        k = world(ctx).slide_knob()
        return np.array([k[0] + side, k[1] + dy, k[2] + dz]), rot

    def done(ctx: PhaseContext) -> bool:
        s = world(ctx).slide
        return s >= target - 0.01 if direction < 0 else s <= target + 0.01

    def sweep(ctx: PhaseContext) -> Target:
        return ctx.start_pos + np.array([direction * (abs(target - s0) + 0.03), 0.0, 0.0]), rot

    knob = view.slide_knob(s0)
    above = np.array([knob[0] + side, knob[1] + dy, knob[2] + 0.07])
    gripper = GRIPPER_CLOSE
    return [
        *transit(skill, above, rot, gripper, view, z_safe=Z_SAFE if held is None else 0.62),
        reach(skill, start_target, gripper, tol=0.008, max_steps=60, timeout_ok=True),
        reach(skill, sweep, gripper, tol=0.01, max_steps=120, gains=SLOW, until=done, check=done),
    ]


def door_clear_of(view: SceneView, x: float, skill: str, held: str | None = None) -> list[Phase]:
    """Slide the door to the end that leaves room for the hand at ``x`` in the compartment, if needed."""

    def clearance(slide: float) -> float:
        lo, hi = view.slide_door_x(slide)
        return lo - x if x < lo else (x - hi if x > hi else -1.0)

    if clearance(view.slide) >= DOOR_CLEARANCE:
        return []
    end = max((SLIDE_MIN, SLIDE_MAX), key=clearance)
    return slide_door(view, end, skill, held)


def open_drawer(view: SceneView) -> list[Phase]:
    """Grasp the handle bar (fingers across it) and pull it towards the robot."""
    yaw = _near(0.0, yaw_of(view.target_rot), math.pi)
    rot = down(yaw)
    d0 = view.drawer

    def handle(dz: float) -> TargetFn:
        def fn(ctx: PhaseContext) -> Target:
            return world(ctx).drawer_handle() + np.array([0.0, 0.0, dz]), rot

        return fn

    def opened(ctx: PhaseContext) -> bool:
        return world(ctx).drawer - d0 > 0.17

    def pull(ctx: PhaseContext) -> Target:
        return ctx.start_pos + np.array([0.0, -0.22, 0.0]), rot

    above = view.drawer_handle(d0) + np.array([0.0, 0.0, 0.09])
    return [
        *transit("open_drawer", above, rot, GRIPPER_OPEN, view),
        reach("open_drawer", handle(0.09), GRIPPER_OPEN, tol=0.01, max_steps=60),
        reach("open_drawer", handle(0.012), GRIPPER_OPEN, tol=0.006, max_steps=60, timeout_ok=True, gains=SLOW),
        hold("open_drawer", GRIPPER_CLOSE, 10, rot),
        reach("open_drawer", pull, GRIPPER_CLOSE, tol=0.01, max_steps=120, gains=SLOW, until=opened, check=opened),
        hold("open_drawer", GRIPPER_OPEN, 8, rot),
        reach("open_drawer", lambda ctx: (ctx.start_pos + np.array([0.0, 0.0, 0.08]), None), GRIPPER_OPEN, tol=0.02,
              max_steps=30, timeout_ok=True),
    ]


def close_drawer(view: SceneView) -> list[Phase]:
    """Closed fingertips against the front of the handle bar, then push it in."""
    rot = down(HOME_YAW)
    d0 = view.drawer
    start = view.drawer_handle(d0) + np.array([0.0, -0.014 - 0.011 - 0.012, 0.012])

    def closed(ctx: PhaseContext) -> bool:
        return d0 - world(ctx).drawer > 0.17 or world(ctx).drawer < 0.01

    def push_in(ctx: PhaseContext) -> Target:
        return ctx.start_pos + np.array([0.0, d0 + 0.02, 0.0]), rot

    return [
        *transit("close_drawer", start + np.array([0.0, 0.0, 0.08]), rot, GRIPPER_CLOSE, view),
        reach("close_drawer", fixed(start, rot), GRIPPER_CLOSE, tol=0.008, max_steps=60, timeout_ok=True),
        reach("close_drawer", push_in, GRIPPER_CLOSE, tol=0.01, max_steps=120, gains=SLOW, until=closed,
              check=closed),
        reach("close_drawer", lambda ctx: (ctx.start_pos + np.array([0.0, -0.03, 0.08]), None), GRIPPER_OPEN,
              tol=0.02, max_steps=30, timeout_ok=True),
    ]


SHOULDER = np.array([-0.34, -0.46, 0.573])  # the arm's second joint: horizontal reach is measured from here


def tilted(yaw: float, towards: np.ndarray, angle: float) -> np.ndarray:
    """Gripper tipped by ``angle`` from pointing down, its fingers leaning towards ``towards`` (horizontal).

    Near the edge of the workspace (the switch) a tilt brings the wrist back within reach.
    """
    d = np.array([towards[0], towards[1], 0.0]) / float(np.linalg.norm(towards[:2]))
    return axis_angle_to_mat(angle * np.array([d[1], -d[0], 0.0])) @ down(yaw)


def tcp_for_tip(tip: np.ndarray, rot: np.ndarray, depth: float = sc.FINGER_BELOW_TCP - 0.003) -> np.ndarray:
    """The TCP position that puts the fingertips at ``tip`` (the TCP's z axis points out of the fingers)."""
    return tip - depth * rot[:, 2]


def switch(view: SceneView, on: bool) -> list[Phase]:
    """Push the switch's knob up its slope (on) or down it (off) with closed, forward-tilted fingertips."""
    knob = view.switch_knob()
    rot = tilted(HOME_YAW, knob - SHOULDER, SWITCH_TILT)
    axis = view.switch_axis
    outward = np.array([0.0, -0.8660254, 0.5])
    sign = 1.0 if on else -1.0
    start = tcp_for_tip(knob - sign * 0.035 * axis, rot)
    approach = start + 0.06 * outward if on else start + np.array([0.0, -0.02, 0.04])

    def done(ctx: PhaseContext) -> bool:
        q = world(ctx).switch
        return q > 0.075 if on else q < 0.012

    def sweep(ctx: PhaseContext) -> Target:
        return ctx.start_pos + sign * 0.11 * axis, rot

    return [
        *transit("switch", approach, rot, GRIPPER_CLOSE, view),
        reach("switch", fixed(approach, rot), GRIPPER_CLOSE, tol=0.01, max_steps=60, timeout_ok=True),
        reach("switch", fixed(start, rot), GRIPPER_CLOSE, tol=0.008, max_steps=60, timeout_ok=True),
        reach("switch", sweep, GRIPPER_CLOSE, tol=0.01, max_steps=90, gains=SLOW, until=done, check=done),
        reach("switch", lambda ctx: (ctx.start_pos + np.array([0.0, -0.05, 0.0]), None),
              GRIPPER_CLOSE, tol=0.02, max_steps=30, timeout_ok=True),
    ]


def press_button(view: SceneView, light_goal: int, presses: int = 3) -> list[Phase]:
    """Press the button until the LED shows ``light_goal`` (at most ``presses`` presses)."""
    rot = down(HOME_YAW)
    x, y, top = view.button_top
    top += sc.FINGER_BELOW_TCP
    up = np.array([x, y, top + 0.035])
    pressed = np.array([x, y, top - 0.035])

    def goal(ctx: PhaseContext) -> bool:
        return world(ctx).lights.get("led") == light_goal

    def deep(ctx: PhaseContext) -> bool:
        return goal(ctx) or world(ctx).button > 0.014

    def released(ctx: PhaseContext) -> bool:
        return goal(ctx) or (world(ctx).button < 0.004 and world(ctx).tcp_pos[2] > top + 0.02)

    phases = [*transit("press", up, rot, GRIPPER_CLOSE, view), reach("press", fixed(up, rot), GRIPPER_CLOSE, tol=0.01)]
    for _ in range(presses):
        phases += [
            reach("press", fixed(pressed, rot), GRIPPER_CLOSE, tol=0.004, max_steps=40, gains=SLOW, until=deep,
                  timeout_ok=True),
            reach("press", fixed(up, rot), GRIPPER_CLOSE, tol=0.01, max_steps=40, until=released, timeout_ok=True),
        ]
    phases.append(Phase("press", fixed(up, rot), GRIPPER_CLOSE, max_steps=1, until=goal, check=goal))
    return phases


# ------------------------------------------------------------------------------------------ spots
def slider_spot(view: SceneView, moving: str) -> np.ndarray:
    """The usual resting place on the side of the compartment the door leaves open (or the freer one)."""
    spots = (SLIDER_LEFT_X, SLIDER_RIGHT_X)
    open_side = 1 if view.slide > (SLIDE_MIN + SLIDE_MAX) / 2 else 0
    order = (open_side, 1 - open_side)
    for i in order:
        x = spots[i]
        if all(abs(b.pos[0] - x) > 0.07 or b.pos[1] < 0.016 for n, b in view.blocks.items() if n != moving):
            return np.array([x, SLIDER_PLACE_Y])
    return np.array([spots[open_side], SLIDER_PLACE_Y])


def drawer_spot(view: SceneView, moving: str) -> np.ndarray:
    lo, hi = view.drawer_inside()
    y_lo = lo[1] + 0.035
    y_hi = min(hi[1], sc.TABLE_FRONT_Y) - 0.035
    others = [b.pos for n, b in view.blocks.items() if n != moving and b.pos[1] < sc.TABLE_FRONT_Y]
    xs = np.linspace(lo[0] + DRAWER_WALL_ROOM, hi[0] - DRAWER_WALL_ROOM, 9)
    y = (y_lo + y_hi) / 2
    centre = (lo[0] + hi[0]) / 2
    best = max(xs, key=lambda x: (min((abs(x - o[0]) for o in others), default=1.0), -abs(x - centre)))
    return np.array([best, y])


def reachable(view: SceneView, name: str) -> bool:
    """Not behind the sliding door and not inside a closed drawer."""
    b = view.blocks[name]
    if b.pos[1] > 0.016:
        door_lo, door_hi = view.slide_door_x()
        return not door_lo - 0.02 < b.pos[0] < door_hi + 0.02
    if b.pos[1] < sc.TABLE_FRONT_Y:
        return view.drawer > 0.12
    return True


# ------------------------------------------------------------------------------------------ plans
def task_block(task: str) -> str:
    for color, name in sc.COLORS.items():
        if f"_{color}_" in task:
            return name
    raise KeyError(f"CALVIN task {task!r} names no block colour")


KEEPS_HELD_BLOCK = ("place_in_slider", "place_in_drawer", "stack_block")


def release(view: SceneView) -> list[Phase]:
    """Let go of whatever the last subtask left in the gripper (it may have ended mid-skill) and back off."""
    near = any(view.touching_robot(n) or np.linalg.norm(b.pos - view.tcp_pos) < 0.06 for n, b in view.blocks.items())
    if view.gripper_command > 0 and not near:
        return []
    return [
        hold("release", GRIPPER_OPEN, 8),
        reach("release", lambda ctx: (ctx.start_pos + np.array([0.0, 0.0, 0.05]), None), GRIPPER_OPEN, tol=0.02,
              max_steps=20, timeout_ok=True),
    ]


def plan(task: str, view: SceneView) -> list[Phase]:
    """The phases that solve ``task`` from the scene in ``view``."""
    if task in KEEPS_HELD_BLOCK:
        return _plan(task, view)
    return release(view) + _plan(task, view)


def _plan(task: str, view: SceneView) -> list[Phase]:
    if task.startswith("lift_"):
        name = task_block(task)
        # the check wants 0.05 above where the block was when the subtask began; aim 0.08 above it
        return grasp(view, name) + lift(name, 0.08, above_z=float(view.blocks[name].pos[2]) + 0.08)
    if task.startswith("rotate_"):
        return rotate(view, task_block(task), 1.0 if task.endswith("_left") else -1.0)
    if task.startswith("push_") and task != "push_into_drawer":
        name = task_block(task)
        d = np.array([1.0, 0.0]) if task.endswith("_right") else np.array([-1.0, 0.0])
        return push(view, name, d, 0.17, 0.12)
    if task == "push_into_drawer":
        return push_into_drawer(view)
    if task in ("place_in_slider", "place_in_drawer", "stack_block"):
        name = view.held_block()
        if name is None:
            raise _NoPlan(task, "no block is held")
        if task == "place_in_slider":
            spot = slider_spot(view, name)
            first = door_clear_of(view, float(spot[0]), "place_in_slider", held=name)
            return first + place(view, name, spot, sc.SLIDER_FLOOR_Z, "place_in_slider", yaw=SLIDER_YAW)
        if task == "place_in_drawer":
            return place(view, name, drawer_spot(view, name), float(view.drawer_inside()[0][2]), "place_in_drawer", drop=0.012)
        return stack(view, name)
    if task == "unstack_block":
        for name in sc.BLOCK_NAMES:
            if view.block_below(name) is not None:
                return grasp(view, name, "unstack") + lift(name, 0.08, "unstack")
        raise _NoPlan(task, "no block rests on another block")
    if task in ("move_slider_left", "move_slider_right"):
        return slide_door(view, SLIDE_MAX if task.endswith("left") else SLIDE_MIN)
    if task == "open_drawer":
        return open_drawer(view)
    if task == "close_drawer":
        return close_drawer(view)
    if task in ("turn_on_lightbulb", "turn_off_lightbulb"):
        return switch(view, task == "turn_on_lightbulb")
    if task in ("turn_on_led", "turn_off_led"):
        return press_button(view, 1 if task == "turn_on_led" else 0)
    raise KeyError(f"unknown CALVIN task {task!r}; known: {sorted(INSTRUCTIONS)}")


def stack(view: SceneView, name: str) -> list[Phase]:
    """Put the held block on another block: prefer one on the table, upright, with nothing on it."""
    candidates = [
        n for n in sc.BLOCK_NAMES
        if n != name and view.blocks[n].upright and view.block_above(n) is None and reachable(view, n)
    ]
    if not candidates:
        raise _NoPlan("stack_block", "no block to stack on")
    table_first = sorted(candidates, key=lambda n: (not view.on_link(n, "base_link"),
                                                    float(np.linalg.norm(view.blocks[n].pos[:2] - view.blocks[name].pos[:2]))))
    base = view.blocks[table_first[0]]
    top_z = base.pos[2] + sc.BLOCK_HALF_HEIGHT
    held = view.blocks[name]
    grip_offset = yaw_of(view.target_rot) - held.yaw  # the held block turns with the hand

    def button_gap(block_yaw: float) -> float:
        # the held block lies along ``block_yaw`` on the base: keep its footprint off the button
        c, s_ = abs(math.cos(block_yaw)), abs(math.sin(block_yaw))
        half = sc.BLOCK_HALF_LENGTH[name]
        ext = np.array([c * half + s_ * 0.02, s_ * half + c * 0.02])
        gap = np.abs(base.pos[:2] - view.button_top[:2]) - ext - sc.BUTTON_HALF_WIDTH
        return float(max(gap))

    block_yaw = max((base.yaw, base.yaw + math.pi / 2), key=button_gap)
    yaw = _near(block_yaw + grip_offset, yaw_of(view.target_rot), math.pi)
    return place(view, name, base.pos[:2], top_z, "stack_block", yaw=yaw, drop=0.004)


def push_into_drawer(view: SceneView) -> list[Phase]:
    """Push a block lying on the table straight off its front edge into the (open) drawer.

    The check wants the block on the table alone when the subtask begins and touching the drawer at some
    later step. Pushed off the edge between the drawer's side walls (inner faces at x ~ 0.004 .. 0.356, so
    the usual table spots x ~ 0.05 .. 0.3 qualify) a block drops onto the drawer's floor; with its centre
    over a side wall (a push to the right can leave a block at x ~ 0.38) it lands on, or brushes, the wall.
    """
    table = (view.table_uid, view.table_links["base_link"])
    lo, hi = view.drawer_inside()
    on_table = [n for n in sc.BLOCK_NAMES if table in view.blocks[n].contacts]
    names = [n for n in on_table if view.blocks[n].contacts == frozenset({table})
             and lo[0] - DRAWER_WALL_THICKNESS <= view.blocks[n].pos[0] <= hi[0] + DRAWER_WALL_THICKNESS]
    if not names:
        if any(view.touching_robot(n) for n in on_table):
            raise _NoPlan("push_into_drawer", "the block on the table still touches the robot as the subtask begins")
        raise _NoPlan("push_into_drawer", "no block on the table in front of the drawer")

    def key(n: str) -> tuple[float, float]:  # over the inside first, then nearest to the edge
        x = float(view.blocks[n].pos[0])
        return (max(lo[0] - x, x - hi[0], 0.0), float(view.blocks[n].pos[1]))

    name = min(names, key=key)
    b = view.blocks[name]
    distance = float(b.pos[1] - (sc.TABLE_FRONT_Y - 0.09)) + 0.06
    return push(view, name, np.array([0.0, -1.0]), distance, float(b.pos[1] - sc.TABLE_FRONT_Y) + 0.05,
                "push_into_drawer")


class _NoPlan(Exception):
    def __init__(self, task: str, why: str) -> None:
        super().__init__(f"{task}: {why}")
        self.task = task


# ------------------------------------------------------------------------------------------ planner
def current_task(obs: dict[str, Any], privileged: dict[str, Any]) -> str:
    tasks = privileged.get("tasks")
    index = privileged.get("subtask_index")
    if tasks and index is not None and 0 <= int(index) < len(tasks):
        return str(tasks[int(index)])
    text = str(obs.get("language", ""))
    if text not in TASK_OF_INSTRUCTION:
        raise KeyError(f"cannot tell the CALVIN task: privileged state has no 'tasks' and {text!r} is no known instruction")
    return TASK_OF_INSTRUCTION[text]


class Planner:
    """One CALVIN subtask (see the module docstring)."""

    def __init__(self, protocol: dict[str, Any]) -> None:
        self.protocol = dict(protocol)
        self.task: str | None = None
        self._machine: SkillMachine | None = None
        self._no_plan: str | None = None

    @property
    def stage(self) -> str:
        if self._no_plan is not None:
            return self._no_plan
        return "start" if self._machine is None else self._machine.stage

    @property
    def failure(self) -> str | None:
        if self._no_plan is not None:
            return self._no_plan
        return None if self._machine is None else self._machine.failure

    def act(self, obs: dict[str, Any], privileged: dict[str, Any]) -> np.ndarray:
        view = SceneView.from_privileged(privileged)
        if self._machine is None:
            self.task = current_task(obs, privileged)
            try:
                phases = plan(self.task, view)
            except _NoPlan:
                self._no_plan = "plan"
                phases = []
            self._machine = SkillMachine(CALVIN_REL, GAINS, phases)
        return self._machine.act(view, view.target_pos, view.target_rot)
