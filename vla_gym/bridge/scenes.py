"""ManiSkill3's Bridge digital twins, configured for reuse across episodes and for SimplerEnv's layouts.

Subclasses of ManiSkill's own task classes change only what this benchmark needs:

- the layouts come from :mod:`vla_gym.bridge.layouts` (SimplerEnv's 8 x 3 for the eggplant);
- an episode id is required (ManiSkill would otherwise draw one from the global torch RNG);
- before objects settle, the robot is put back at its initial joint positions and drive targets and every
  object's velocity is zeroed, so an episode does not depend on the one before it (the env is reused);
- the green-screen buffers are per instance (ManiSkill keeps them on the class, so two cached tasks would
  share, and overwrite, one overlay photo);
- the asset folder is the one resolved by :mod:`vla_gym.bridge.assets`, not the one fixed when ManiSkill
  was first imported.

Importing this module imports SAPIEN; call :func:`vla_gym.bridge.vulkan.ensure_vulkan_driver` first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mani_skill.agents.robots.widowx.widowx import WidowX250S
from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval import base_env as ms_bridge_base
from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval import put_on_in_scene as ms_tasks

from tasks.simpler_bridge import SimplerBridgeProtocol
from vla_gym.bridge.layouts import LAYOUTS, TaskLayouts


@contextlib.contextmanager
def asset_root(data_root: Path) -> Iterator[None]:
    """Point ManiSkill's Bridge scene and WidowX paths at ``data_root`` while a scene is being built.

    ManiSkill fixes these paths when it is imported (from ``MS_ASSET_DIR``); every read happens while the
    env is constructed, so swapping them for that time is enough and leaves ManiSkill as it was afterwards.
    """
    saved_bridge = ms_bridge_base.BRIDGE_DATASET_ASSET_PATH
    saved_urdf = WidowX250S.urdf_path
    ms_bridge_base.BRIDGE_DATASET_ASSET_PATH = Path(data_root) / "tasks" / "bridge_v2_real2sim_dataset"
    WidowX250S.urdf_path = str(Path(data_root) / "robots" / "widowx" / "wx250s.urdf")
    try:
        yield
    finally:
        ms_bridge_base.BRIDGE_DATASET_ASSET_PATH = saved_bridge
        WidowX250S.urdf_path = saved_urdf


class _ReusableBridgeScene:
    """Mixin over a ManiSkill Bridge task class (see the module docstring)."""

    def __init__(self, *, layouts: TaskLayouts, green_screen: bool = True, **kwargs: Any) -> None:
        self._layouts = layouts
        # Per-instance state that ManiSkill keeps on the class.
        self._rgb_overlay_images = {}
        self._objects_to_remove_from_greenscreen = []
        if not green_screen:
            self.rgb_overlay_mode = "none"
        self._robot_init_state: tuple[torch.Tensor, torch.Tensor] | None = None
        super().__init__(**kwargs)

    def _load_scene(self, options: dict) -> None:
        # Swap in our layouts before ManiSkill converts them to tensors and loads the objects.
        self.xyz_configs = torch.as_tensor(self._layouts.xyz, dtype=torch.float32)
        self.quat_configs = torch.as_tensor(self._layouts.quats, dtype=torch.float32)
        super()._load_scene(options)

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        if "episode_id" not in options and options.get("reconfigure"):
            options["episode_id"] = 0  # ManiSkill's own reset while the scene is being built
        if "episode_id" not in options:
            raise KeyError(
                "Bridge scenes need options['episode_id'] (ManiSkill would draw it from the global torch RNG)"
            )
        options["episode_id"] = torch.as_tensor([int(options["episode_id"])])
        robot = self.agent.robot
        if self._robot_init_state is not None:
            # Start every settle from the same robot state, whatever the previous episode did.
            root_pose, qpos = self._robot_init_state
            robot.set_root_pose(ms_pose_from_raw(root_pose))
            robot.set_qpos(qpos)
            robot.set_joint_drive_targets(qpos, joints=robot.active_joints)
            robot.set_qvel(torch.zeros_like(qpos))
        for actor in self.objs.values():
            actor.set_linear_velocity(torch.zeros(1, 3))
            actor.set_angular_velocity(torch.zeros(1, 3))
        super()._initialize_episode(env_idx, options)
        if self._robot_init_state is None:
            self._robot_init_state = (robot.pose.raw_pose.clone(), robot.get_qpos().clone())


def ms_pose_from_raw(raw_pose: torch.Tensor) -> Any:
    from mani_skill.utils.structs.pose import Pose

    return Pose.create_from_pq(p=raw_pose[..., :3], q=raw_pose[..., 3:])


class SpoonOnTowel(_ReusableBridgeScene, ms_tasks.PutSpoonOnTableClothInScene):
    pass


class CarrotOnPlate(_ReusableBridgeScene, ms_tasks.PutCarrotOnPlateInScene):
    pass


class StackCube(_ReusableBridgeScene, ms_tasks.StackGreenCubeOnYellowCubeBakedTexInScene):
    pass


class EggplantInBasket(_ReusableBridgeScene, ms_tasks.PutEggplantInBasketScene):
    pass


SCENE_CLASSES: dict[str, type] = {
    "spoon_on_towel": SpoonOnTowel,
    "carrot_on_plate": CarrotOnPlate,
    "stack_cube": StackCube,
    "eggplant_in_basket": EggplantInBasket,
}


def maniskill3_eggplant_layouts() -> TaskLayouts:
    """ManiSkill3's own eggplant layouts (8 positions x 8 tilted orientations), for comparison runs."""
    quats = np.array(
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
    ident = np.tile([1.0, 0.0, 0.0, 0.0], (len(quats), 1))
    base = LAYOUTS["eggplant_in_basket"]
    return TaskLayouts(
        source=base.source, target=base.target, xyz=base.xyz, quats=np.stack([quats, ident], axis=1)
    )


def build_scene(task: str, protocol: SimplerBridgeProtocol, data_root: Path) -> Any:
    """A ManiSkill env for ``task`` rendering the protocol's camera (single env, CPU physics)."""
    if task not in SCENE_CLASSES:
        raise KeyError(f"unknown Bridge task {task!r}; known: {sorted(SCENE_CLASSES)}")
    layouts = LAYOUTS[task]
    if task == "eggplant_in_basket" and protocol.eggplant_layouts == "maniskill3_8x8":
        layouts = maniskill3_eggplant_layouts()
    fx, fy, cx, cy = protocol.intrinsics()
    camera = {
        protocol.camera: {
            "width": protocol.render_width,
            "height": protocol.render_height,
            "intrinsic": np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
        }
    }
    with asset_root(data_root):
        return SCENE_CLASSES[task](
            layouts=layouts,
            green_screen=protocol.green_screen,
            obs_mode="rgb+segmentation",
            num_envs=1,
            sim_backend="physx_cpu",
            # SAPIEN renders through Vulkan either way; "cpu" = lavapipe, without CUDA's warning
            render_backend="gpu" if torch.cuda.is_available() else "cpu",
            sensor_configs=camera,
        )
