"""Object layouts of the four Bridge tasks, indexed by ``episode_id`` exactly as the original SimplerEnv.

Each task has P position configs (source and target object xy) and Q orientation configs (quaternions
w, x, y, z); ``episode_id`` e picks position ``(e % (P * Q)) // Q`` and orientation ``e % Q``. The xy grids and
yaws are SimplerEnv's (ManiSkill2-real2sim); the drop heights z are ManiSkill3's, whose settling replaces
ManiSkill2's fall from 0.5 m. ManiSkill3's eggplant task uses 8 tilted resting orientations instead of
SimplerEnv's 3 yaws, so its ids 0..23 are other layouts: here the eggplant gets SimplerEnv's 8 x 3 back,
as yaws 0, +45, -45 deg about the vertical applied to ManiSkill3's resting orientation for yaw 0 (the mesh
does not rest with its own z axis up: with a bare yaw quaternion it rolls up to 8 cm while settling).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tasks.simpler_bridge import TASK_NAMES


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])

# The eggplant mesh does not rest with its z axis up: ManiSkill3 measured this resting orientation for
# yaw 0 (its "0 deg" entry). SimplerEnv's yaws are applied about the vertical on top of it.
EGGPLANT_REST_QUAT = np.array([0.559342, 0.817133, -0.138906, -0.0116353])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a * b of quaternions (w, x, y, z): rotate by b, then by a."""
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


@dataclasses.dataclass(frozen=True)
class TaskLayouts:
    source: str  # ManiSkill model id of the object to move
    target: str  # ManiSkill model id of where it goes
    xyz: np.ndarray  # (P, 2, 3): source and target positions per position config
    quats: np.ndarray  # (Q, 2, 4): source and target orientations per orientation config

    @property
    def count(self) -> int:
        return len(self.xyz) * len(self.quats)

    def indices(self, episode_id: int) -> tuple[int, int]:
        """(position config, orientation config) of an episode id (ids wrap around at ``count``)."""
        if episode_id < 0:
            raise ValueError(f"episode_id must be >= 0, got {episode_id}")
        q = len(self.quats)
        return (episode_id % self.count) // q, episode_id % q

    def pose(self, episode_id: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Initial (position, quaternion) of the source and target objects, before settling."""
        p, q = self.indices(episode_id)
        return {
            self.source: (self.xyz[p, 0], self.quats[q, 0]),
            self.target: (self.xyz[p, 1], self.quats[q, 1]),
        }


def _corner_pairs(half_edge: float, z_source: float, z_target: float) -> list[np.ndarray]:
    """Source and target on two different corners of a square around (-0.16, 0): 12 ordered pairs."""
    center = np.array([-0.16, 0.00])
    corners = (np.array([[0, 0], [0, 1], [1, 0], [1, 1]]) * 2 - 1) * half_edge + center
    pairs = []
    for i, a in enumerate(corners):
        for j, b in enumerate(corners):
            if i != j:
                pairs.append(np.array([[a[0], a[1], z_source], [b[0], b[1], z_target]]))
    return pairs


def _eggplant_positions() -> np.ndarray:
    """2 x 4 grid of eggplant positions in the sink; the (invisible) target plane sits in the basket."""
    target = np.array([-0.125, 0.025, 1.0])
    center = np.array([-0.105, 0.206])
    xyz = []
    for x in np.linspace(-0.01, 0.01, 2):
        for y in np.linspace(-0.015, 0.015, 4):
            xyz.append(np.stack([np.array([center[0] + x, center[1] + y, 0.933]), target]))
    return np.stack(xyz)


def _build() -> dict[str, TaskLayouts]:
    return {
        "spoon_on_towel": TaskLayouts(
            source="bridge_spoon_generated_modified",
            target="table_cloth_generated_shorter",
            xyz=np.stack(_corner_pairs(0.075, 0.88, 0.875)),
            quats=np.stack([np.stack([IDENTITY, IDENTITY]), np.stack([yaw_quat(np.pi / 2), IDENTITY])]),
        ),
        "carrot_on_plate": TaskLayouts(
            source="bridge_carrot_generated_modified",
            target="bridge_plate_objaverse_larger",
            xyz=np.stack(_corner_pairs(0.075, 0.887529, 0.869532)),
            quats=np.stack(
                [np.stack([yaw_quat(np.pi), IDENTITY]), np.stack([yaw_quat(-np.pi / 2), IDENTITY])]
            ),
        ),
        "stack_cube": TaskLayouts(
            source="baked_green_cube_3cm",
            target="baked_yellow_cube_3cm",
            xyz=np.stack(_corner_pairs(0.05, 0.887529, 0.887529) + _corner_pairs(0.1, 0.887529, 0.887529)),
            quats=np.stack([np.stack([IDENTITY, IDENTITY])]),
        ),
        "eggplant_in_basket": TaskLayouts(
            source="eggplant",
            target="dummy_sink_target_plane",
            xyz=_eggplant_positions(),
            quats=np.stack(
                [
                    np.stack([quat_multiply(yaw_quat(yaw), EGGPLANT_REST_QUAT), IDENTITY])
                    for yaw in (0.0, np.pi / 4, -np.pi / 4)
                ]
            ),
        ),
    }


LAYOUTS: dict[str, TaskLayouts] = _build()
assert tuple(LAYOUTS) == TASK_NAMES
