"""ManiSkill3's Bridge digital twins, configured for reuse across episodes and for SimplerEnv's layouts.

Subclasses of ManiSkill's own task classes change only what this benchmark needs:

- the layouts come from :mod:`vla_gym.bridge.layouts` (SimplerEnv's 8 x 3 for the eggplant, settled as
  SimplerEnv settles them: see :class:`EggplantInBasket`);
- an episode id is required (ManiSkill would otherwise draw one from the global torch RNG);
- every episode after the first starts from a new PhysX scene built exactly as ``gym.make`` builds it
  (:meth:`_ReusableBridgeScene.start_episode`): PhysX keeps per-body state that poses and velocities do not
  reset (sleep bookkeeping), and it changed the towel's settled pose by up to 8e-7 m depending on which
  episode ran before. Rebuilding makes episode k the episode a freshly made ManiSkill env gives for
  ``episode_id`` k, whatever ran before it;
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
from vla_gym.bridge.layouts import EGGPLANT_MANISKILL3, LAYOUTS, TaskLayouts


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


#: The seed ``gym.make`` gives a ManiSkill env's first reset; ManiSkill draws that reset's layout with it.
MANISKILL_CONSTRUCTION_SEED = 2022


class _ReusableBridgeScene:
    """Mixin over a ManiSkill Bridge task class (see the module docstring)."""

    def __init__(
        self, *, layouts: TaskLayouts, data_root: Path, green_screen: bool = True, **kwargs: Any
    ) -> None:
        self._layouts = layouts
        self._data_root = Path(data_root)
        # Per-instance state that ManiSkill keeps on the class.
        self._rgb_overlay_images = {}
        self._objects_to_remove_from_greenscreen = []
        if not green_screen:
            self.rgb_overlay_mode = "none"
        self._pristine = False
        super().__init__(**kwargs)  # ManiSkill builds the scene and resets it once (seed 2022)
        self._pristine = True  # nothing has run in this PhysX scene since it was built
        self.rebuilds = 0

    def _load_scene(self, options: dict) -> None:
        # Swap in our layouts before ManiSkill converts them to tensors and loads the objects.
        self.xyz_configs = torch.as_tensor(self._layouts.xyz, dtype=torch.float32)
        self.quat_configs = torch.as_tensor(self._layouts.quats, dtype=torch.float32)
        super()._load_scene(options)

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        if "episode_id" in options:
            options["episode_id"] = torch.as_tensor([int(options["episode_id"])])
        elif not options.get("reconfigure"):
            raise KeyError(
                "Bridge scenes need options['episode_id'] (ManiSkill would draw it from the global torch RNG)"
            )
        # else: the reset that builds the scene; ManiSkill draws its layout from torch seeded with 2022
        super()._initialize_episode(env_idx, options)

    def start_episode(self, episode_id: int) -> tuple[dict, dict]:
        """Reset to ``episode_id`` exactly as a freshly made ManiSkill env would: a new PhysX scene, ManiSkill's
        own first reset (seed 2022), then the episode. The first call uses the scene ``__init__`` built."""
        if not self._pristine:
            with asset_root(self._data_root):  # rebuilding reloads the robot and the scene's files
                self.reset(seed=[MANISKILL_CONSTRUCTION_SEED], options={"reconfigure": True})
            self.rebuilds += 1
        self._pristine = False
        return self.reset(options={"episode_id": int(episode_id)})


class SpoonOnTowel(_ReusableBridgeScene, ms_tasks.PutSpoonOnTableClothInScene):
    pass


class CarrotOnPlate(_ReusableBridgeScene, ms_tasks.PutCarrotOnPlateInScene):
    pass


class StackCube(_ReusableBridgeScene, ms_tasks.StackGreenCubeOnYellowCubeBakedTexInScene):
    pass


class EggplantInBasket(_ReusableBridgeScene, ms_tasks.PutEggplantInBasketScene):
    """The eggplant task. With ``simpler_settle`` (SimplerEnv's layouts) the objects settle as SimplerEnv
    settles them (ManiSkill2_real2sim ``MoveNearInSceneEnv._initialize_actors`` and
    ``PutEggplantInBasketScene._initialize_actors``): the robot is moved out of the way, the objects fall
    with their rotation about x and y locked for 0.5 s, are unlocked and stilled, settle 0.5 s more, and
    1.5 s more if still moving (from ManiSkill3's drop heights; see :mod:`vla_gym.bridge.layouts`).
    SimplerEnv's bare-yaw orientations need this: the eggplant mesh does not rest with its own z axis up,
    and ManiSkill3's short unlocked settle leaves it rolling into the first steps. Without
    ``simpler_settle``, ManiSkill3's own settle runs unchanged."""

    def __init__(self, *, simpler_settle: bool = False, **kwargs: Any) -> None:
        self._simpler_settle = simpler_settle
        self._settled = False
        super().__init__(**kwargs)

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        self._settled = False
        super()._initialize_episode(env_idx, options)

    def _settle(self, t: float = 0.5) -> None:
        if not self._simpler_settle:
            super()._settle(t)
            return
        if self._settled:
            return  # ManiSkill's "still moving: settle 6 s more"; SimplerEnv's own check below replaces it
        self._settled = True
        simpler_settle(self)


def simpler_settle(env: Any) -> None:
    """SimplerEnv's settling of freshly placed objects (see :class:`EggplantInBasket`), on a ManiSkill3 env.

    ManiSkill3 puts the robot at its episode pose after settling, as SimplerEnv does."""
    import sapien

    steps_per_second = int(env.sim_freq)  # SimplerEnv's _settle(t) runs sim_freq * t physics steps
    env.agent.robot.set_pose(sapien.Pose([-10.0, 0.0, 0.0]))  # out of the way, as SimplerEnv does
    bodies = [actor._bodies[0] for actor in env.objs.values()]
    for body in bodies:
        body.set_locked_motion_axes([False, False, False, True, True, False])
    for _ in range(steps_per_second // 2):
        env.scene.step()
    for actor, body in zip(env.objs.values(), bodies, strict=True):
        body.set_locked_motion_axes([False] * 6)
        actor.set_pose(actor.pose)  # keeps it awake, as SimplerEnv does
        actor.set_linear_velocity(torch.zeros(1, 3))
        actor.set_angular_velocity(torch.zeros(1, 3))
    for _ in range(steps_per_second // 2):
        env.scene.step()
    lin_vel = sum(float(torch.linalg.norm(a.linear_velocity)) for a in env.objs.values())
    ang_vel = sum(float(torch.linalg.norm(a.angular_velocity)) for a in env.objs.values())
    if lin_vel > 1e-3 or ang_vel > 1e-2:
        for _ in range(steps_per_second * 3 // 2):
            env.scene.step()


SCENE_CLASSES: dict[str, type] = {
    "spoon_on_towel": SpoonOnTowel,
    "carrot_on_plate": CarrotOnPlate,
    "stack_cube": StackCube,
    "eggplant_in_basket": EggplantInBasket,
}


def camera_config(protocol: SimplerBridgeProtocol) -> dict[str, dict[str, Any]]:
    """ManiSkill's sensor config for the protocol's camera: its render size and intrinsics."""
    fx, fy, cx, cy = protocol.intrinsics()
    return {
        protocol.camera: {
            "width": protocol.render_width,
            "height": protocol.render_height,
            "intrinsic": np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
        }
    }


def build_scene(task: str, protocol: SimplerBridgeProtocol, data_root: Path) -> Any:
    """A ManiSkill env for ``task`` rendering the protocol's camera (single env, CPU physics)."""
    if task not in SCENE_CLASSES:
        raise KeyError(f"unknown Bridge task {task!r}; known: {sorted(SCENE_CLASSES)}")
    layouts = LAYOUTS[task]
    extra: dict[str, Any] = {}
    if task == "eggplant_in_basket":
        if protocol.eggplant_layouts == "maniskill3_8x8":
            layouts = EGGPLANT_MANISKILL3
        else:
            extra["simpler_settle"] = True
    camera = camera_config(protocol)
    with asset_root(data_root):
        return SCENE_CLASSES[task](
            layouts=layouts,
            data_root=data_root,
            green_screen=protocol.green_screen,
            obs_mode="rgb+segmentation",
            num_envs=1,
            sim_backend="physx_cpu",
            # SAPIEN renders through Vulkan either way; "cpu" = lavapipe, without CUDA's warning
            render_backend="gpu" if torch.cuda.is_available() else "cpu",
            sensor_configs=camera,
            **extra,
        )
