"""The 34 CALVIN task checks. Each compares the state when a subtask started with the current one.

A :class:`Snapshot` holds what the checks read (block poses, velocities and contacts, the robot's contacts,
door joints, light states), so a check is a pure function of two snapshots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pybullet as p
from scipy.spatial.transform import Rotation

from vla_gym.calvin.scene import BLOCKS, PlayTable

COLORS = ("red", "blue", "pink")


@dataclass(frozen=True)
class BlockState:
    uid: int
    pos: np.ndarray
    orn: np.ndarray  # quaternion xyzw
    lin_vel: np.ndarray
    ang_vel: np.ndarray
    contacts: frozenset[tuple[int, int]]  # (other body, other link)

    @property
    def bodies(self) -> frozenset[int]:
        return frozenset(body for body, _ in self.contacts)


@dataclass(frozen=True)
class Snapshot:
    robot_uid: int
    table_uid: int
    table_links: dict[str, int]
    blocks: dict[str, BlockState]
    robot_contacts: frozenset[int]  # bodies the robot touches
    doors: dict[str, float]  # "slide", "drawer"
    lights: dict[str, int]  # "lightbulb", "led"


def _contacts(cid: int, uid: int) -> frozenset[tuple[int, int]]:
    return frozenset((c[2], c[4]) for c in p.getContactPoints(bodyA=uid, physicsClientId=cid))


def snapshot(cid: int, robot_uid: int, table: PlayTable) -> Snapshot:
    blocks = {}
    for name, _ in BLOCKS:
        uid = table.blocks[name]
        pos, orn = p.getBasePositionAndOrientation(uid, physicsClientId=cid)
        lin, ang = p.getBaseVelocity(uid, physicsClientId=cid)
        blocks[name] = BlockState(uid, np.array(pos), np.array(orn), np.array(lin), np.array(ang), _contacts(cid, uid))
    return Snapshot(
        robot_uid=robot_uid,
        table_uid=table.table,
        table_links=dict(table.links),
        blocks=blocks,
        robot_contacts=frozenset(body for body, _ in _contacts(cid, robot_uid)),
        doors={"slide": table.joint_state("base__slide"), "drawer": table.joint_state("base__drawer")},
        lights={name: light.state for name, light in table.lights.items()},
    )


Check = Callable[[Snapshot, Snapshot], bool]


def rotate_block(block: str, degrees: float, xy_limit: float = 30.0, z_limit: float = 180.0) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.blocks[block], end.blocks[block]
        x, y, z = (Rotation.from_quat(e.orn) * Rotation.from_quat(s.orn).inv()).as_euler("xyz", degrees=True)
        if np.linalg.norm(e.pos - s.pos) > 0.1:
            return False
        if not (e.bodies - {start.robot_uid}):
            return False  # it must rest on something, not hang in the gripper
        z_ok = degrees < z < z_limit if degrees > 0 else -z_limit < z < degrees
        return bool(z_ok and abs(x) < xy_limit and abs(y) < xy_limit)

    return check


def push_block(block: str, dx: float) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.blocks[block], end.blocks[block]
        robot = start.robot_uid
        s_contacts = {c for c in s.contacts if c[0] != robot}
        e_contacts = {c for c in e.contacts if c[0] != robot}
        if not s_contacts or not e_contacts or not s_contacts <= e_contacts:
            return False
        moved = e.pos[0] - s.pos[0]
        return bool(moved > dx if dx > 0 else moved < dx)

    return check


def move_door(door: str, delta: float) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        moved = end.doors[door] - start.doors[door]
        return bool(moved > delta if delta > 0 else moved < delta)

    return check


def lift_block(block: str, dz: float, surface_link: str) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        s, e = start.blocks[block], end.blocks[block]
        on_surface = (start.table_uid, start.table_links[surface_link]) in s.contacts
        return bool(e.pos[2] - s.pos[2] > dz and on_surface and e.bodies == {start.robot_uid})

    return check


def place_block(dest_link: str) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        if len(start.robot_contacts) != 1:
            return False
        (held,) = start.robot_contacts
        names = [n for n, b in start.blocks.items() if b.uid == held]
        if not names:
            return False
        block = names[0]
        if start.blocks[block].bodies != {start.robot_uid}:
            return False
        if held in end.robot_contacts:
            return False
        return (start.table_uid, start.table_links[dest_link]) in end.blocks[block].contacts

    return check


def _block_uids(snap: Snapshot) -> frozenset[int]:
    return frozenset(b.uid for b in snap.blocks.values())


def _slow(block: BlockState) -> bool:
    return bool(np.all(np.abs(block.lin_vel) < 1) and np.all(np.abs(block.ang_vel) < 1))


def stack_block(start: Snapshot, end: Snapshot) -> bool:
    uids = _block_uids(start)
    for name in start.blocks:
        s, e = start.blocks[name].bodies, end.blocks[name].bodies
        if not (s & uids) and (e & uids) and not (e - uids) and _slow(end.blocks[name]):
            return True
    return False


def unstack_block(start: Snapshot, end: Snapshot) -> bool:
    uids = _block_uids(start)
    for name in start.blocks:
        s, e = start.blocks[name].bodies, end.blocks[name].bodies
        if (s & uids) and not (s - uids) and _slow(start.blocks[name]) and not (e & uids):
            return True
    return False


def toggle_light(light: str, before: int, after: int) -> Check:
    def check(start: Snapshot, end: Snapshot) -> bool:
        return start.lights[light] == before and end.lights[light] == after

    return check


def push_into_drawer(start: Snapshot, end: Snapshot) -> bool:
    src = (start.table_uid, start.table_links["base_link"])
    dest = (start.table_uid, start.table_links["drawer_link"])
    for name in start.blocks:
        # The reference also asks that the robot not touch the block at the end, but compares a body id with
        # (body, link) pairs, so that condition never fires; keeping that keeps the published numbers.
        if start.blocks[name].contacts == {src} and dest in end.blocks[name].contacts:
            return True
    return False


def _build() -> dict[str, Check]:
    checks: dict[str, Check] = {}
    for color in COLORS:
        block = f"block_{color}"
        checks[f"rotate_{color}_block_right"] = rotate_block(block, -60)
        checks[f"rotate_{color}_block_left"] = rotate_block(block, 60)
        checks[f"push_{color}_block_right"] = push_block(block, 0.1)
        checks[f"push_{color}_block_left"] = push_block(block, -0.1)
        checks[f"lift_{color}_block_table"] = lift_block(block, 0.05, "base_link")
        checks[f"lift_{color}_block_slider"] = lift_block(block, 0.03, "plank_link")
        checks[f"lift_{color}_block_drawer"] = lift_block(block, 0.05, "drawer_link")
    checks["move_slider_left"] = move_door("slide", 0.15)
    checks["move_slider_right"] = move_door("slide", -0.15)
    checks["open_drawer"] = move_door("drawer", 0.12)
    checks["close_drawer"] = move_door("drawer", -0.12)
    checks["place_in_slider"] = place_block("plank_link")
    checks["place_in_drawer"] = place_block("drawer_link")
    checks["stack_block"] = stack_block
    checks["unstack_block"] = unstack_block
    checks["turn_on_lightbulb"] = toggle_light("lightbulb", 0, 1)
    checks["turn_off_lightbulb"] = toggle_light("lightbulb", 1, 0)
    checks["turn_on_led"] = toggle_light("led", 0, 1)
    checks["turn_off_led"] = toggle_light("led", 1, 0)
    checks["push_into_drawer"] = push_into_drawer
    return checks


CHECKS: dict[str, Check] = _build()


def solved(task: str, start: Snapshot, end: Snapshot) -> bool:
    return CHECKS[task](start, end)
