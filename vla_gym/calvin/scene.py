"""The scene-D play table (doors, button, switch, lights) and the three blocks.

The table URDF is loaded with ``globalScaling=0.8`` (which scales its joint limits too); the button is
edge-triggered (each press toggles the LED) and the switch level-triggered (lightbulb on iff it is past the
middle of its travel).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet as p

TABLE_URDF = "calvin_table_D/urdf/calvin_table_D.urdf"
PLANE_URDF = "plane/plane.urdf"
GLOBAL_SCALING = 0.8
BLOCKS = (  # load order fixes the body ids (2, 3, 4)
    ("block_red", "blocks/block_red_middle.urdf"),
    ("block_blue", "blocks/block_blue_small.urdf"),
    ("block_pink", "blocks/block_pink_big.urdf"),
)
# Blocks are loaded at poses drawn from these surfaces (pos range low/high) with a generator seeded 0, before
# any reset puts them where a chain needs them. The load poses matter: the broadphase pairs created at load
# time decide the order of the contact manifolds, and with it the solver's results bit for bit.
LOAD_SURFACES = {
    "table": ((0.0, -0.15, 0.46), (0.35, -0.03, 0.46)),
    "slider_left": ((-0.32, 0.05, 0.46), (-0.16, 0.12, 0.46)),
    "slider_right": ((-0.05, 0.05, 0.46), (0.13, 0.12, 0.46)),
}
LOAD_SEED = 0
DOOR_JOINTS = ("base__slide", "base__drawer")
BUTTON_JOINT = "base__button"
SWITCH_JOINT = "base__switch"
JOINT_FRICTION_FORCE = 4.0
LIGHT_COLORS = {"lightbulb": (1.0, 1.0, 0.0, 1.0), "led": (0.0, 1.0, 0.0, 1.0)}
LIGHT_LINKS = {"lightbulb": "light_link", "led": "led_link"}
LIGHT_OFF_COLOR = (1.0, 1.0, 1.0, 1.0)

# LED/button semantics: "1431a46" (published numbers: a reset leaves the button's toggle state off, so with
# the LED on, the first press "turns it on" again) or "fixed" (the toggle state follows the LED).
BUTTON_MODES = ("1431a46", "fixed")

# Ground truth for scripted experts: named points on the moving fixtures, in their link's frame (metres, after
# the 0.8 scaling), measured on the scene-D collision meshes by ray casts. ``PlayTable.fixtures`` maps them to
# the world through the links' current poses. fixture -> (link, joint, {point: xyz in the link frame}).
FIXTURE_POINTS: dict[str, tuple[str, str, dict[str, tuple[float, float, float]]]] = {
    "drawer": ("drawer_link", "base__drawer", {
        "handle": (0.0, 0.04, 0.246),  # centre of the handle bar
        "inside_corner_a": (-0.176, 0.022, 0.1564),  # opposite corners of the box inside the walls, on the floor
        "inside_corner_b": (0.176, 0.022, -0.037),
    }),
    "slide": ("slide_link", "base__slide", {
        "knob": (0.14, -0.0666, 0.0608),  # centre of the knob
        "door_left_edge": (0.0, 0.0, 0.0),  # x-extent of the door panel (its y, z are not meaningful)
        "door_right_edge": (0.28, 0.0, 0.0),
    }),
    "switch": ("switch_link", "base__switch", {"knob": (0.0, 0.0483, -0.0078)}),
    "button": ("button_link", "base__button", {"top": (0.0, 0.025, 0.0)}),  # centre of the pressing face
}


@dataclass
class Light:
    link: int
    color: tuple[float, ...]
    state: int = 0


class PlayTable:
    """Table, plane and blocks of one client; ids and link indices are read from the loaded bodies."""

    def __init__(self, cid: int, button_mode: str = "1431a46") -> None:
        if button_mode not in BUTTON_MODES:
            raise ValueError(f"button_mode must be one of {BUTTON_MODES}, got {button_mode!r}")
        self.cid = cid
        self.button_mode = button_mode
        self.table = -1
        self.plane = -1
        self.blocks: dict[str, int] = {}
        self.links: dict[str, int] = {}
        self.joints: dict[str, int] = {}
        self.lights: dict[str, Light] = {}
        self.button_threshold = 0.0
        self.switch_threshold = 0.0
        self.button_on = False  # the button's internal toggle state
        self.button_was_pressed = False

    def load_blocks(self, data_dir: Path) -> None:
        # PCG64 from SeedSequence(seed): the generator the reference environment seeds (gym's np_random).
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(LOAD_SEED)))
        for name, urdf in BLOCKS:
            surface = rng.choice(list(LOAD_SURFACES))  # per block: surface, position, yaw, in this order
            low, high = LOAD_SURFACES[surface]
            pos = rng.uniform(np.array(low), np.array(high))
            orn = p.getQuaternionFromEuler(rng.uniform([0, 0, -np.pi], [0, 0, np.pi]))
            self.blocks[name] = p.loadURDF(
                str(data_dir / urdf), pos, orn, globalScaling=GLOBAL_SCALING, physicsClientId=self.cid
            )

    def load_table(self, data_dir: Path) -> None:
        cid = self.cid
        self.table = p.loadURDF(
            str(data_dir / TABLE_URDF), [0, 0, 0], p.getQuaternionFromEuler([0, 0, 0]), useFixedBase=True,
            globalScaling=GLOBAL_SCALING, physicsClientId=cid,
        )
        self.links = {"base_link": -1}
        for j in range(p.getNumJoints(self.table, physicsClientId=cid)):
            info = p.getJointInfo(self.table, j, physicsClientId=cid)
            self.joints[info[1].decode()] = j
            self.links[info[12].decode()] = j
        for name in DOOR_JOINTS + (SWITCH_JOINT,):
            p.setJointMotorControl2(
                self.table, self.joints[name], controlMode=p.VELOCITY_CONTROL, targetVelocity=0,
                force=JOINT_FRICTION_FORCE, physicsClientId=cid,
            )
        # The button is a spring back to its rest position.
        p.setJointMotorControl2(
            self.table, self.joints[BUTTON_JOINT], controlMode=p.POSITION_CONTROL, targetPosition=0,
            force=JOINT_FRICTION_FORCE, physicsClientId=cid,
        )
        self.button_threshold = self._mid_travel(BUTTON_JOINT)
        self.switch_threshold = self._mid_travel(SWITCH_JOINT)
        self.lights = {name: Light(self.links[LIGHT_LINKS[name]], LIGHT_COLORS[name]) for name in LIGHT_LINKS}

    def load_plane(self, data_dir: Path) -> None:
        self.plane = p.loadURDF(str(data_dir / PLANE_URDF), physicsClientId=self.cid)

    def _mid_travel(self, joint: str) -> float:
        lower, upper = p.getJointInfo(self.table, self.joints[joint], physicsClientId=self.cid)[8:10]
        return (lower + upper) / 2

    def joint_state(self, joint: str) -> float:
        return p.getJointState(self.table, self.joints[joint], physicsClientId=self.cid)[0]

    def link_pose(self, link: str) -> tuple[np.ndarray, np.ndarray]:
        """World pose (position, quaternion xyzw) of a table link's frame as of the last simulation update."""
        if link not in self.links or self.links[link] < 0:
            raise KeyError(f"unknown movable table link {link!r}; known: {sorted(k for k, v in self.links.items() if v >= 0)}")
        state = p.getLinkState(self.table, self.links[link], physicsClientId=self.cid)
        return np.array(state[4], dtype=np.float64), np.array(state[5], dtype=np.float64)

    def fixtures(self) -> dict[str, dict[str, object]]:
        """Per fixture: joint value, limits, world motion axis (+q direction), link pose and named world points.

        Read-only (no forward kinematics is forced), so querying it never changes the simulation.
        """
        out: dict[str, dict[str, object]] = {}
        for name, (link, joint, points) in FIXTURE_POINTS.items():
            pos, orn = self.link_pose(link)
            rot = np.array(p.getMatrixFromQuaternion(orn), dtype=np.float64).reshape(3, 3)
            info = p.getJointInfo(self.table, self.joints[joint], physicsClientId=self.cid)
            out[name] = {
                "joint": self.joint_state(joint),
                "limits": (float(info[8]), float(info[9])),
                "axis": rot @ np.array(info[13], dtype=np.float64),
                "link_pos": pos,
                "link_orn": orn,
                "points": {k: pos + rot @ np.array(v, dtype=np.float64) for k, v in points.items()},
            }
        out["button"]["threshold"] = self.button_threshold
        out["switch"]["threshold"] = self.switch_threshold
        return out

    def set_light(self, name: str, state: int) -> None:
        light = self.lights[name]
        light.state = int(state)
        color = light.color if light.state else LIGHT_OFF_COLOR
        p.changeVisualShape(self.table, light.link, rgbaColor=color, physicsClientId=self.cid)

    def reset(self, scene_obs: np.ndarray) -> None:
        """Doors, lights, button, switch, then blocks (pose set directly, velocities zero)."""
        cid = self.cid
        for joint, value in zip(DOOR_JOINTS, scene_obs[0:2], strict=True):
            p.resetJointState(self.table, self.joints[joint], value, physicsClientId=cid)
        self.set_light("lightbulb", int(scene_obs[4]))
        self.set_light("led", int(scene_obs[5]))
        p.resetJointState(self.table, self.joints[BUTTON_JOINT], scene_obs[2], physicsClientId=cid)
        self.button_was_pressed = self.joint_state(BUTTON_JOINT) > self.button_threshold
        self.button_on = bool(self.lights["led"].state) if self.button_mode == "fixed" else False
        p.resetJointState(self.table, self.joints[SWITCH_JOINT], scene_obs[3], physicsClientId=cid)
        for k, (name, _) in enumerate(BLOCKS):
            pose = scene_obs[6 + 6 * k : 12 + 6 * k]
            p.resetBasePositionAndOrientation(
                self.blocks[name], pose[:3], p.getQuaternionFromEuler(pose[3:6]), physicsClientId=cid
            )

    def step(self) -> None:
        """Once per control step, after the physics substeps: button edges toggle the LED, the switch sets the bulb."""
        pressed = self.joint_state(BUTTON_JOINT) > self.button_threshold
        if pressed and not self.button_was_pressed:
            self.button_on = not self.button_on
            self.set_light("led", int(self.button_on))
        self.button_was_pressed = pressed
        bulb = int(self.joint_state(SWITCH_JOINT) > self.switch_threshold)
        if bulb != self.lights["lightbulb"].state:
            self.set_light("lightbulb", bulb)

    def block_pose(self, name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return p.getBasePositionAndOrientation(self.blocks[name], physicsClientId=self.cid)

    def observation(self) -> np.ndarray:
        """scene_obs (24): slide, drawer, button, switch, lightbulb, LED, then each block's pos + Euler xyz."""
        parts = [self.joint_state(j) for j in DOOR_JOINTS + (BUTTON_JOINT, SWITCH_JOINT)]
        parts += [self.lights["lightbulb"].state, self.lights["led"].state]
        for name, _ in BLOCKS:
            pos, orn = self.block_pose(name)
            parts += [*pos, *p.getEulerFromQuaternion(orn)]
        return np.array(parts, dtype=np.float64)
