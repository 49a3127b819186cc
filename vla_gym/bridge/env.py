"""``VLA/SimplerBridge-v0``: SimplerEnv's four WidowX Bridge tasks (ManiSkill3 digital twins) behind the
vla-gym contract.

- ``reset(options={"episode": k})``: task ``k // 24``, ``episode_id`` ``k % 24`` (SimplerEnv's layouts);
  or ``options={"task": "carrot_on_plate", "episode_id": j}``; without options the seed picks an episode.
- Observation: ``image`` = the 3rd-person camera, green-screened, at the protocol's ``image_size`` (224; rendered at the protocol's
  size and resized with the protocol's interpolation when that differs); ``language``; ``proprio`` (7
  floats: end-effector xyz and roll/pitch/yaw in the robot base frame, mean finger position in metres)
  when ``proprio=True``. No wrist camera.
- Action (``contract``): ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``, metres and radians, gripper +1 open
  / -1 close; the rotation is converted to axis-angle for ManiSkill's controller. ``native``: ManiSkill's own
  action ``[dx, dy, dz, axis-angle(3), gripper]`` unchanged. ManiSkill clips the gripper to [-1, 1]; steps
  where that happened are counted (``info["gripper_clipped_steps"]``).
- Episodes run to truncation at the protocol's step limit (60; 120 for the eggplant); the score is
  ``info["success"]`` at the final step; ``info`` also carries the grasp flags. Protocols with
  ``success="first_step"`` (``terminate_on_success``) terminate at the first step where the task holds.
- Reward: ``float(info["success"])`` on every step (with the default protocols a return counts the steps
  spent in the success state; with ``terminate_on_success`` it is 1.0 exactly for a solved episode).
- Action space: Box with xyz deltas in [-1, 1] m, rotation deltas in [-pi/2, pi/2] rad and gripper in
  [-1, 1]: the limits of ManiSkill3's WidowX Bridge controller config (``arm_pd_ee_target_delta_pose_align2``
  ``pos_lower/upper``, ``rot_lower/upper``; the gripper controller normalises [-1, 1]). The arm limits are
  declared, not enforced (ManiSkill's arm controller does not clip); out-of-range steps are counted in
  ``info["action_out_of_range_steps"]``. Policies trained on the Bridge data act in a much smaller range
  (1st/99th percentiles about 0.03 m and 0.2 rad per step).
- One ManiSkill env per task, built on first use and reused for every later episode of that task; each
  episode after the first rebuilds its PhysX scene (0.2 s) the way ``gym.make`` builds it, so episode k is
  bitwise the same in any order and in any process (see ``docs/simpler_bridge.md``).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tasks.plan import EpisodeKey
from tasks.simpler_bridge import NAME, TASK_NAMES, SimplerBridgeProtocol, instruction
from vla_gym.base import VLAEnv
from vla_gym.bridge.assets import BridgeAssets, resolve_assets
from vla_gym.bridge.layouts import LAYOUTS
from vla_gym.bridge.rotation import euler_xyz_to_axis_angle, quat_to_euler_xyz
from vla_gym.bridge.vulkan import ensure_vulkan_driver, explain_render_failure
from vla_gym.contract import action_space, observation_space, validate_action
from vla_gym.images import resize_square

PROPRIO_DIM = 7
# ManiSkill3 WidowX Bridge controller config: pos_lower/upper, rot_lower/upper, normalised gripper
ACTION_LOW = (-1.0, -1.0, -1.0, -np.pi / 2, -np.pi / 2, -np.pi / 2, -1.0)
ACTION_HIGH = (1.0, 1.0, 1.0, np.pi / 2, np.pi / 2, np.pi / 2, 1.0)


class SimplerBridgeEnv(VLAEnv):
    """SimplerEnv-Bridge (see the module docstring). Scenes are built lazily, one per task, and cached."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 5}
    benchmark = NAME
    EXTRA_RESET_OPTIONS = {"task": (str, int), "episode_id": int}
    CAN_SKIP_CAMERAS = False  # the observation and the success check come from one ManiSkill step
    protocol: SimplerBridgeProtocol

    def __init__(
        self,
        protocol: str | SimplerBridgeProtocol | None = None,
        protocol_overrides: dict[str, Any] | None = None,
        action_mode: str = "contract",
        proprio: bool = False,
        assets_dir: str | Path | None = None,
        download_assets: bool = True,
        task_cache_size: int | None = None,
        render_mode: str | None = None,
        episode_pool: list[int] | None = None,
    ) -> None:
        super().__init__(
            protocol, protocol_overrides, action_mode=action_mode, render_mode=render_mode, episode_pool=episode_pool
        )
        self.proprio = bool(proprio)
        if task_cache_size is not None and task_cache_size < 1:
            raise ValueError(
                f"task_cache_size must be >= 1 or None (keep every task's scene), got {task_cache_size}"
            )
        self.task_cache_size = task_cache_size

        self.observation_space = observation_space(
            wrist=False, proprio_dim=PROPRIO_DIM if proprio else None, image_size=self.protocol.image_size
        )
        self.action_space = action_space(ACTION_LOW, ACTION_HIGH)

        assets: BridgeAssets = resolve_assets(assets_dir, download=download_assets)
        self.assets = assets
        self.asset_dir = assets.data_root
        self.asset_digest = assets.digest
        self.assets_are_standins = assets.are_standins
        self.standin_files = assets.standin_files
        self.vulkan_driver = ensure_vulkan_driver()

        self._scenes: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.scene_builds = 0  # how many ManiSkill scenes this env has built (reuse keeps it at one per task)
        self._scene: Any = None
        self._task: str | None = None
        self._task_index = -1
        self._episode_id = -1
        self._steps = 0
        self._max_steps = 0
        self._clipped = 0
        self._last_frame: np.ndarray | None = None
        self._last_info: dict[str, Any] = {}

    # ------------------------------------------------------------------ scenes
    def _scene_for(self, task: str) -> Any:
        if task in self._scenes:
            self._scenes.move_to_end(task)
            return self._scenes[task]
        from vla_gym.bridge import scenes  # imports SAPIEN: only once a scene is needed

        try:
            scene = scenes.build_scene(task, self.protocol, self.asset_dir)
        except RuntimeError as exc:
            better = explain_render_failure(exc)
            if better is not None:
                raise better from exc
            raise
        self.scene_builds += 1
        self._scenes[task] = scene
        while self.task_cache_size is not None and len(self._scenes) > self.task_cache_size:
            _, old = self._scenes.popitem(last=False)
            old.close()
        return scene

    # ------------------------------------------------------------------ reset
    def _key_from_options(self, options: Mapping[str, Any]) -> EpisodeKey | None:
        if "episode" in options and ("task" in options or "episode_id" in options):
            raise ValueError("reset options: give either 'episode' or 'task' (+ 'episode_id'), not both")
        return super()._key_from_options(options)

    def _choose(self, key: EpisodeKey | None, options: Mapping[str, Any]) -> tuple[int, str, int]:
        """(plan index or -1, task, episode_id) from the plan's key, the options or the seeded RNG."""
        if key is None and "task" in options:
            task = options["task"]
            if isinstance(task, str):
                if task not in TASK_NAMES:
                    raise KeyError(f"unknown {NAME} task {task!r}; known: {list(TASK_NAMES)}")
            else:
                if not 0 <= int(task) < len(TASK_NAMES):
                    raise ValueError(f"task index must be in 0..{len(TASK_NAMES) - 1}, got {task}")
                task = TASK_NAMES[int(task)]
            count = LAYOUTS[task].count
            if "episode_id" in options:
                episode_id = int(options["episode_id"])
                if not 0 <= episode_id < count:
                    raise ValueError(f"episode_id must be in 0..{count - 1} for {task}, got {episode_id}")
            else:
                episode_id = int(self.np_random.integers(self.protocol.episodes_per_task))
            return -1, task, episode_id
        if "episode_id" in options:
            raise ValueError(
                "reset option 'episode_id' needs 'task' too (or use 'episode': k for the plan's k-th)"
            )
        key = key or self.draw_episode()
        return key.index, key.task, key.within_task

    def _start_episode(self, key: EpisodeKey | None, options: dict[str, Any]) -> tuple[dict, dict]:
        episode, task, episode_id = self._choose(key, options)
        scene = self._scene_for(task)
        ms_obs, ms_info = scene.start_episode(episode_id)  # a fresh PhysX scene: history-free
        self._scene, self._task, self._task_index = scene, task, TASK_NAMES.index(task)
        self._episode, self._episode_id = episode, episode_id
        self._steps, self._max_steps, self._clipped = 0, self.protocol.max_steps_for(task), 0
        obs = self._observation(ms_obs)
        info = self._info(ms_info)
        return obs, info

    # ------------------------------------------------------------------ step
    def to_native_action(self, action: Any) -> np.ndarray:
        """The ManiSkill action for a contract action (rotation -> axis-angle; gripper +1 open as is)."""
        a = validate_action(action)
        if self.action_mode == "native":
            return a
        out = np.empty(7, dtype=np.float32)
        out[:3] = a[:3]
        out[3:6] = euler_xyz_to_axis_angle(a[3:6].astype(np.float64))
        out[6] = a[6]
        return out

    def _advance(self, action: Any, checked: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        native = self.to_native_action(checked)
        if abs(float(native[6])) > 1.0:
            self._clipped += 1  # ManiSkill's gripper controller clips to [-1, 1]
        ms_obs, _, _, _, ms_info = self._scene.step(native)
        self._steps += 1
        obs = self._observation(ms_obs)
        info = self._info(ms_info)
        terminated = self.protocol.success == "first_step" and info["success"]
        truncated = not terminated and self._steps >= self._max_steps
        if terminated or truncated:
            info["episode_metrics"] = {
                "grasped_any": info["grasped_any"],
                "grasped_consecutive": info["grasped_consecutive"],
                "gripper_clipped_steps": self._clipped,
                "action_out_of_range_steps": self._out_of_range,
                # every record says which assets scored it, so stand-in runs are never taken for benchmark numbers
                "asset_digest": self.asset_digest,
                "assets_are_standins": self.assets_are_standins,
            }
        return obs, float(info["success"]), terminated, truncated, info

    # ------------------------------------------------------------------ views
    def _observation(self, ms_obs: dict[str, Any]) -> dict[str, Any]:
        frame = ms_obs["sensor_data"][self.protocol.camera]["rgb"][0].cpu().numpy()
        self._last_frame = frame
        image = resize_square(frame, self.protocol.image_size, self.protocol.resize_interpolation)
        obs: dict[str, Any] = {
            "image": np.ascontiguousarray(image, dtype=np.uint8),
            "language": instruction(self._task),
        }
        if self.proprio:
            obs["proprio"] = self._proprio()
        return obs

    def _info(self, ms_info: dict[str, Any]) -> dict[str, Any]:
        info = {
            "success": bool(ms_info["success"][0]),
            "task": self._task,
            "task_index": self._task_index,
            "episode": self._episode,
            "episode_id": self._episode_id,
            "elapsed_steps": self._steps,
            "grasped": bool(self._scene.consecutive_grasp[0] > 0),
            "grasped_any": bool(ms_info["is_src_obj_grasped"][0]),
            "grasped_consecutive": bool(ms_info["consecutive_grasp"][0]),
            "gripper_clipped_steps": self._clipped,
            "action_out_of_range_steps": self._out_of_range,
        }
        self._last_info = info
        return info

    def _tcp_in_base(self) -> tuple[np.ndarray, np.ndarray]:
        robot = self._scene.agent.robot
        ee = robot.links_map["ee_gripper_link"].pose
        rel = robot.pose.inv() * ee
        return rel.p[0].cpu().numpy().astype(np.float64), rel.q[0].cpu().numpy().astype(np.float64)

    def _finger_qpos(self) -> np.ndarray:
        robot = self._scene.agent.robot
        names = [j.name for j in robot.active_joints]
        qpos = robot.get_qpos()[0].cpu().numpy()
        return np.array([qpos[names.index("left_finger")], qpos[names.index("right_finger")]])

    def _proprio(self) -> np.ndarray:
        p, q = self._tcp_in_base()
        return np.concatenate([p, quat_to_euler_xyz(q), [self._finger_qpos().mean()]]).astype(np.float32)

    def render(self) -> np.ndarray | None:
        """The last camera frame at its render size (green-screened), for videos."""
        if self.render_mode != "rgb_array":
            return None
        return None if self._last_frame is None else self._last_frame.copy()

    def privileged_state(self) -> dict[str, Any]:
        """Simulator ground truth for scripted experts (poses as 7 floats: xyz + quaternion w, x, y, z)."""
        if self._scene is None:
            raise RuntimeError("call reset() before privileged_state()")
        scene = self._scene

        def pose7(pose: Any) -> np.ndarray:
            return pose.raw_pose[0].cpu().numpy().astype(np.float64)

        robot = scene.agent.robot
        tcp_p, tcp_q = self._tcp_in_base()
        fingers = self._finger_qpos()
        lo, hi = 0.015, 0.037  # the WidowX fingers' closed and open positions (metres)
        return {
            "task": self._task,
            "episode_id": self._episode_id,
            "elapsed_steps": self._steps,
            "source_name": scene.source_obj_name,
            "target_name": scene.target_obj_name,
            "source_pose": pose7(scene.objs[scene.source_obj_name].pose),
            "target_pose": pose7(scene.objs[scene.target_obj_name].pose),
            "object_poses": {name: pose7(actor.pose) for name, actor in scene.objs.items()},
            "source_bbox_size": scene.episode_source_obj_bbox_world.cpu().numpy().astype(np.float64),
            "target_bbox_size": scene.episode_target_obj_bbox_world.cpu().numpy().astype(np.float64),
            "robot_base_pose": pose7(robot.pose),
            "tcp_pose": pose7(robot.links_map["ee_gripper_link"].pose),
            "tcp_pose_in_base": np.concatenate([tcp_p, tcp_q]),
            "gripper_qpos": fingers,
            "gripper_openness": float(np.clip((fingers.mean() - lo) / (hi - lo), 0.0, 1.0)),
            "grasped": self._last_info.get("grasped", False),
            "grasped_any": self._last_info.get("grasped_any", False),
            "grasped_consecutive": self._last_info.get("grasped_consecutive", False),
            "success": self._last_info.get("success", False),
        }

    def teleport_object(self, name: str, position: Any, quat: Any | None = None) -> None:
        """Privileged: place object ``name`` at ``position`` (world xyz; quaternion w, x, y, z kept if None),
        at rest. For scripted experts and tests, never for scoring a policy."""
        if self._scene is None:
            raise RuntimeError("call reset() before teleport_object()")
        import torch
        from mani_skill.utils.structs.pose import Pose

        if name not in self._scene.objs:
            raise KeyError(f"no object {name!r} in {self._task}; objects: {sorted(self._scene.objs)}")
        actor = self._scene.objs[name]
        p = torch.as_tensor(np.asarray(position, dtype=np.float32).reshape(1, 3))
        q = (
            actor.pose.q
            if quat is None
            else torch.as_tensor(np.asarray(quat, dtype=np.float32).reshape(1, 4))
        )
        actor.set_pose(Pose.create_from_pq(p=p, q=q))
        actor.set_linear_velocity(torch.zeros(1, 3))
        actor.set_angular_velocity(torch.zeros(1, 3))

    def close(self) -> None:
        while self._scenes:
            _, scene = self._scenes.popitem()
            scene.close()
        self._scene = None
        super().close()
