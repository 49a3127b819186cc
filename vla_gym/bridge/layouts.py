"""Object layouts of the four Bridge tasks, indexed by ``episode_id`` exactly as the original SimplerEnv.

Each task has P position configs (source and target object xyz) and Q orientation configs (quaternions
w, x, y, z); ``episode_id`` e picks position ``(e % (P * Q)) // Q`` and orientation ``e % Q``.

- Spoon, carrot, stack: SimplerEnv's xy grids and orientations (ManiSkill2_real2sim
  ``envs/custom_scenes/put_on_in_scene.py``), which ManiSkill3 copied; the drop heights z are ManiSkill3's,
  and so is the settling (these three tasks are ManiSkill3's envs unchanged).
- Eggplant (``EGGPLANT_SIMPLER``, the default): SimplerEnv's 8 positions x 3 orientations, the bare yaw
  quaternions ``euler2quat(0, 0, yaw)`` for yaw 0, +45, -45 deg, settled SimplerEnv's way (rotation about
  x and y locked while falling; ``vla_gym.bridge.scenes.EggplantInBasket``). The drop heights are
  ManiSkill3's (eggplant 0.933 m, target plane 1.0 m), not SimplerEnv's 0.5 m above the table: under
  ManiSkill3's physics that fall throws the target plane out of the basket.
  ManiSkill3 replaced the orientations by 8 tilted resting poses (``EGGPLANT_MANISKILL3``, 8 x 8 = 64
  ids): its ids 0..23 are other layouts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tasks.simpler_bridge import TASK_NAMES


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])

# ManiSkill3's eight eggplant orientations (PutEggplantInBasketScene-v1), in its order.
MANISKILL3_EGGPLANT_QUATS = np.array(
    [
        [0.543729, 0.82549, 0.0746101, 0.131747],
        [0.559342, 0.817133, -0.138906, -0.0116353],
        [0.543029, 0.789388, -0.267736, -0.101503],
        [-0.40751, -0.532897, 0.652644, 0.352154],
        [-0.157154, 0.235481, 0.75148, -0.595927],
        [-0.020137, 0.0213848, 0.953791, -0.299033],
        [-0.108854, 0.337692, 0.897378, -0.262348],
        [0.366114, 0.618434, 0.571457, 0.396152],
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


def _eggplant_positions(z_source: float, z_target: float) -> np.ndarray:
    """2 x 4 grid of eggplant positions in the sink; the (invisible) target plane falls into the basket."""
    target = np.array([-0.125, 0.025, z_target])
    center = np.array([-0.105, 0.206])
    xyz = []
    for x in np.linspace(-0.01, 0.01, 2):
        for y in np.linspace(-0.015, 0.015, 4):
            xyz.append(np.stack([np.array([center[0] + x, center[1] + y, z_source]), target]))
    return np.stack(xyz)


EGGPLANT_SIMPLER = TaskLayouts(
    source="eggplant",
    target="dummy_sink_target_plane",
    xyz=_eggplant_positions(0.933, 1.0),
    quats=np.stack([np.stack([yaw_quat(yaw), IDENTITY]) for yaw in (0.0, np.pi / 4, -np.pi / 4)]),
)
EGGPLANT_MANISKILL3 = TaskLayouts(
    source="eggplant",
    target="dummy_sink_target_plane",
    xyz=_eggplant_positions(0.933, 1.0),
    quats=np.stack([np.stack([q, IDENTITY]) for q in MANISKILL3_EGGPLANT_QUATS]),
)


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
        "eggplant_in_basket": EGGPLANT_SIMPLER,
    }


LAYOUTS: dict[str, TaskLayouts] = _build()
assert tuple(LAYOUTS) == TASK_NAMES
