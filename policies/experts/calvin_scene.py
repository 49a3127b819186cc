"""What the CALVIN expert knows about scene D: fixture geometry and a read-only view of the privileged state.

Where the handle, knobs, button and the drawer's inside are comes from the env's ground truth
(``privileged_state()["fixtures"]``: each fixture's joint value, world motion axis and named world points); the
constants below are sizes, surface heights and the fixed slider compartment of the scene-D table as loaded by
``VLA/Calvin-v0`` (``globalScaling`` 0.8). World frame, metres. All of it is privileged knowledge: a real
policy sees only the camera images.

:class:`SceneView` wraps one ``env.unwrapped.privileged_state()`` dict (see ``vla_gym.calvin.env``) in
named accessors; nothing here touches a simulator.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from policies.experts.motion import euler_xyz_to_mat, quat_xyzw_to_mat, yaw_of

BLOCK_NAMES = ("block_red", "block_blue", "block_pink")
COLORS = {"red": "block_red", "blue": "block_blue", "pink": "block_pink"}

# ------------------------------------------------------------------------------------------ geometry
TABLE_TOP_Z = 0.44  # top of the table's base link
TABLE_FRONT_Y = -0.18  # front edge of the table top (the robot stands at y = -0.46)
BLOCK_HALF_HEIGHT = 0.02  # every block is 0.04 m tall and 0.04 m wide across its y axis
BLOCK_HALF_LENGTH = {"block_red": 0.028, "block_blue": 0.02, "block_pink": 0.04}  # along the block's x axis
FINGER_BELOW_TCP = 0.023  # lowest point of the fingers below the TCP when the gripper points down

# Fixture geometry that moves with a joint (drawer handle and inside, slide knob and door, switch knob, button
# top) is read from the env's ``privileged_state()["fixtures"]`` (see :class:`FixtureView`); only sizes and the
# fixed compartment are constants here.
SLIDE_KNOB_HALF_WIDTH = 0.02
SLIDER_FLOOR_Z = 0.444  # top of the plank inside the compartment
SLIDER_X = (-0.364, 0.164)  # inner x-extent of the compartment
SLIDER_Y = 0.092  # depth at which blocks rest in the compartment
SLIDER_OPEN_ABOVE_Y = 0.14  # nothing above the compartment in front of this y (the cabinet top starts there)
BUTTON_HALF_WIDTH = 0.035  # the button's square footprint
FIXTURE_NAMES = ("drawer", "slide", "switch", "button")


# ------------------------------------------------------------------------------------------ state view
@dataclasses.dataclass(frozen=True)
class FixtureView:
    """One articulated fixture: its named world points now, and where they are at another joint value."""

    joint: float
    axis: np.ndarray  # world direction a point moves per unit of +joint (prismatic joints)
    limits: tuple[float, float]
    points: dict[str, np.ndarray]
    threshold: float | None = None

    @classmethod
    def from_privileged(cls, name: str, entry: dict[str, Any]) -> FixtureView:
        missing = [k for k in ("joint", "axis", "limits", "points") if k not in entry]
        if missing:
            raise KeyError(f"CALVIN privileged fixture {name!r} lacks {missing}")
        return cls(
            joint=float(entry["joint"]),
            axis=np.asarray(entry["axis"], dtype=np.float64),
            limits=(float(entry["limits"][0]), float(entry["limits"][1])),
            points={k: np.asarray(v, dtype=np.float64) for k, v in entry["points"].items()},
            threshold=None if entry.get("threshold") is None else float(entry["threshold"]),
        )

    def at(self, point: str, joint: float | None = None) -> np.ndarray:
        """World position of ``point`` with the joint at ``joint`` (default: where it is now)."""
        if point not in self.points:
            raise KeyError(f"fixture has no point {point!r}; known: {sorted(self.points)}")
        q = self.joint if joint is None else float(joint)
        return self.points[point] + self.axis * (q - self.joint)


@dataclasses.dataclass(frozen=True)
class BlockView:
    name: str
    uid: int
    pos: np.ndarray
    rot: np.ndarray  # 3x3
    lin_vel: np.ndarray
    contacts: frozenset[tuple[int, int]]  # (other body, other link)

    @property
    def bodies(self) -> frozenset[int]:
        return frozenset(body for body, _ in self.contacts)

    @property
    def yaw(self) -> float:
        return yaw_of(self.rot)

    @property
    def upright(self) -> bool:
        return bool(self.rot[2, 2] > math.cos(math.radians(25)))


@dataclasses.dataclass(frozen=True)
class SceneView:
    """One step's privileged state under names the plans read (a pure function of the dict)."""

    tcp_pos: np.ndarray
    tcp_rot: np.ndarray
    target_pos: np.ndarray  # the controller's target pose, which each relative action moves
    target_rot: np.ndarray
    target_euler: np.ndarray
    gripper_width: float
    gripper_command: float  # the last gripper action the robot received (+1 open, -1 close)
    blocks: dict[str, BlockView]
    slide: float
    drawer: float
    switch: float
    button: float
    lights: dict[str, int]
    robot_uid: int
    table_uid: int
    table_links: dict[str, int]
    fixtures: dict[str, FixtureView]
    tasks: tuple[str, ...]
    subtask_index: int

    @classmethod
    def from_privileged(cls, state: dict[str, Any]) -> SceneView:
        required = ("tcp_pos", "tcp_orn", "tcp_target_pos", "tcp_target_euler", "blocks", "doors", "switch_joint",
                    "button_joint", "lights", "body_ids", "table_links", "gripper_width", "fixtures")
        missing = [k for k in required if k not in state]
        if missing:
            raise KeyError(f"CALVIN privileged state lacks {missing}; pass env.unwrapped.privileged_state() of VLA/Calvin-v0")
        blocks = {
            name: BlockView(
                name=name,
                uid=int(state["body_ids"][name]),
                pos=np.asarray(b["pos"], dtype=np.float64),
                rot=quat_xyzw_to_mat(b["orn"]),
                lin_vel=np.asarray(b["lin_vel"], dtype=np.float64),
                contacts=frozenset((int(c[0]), int(c[1])) for c in b["contacts"]),
            )
            for name, b in state["blocks"].items()
        }
        euler = np.asarray(state["tcp_target_euler"], dtype=np.float64)
        return cls(
            tcp_pos=np.asarray(state["tcp_pos"], dtype=np.float64),
            tcp_rot=quat_xyzw_to_mat(state["tcp_orn"]),
            target_pos=np.asarray(state["tcp_target_pos"], dtype=np.float64),
            target_rot=euler_xyz_to_mat(euler),
            target_euler=euler,
            gripper_width=float(state["gripper_width"]),
            gripper_command=float(np.asarray(state["robot_obs"])[14]) if "robot_obs" in state else 1.0,
            blocks=blocks,
            slide=float(state["doors"]["slide"]),
            drawer=float(state["doors"]["drawer"]),
            switch=float(state["switch_joint"]),
            button=float(state["button_joint"]),
            lights={k: int(v) for k, v in state["lights"].items()},
            robot_uid=int(state["body_ids"]["robot"]),
            table_uid=int(state["body_ids"]["table"]),
            table_links={k: int(v) for k, v in state["table_links"].items()},
            fixtures={n: FixtureView.from_privileged(n, state["fixtures"][n]) for n in FIXTURE_NAMES},
            tasks=tuple(state.get("tasks", ())),
            subtask_index=int(state.get("subtask_index", 0)),
        )

    # ---- fixture geometry (from the env's ground truth); joint arguments default to the current values
    def slide_knob(self, slide: float | None = None) -> np.ndarray:
        return self.fixtures["slide"].at("knob", slide)

    def slide_door_x(self, slide: float | None = None) -> tuple[float, float]:
        door = self.fixtures["slide"]
        return float(door.at("door_left_edge", slide)[0]), float(door.at("door_right_edge", slide)[0])

    def drawer_handle(self, drawer: float | None = None) -> np.ndarray:
        return self.fixtures["drawer"].at("handle", drawer)

    def drawer_inside(self, drawer: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Low and high corners of the box inside the drawer's walls (z: the floor)."""
        a = self.fixtures["drawer"].at("inside_corner_a", drawer)
        b = self.fixtures["drawer"].at("inside_corner_b", drawer)
        return np.minimum(a, b), np.maximum(a, b)

    def switch_knob(self, switch: float | None = None) -> np.ndarray:
        return self.fixtures["switch"].at("knob", switch)

    @property
    def switch_axis(self) -> np.ndarray:
        return self.fixtures["switch"].axis

    @property
    def button_top(self) -> np.ndarray:
        return self.fixtures["button"].at("top", 0.0)  # the face at rest, not wherever a press left it

    # ---- relations the plans ask about
    def on_link(self, block: str, link: str) -> bool:
        return (self.table_uid, self.table_links[link]) in self.blocks[block].contacts

    def held_block(self) -> str | None:
        """The block the robot holds: it touches the robot and rests on nothing else."""
        for name, b in self.blocks.items():
            if self.robot_uid in b.bodies and b.bodies <= {self.robot_uid} | self._block_uids(exclude=name):
                if b.pos[2] > self.surface_below(b.pos) + BLOCK_HALF_HEIGHT + 0.004:
                    return name
        return None

    def touching_robot(self, block: str) -> bool:
        return self.robot_uid in self.blocks[block].bodies

    def _block_uids(self, exclude: str | None = None) -> frozenset[int]:
        return frozenset(b.uid for n, b in self.blocks.items() if n != exclude)

    def block_below(self, block: str) -> str | None:
        """A block that ``block`` rests on (touches and is above), if any."""
        me = self.blocks[block]
        for name, b in self.blocks.items():
            if name != block and b.uid in me.bodies and me.pos[2] > b.pos[2] + 0.02:
                return name
        return None

    def block_above(self, block: str) -> str | None:
        for name in self.blocks:
            if name != block and self.block_below(name) == block:
                return name
        return None

    def surface_below(self, pos: np.ndarray) -> float:
        """Height of the fixed surface under ``pos`` (table top, slider floor or drawer floor)."""
        x, y = float(pos[0]), float(pos[1])
        lo, hi = self.drawer_inside()
        if y < TABLE_FRONT_Y and lo[0] <= x <= hi[0] and y >= lo[1]:
            return float(lo[2])
        if y > 0.016 and SLIDER_X[0] <= x <= SLIDER_X[1]:
            return SLIDER_FLOOR_Z
        return TABLE_TOP_Z
