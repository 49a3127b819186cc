"""``VLA/Calvin-v0``: CALVIN ABC->D (scene D) as a Gymnasium env whose episode is a 5-task chain.

Reset options (all optional):

- ``episode`` (int): chain k of the protocol's plan: its initial condition and its five tasks.
- ``task`` (str) or ``tasks`` (list of str): a single task (or a custom sequence) instead of the chain's
  tasks, started from the scene of ``condition`` if given, else of chain ``episode``, else of a chain picked
  by the seed. ``info["episode"]`` is then -1 unless the scene came from ``episode``.
- ``condition`` (dict): an initial condition in the chains file's format (needs ``task``/``tasks``).

With the protocol's single-task episodes (``protocol.tasks``, see :mod:`tasks.calvin`), ``episode`` k runs the
one task of the plan's episode k from chain k's scene (a chain outside the plan raises ``ValueError``).

Without options the seed picks a chain (an episode of the plan). Every reset rebuilds the PyBullet world from
scratch (about 0.25 s), so an episode's physics never depends on what ran before it in the process.

``render_cameras=False`` returns black images (for agents that read only ``privileged_state()``, such as the
scripted expert; rendering changes no simulator state, so their outcomes are the same).

Per step: the action moves the robot's target pose, 8 physics substeps run, the button/switch logic runs,
then the current subtask's check compares the state at the start of the subtask with the current one. A
success starts the next subtask at once (``info["subtask_changed"]``); the episode terminates after the last
success or when a subtask reaches ``max_steps_per_subtask`` steps without success.

``info["success"]`` is True only on the step that completes the whole chain (all of its tasks);
``info["subtask_success"]`` is True on every step that completes a subtask; ``info["chain_length"]`` counts
the subtasks completed so far. Every ``info`` value keeps its type and shape on every step (vector envs and
replay buffers rely on it); the chain's task list and per-subtask steps and outcomes are in
``info["episode_metrics"]`` on the last step (and ``env.unwrapped.chain_tasks`` while it runs).

Reward: 1.0 on each step that completes a subtask, else 0.0; an episode's return is its chain length.

Action space: Box [-1, 1]^7, the range of CALVIN's relative actions: calvin_env (``utils.to_relative_action``)
divides the TCP motion by 0.02 m / 0.05 rad and clips to [-1, 1], which is the range of the dataset's
``rel_actions``; the gripper is -1 / +1. The range is declared, not enforced: an action outside it is scaled
and applied as calvin_env applies it (``MAX_REL_POS`` / ``MAX_REL_ORN``, no clipping) and counted in
``info["action_out_of_range_steps"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tasks.calvin import BENCHMARK, TASK_NAMES, CalvinProtocol, instruction, single_task_for
from tasks.plan import EpisodeKey
from tasks.protocol import Protocol
from vla_gym import contract
from vla_gym.base import VLAEnv
from vla_gym.calvin import predicates
from vla_gym.calvin.assets import resolve_data_dir
from vla_gym.calvin.conditions import load_chains, scene_obs_for
from vla_gym.calvin.robot import GRIPPER_JOINTS
from vla_gym.calvin.scene import BLOCKS
from vla_gym.calvin.world import CalvinWorld
from vla_gym.images import resize_square

PROPRIO_DIM = 15  # robot_obs


class CalvinEnv(VLAEnv):
    """Scene D of CALVIN with the published evaluation protocol (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    benchmark = BENCHMARK.name
    EXTRA_RESET_OPTIONS = {"task": str, "tasks": (list, tuple), "condition": dict}
    protocol: CalvinProtocol

    def __init__(
        self,
        protocol: str | Protocol | None = None,
        protocol_overrides: dict[str, Any] | None = None,
        action_mode: str = "contract",
        proprio: bool = False,
        data_dir: str | None = None,
        download: bool = True,
        render_mode: str | None = None,
        render_cameras: bool = True,
        episode_pool: list[int] | None = None,
    ) -> None:
        super().__init__(
            protocol,
            protocol_overrides,
            action_mode=action_mode,
            render_mode=render_mode,
            episode_pool=episode_pool,
            render_cameras=render_cameras,
        )
        self.proprio = bool(proprio)
        self.data_dir = resolve_data_dir(data_dir, download_missing=download)
        self.chains = load_chains(self.data_dir)
        if len(self.chains) < self.protocol.num_chains:
            raise ValueError(f"the chains file has {len(self.chains)} chains, the protocol needs {self.protocol.num_chains}")
        self._wrist = "gripper" in self.protocol.cameras
        self.observation_space = contract.observation_space(
            wrist=self._wrist, proprio_dim=PROPRIO_DIM if self.proprio else None, image_size=self.protocol.image_size
        )
        self.action_space = contract.action_space(-1.0, 1.0)
        # Built at the first reset, not here: gymnasium's AsyncVectorEnv builds an env in the parent only to read
        # its spaces and then forks, and an EGL context made before a fork hangs the children.
        self._world: CalvinWorld | None = None
        self._tasks: tuple[str, ...] = ()
        self._index = 0
        self._start: predicates.Snapshot | None = None
        self._subtask_steps: list[int] = []
        self._subtask_success: list[bool] = []
        self._gripper_thresholded = 0
        self._steps = 0
        self._last_obs: dict[str, Any] | None = None

    @property
    def world(self) -> CalvinWorld:
        """The PyBullet world (built at the first reset)."""
        if self._world is None:
            self._world = CalvinWorld(
                self.data_dir,
                renderer=self.protocol.renderer,
                button_mode=self.protocol.button_mode,
                camera_sizes={"static": self.protocol.static_size, "gripper": self.protocol.gripper_size},
                renderer_state=self.protocol.renderer_state,
            )
        return self._world

    # ----------------------------------------------------------------------------------------------- reset
    def _key_from_options(self, options: Mapping[str, Any]) -> EpisodeKey | None:
        if "task" in options or "tasks" in options:
            return None  # "episode" then names the chain whose scene the custom tasks start from
        return super()._key_from_options(options)

    def _start_episode(self, key: EpisodeKey | None, options: dict[str, Any]) -> tuple[dict, dict]:
        condition, tasks, episode = self._choose(key, options)
        self.world.reset_to(scene_obs_for(condition))
        self._tasks = tasks
        self._episode = episode
        self._index = 0
        self._subtask_steps = [0]
        self._subtask_success = []
        self._gripper_thresholded = 0
        self._steps = 0
        self._start = self._snapshot()
        obs = self._observe()
        return obs, self._info(subtask_changed=True, subtask_success=False)

    def _choose(
        self, key: EpisodeKey | None, opts: dict[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, ...], int]:
        if "task" in opts and "tasks" in opts:
            raise ValueError("give either reset option 'task' or 'tasks', not both")
        custom: tuple[str, ...] | None = None
        if "task" in opts:
            custom = (opts["task"],)
        elif "tasks" in opts:
            custom = tuple(opts["tasks"])
            if not custom:
                raise ValueError("reset option 'tasks' must name at least one task")
        if custom is not None:
            for task in custom:
                instruction(task)  # KeyError naming the known tasks
        elif "condition" in opts:
            raise ValueError("reset option 'condition' needs 'task' or 'tasks' (which tasks to run from it)")
        if custom is not None and "condition" in opts:
            return dict(opts["condition"]), custom, -1
        if custom is not None and "episode" in opts:
            k = int(opts["episode"])  # a chain's scene: any chain of the protocol, planned or not
            n = self.protocol.num_chains
            if not 0 <= k < n:
                raise ValueError(f"reset option episode={k} is out of range: the protocol has chains 0..{n - 1}")
        else:
            k = (key or self.draw_episode()).index
        condition, chain_tasks = self.chains[k]
        if custom is not None:
            return condition, custom, k if "episode" in opts else -1
        if self.protocol.tasks:
            task = single_task_for(condition, self.protocol.tasks)
            assert task is not None, f"chain {k} is in the plan, so one of the protocol's tasks applies"
            return condition, (task,), k
        return condition, chain_tasks[: self.protocol.chain_length], k

    # ------------------------------------------------------------------------------------------------ step
    def _advance(self, action: Any, checked: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        act = self._convert(checked)
        self.world.step(act)
        self._steps += 1
        self._subtask_steps[-1] += 1
        now = self._snapshot()
        assert self._start is not None
        task = self._tasks[self._index]
        solved = predicates.solved(task, self._start, now)
        changed = False
        terminated = False
        if solved:
            self._subtask_success.append(True)
            self._index += 1
            if self._index == len(self._tasks):
                terminated = True
            else:
                self._start = now  # the next subtask starts from this state, without a reset
                self._subtask_steps.append(0)
                changed = True
        elif self._subtask_steps[-1] >= self.protocol.max_steps_per_subtask:
            self._subtask_success.append(False)
            terminated = True
        obs = self._observe()
        info = self._info(subtask_changed=changed, subtask_success=solved)
        if terminated:
            info["episode_metrics"] = {
                "chain_length": int(sum(self._subtask_success)),
                "chain_tasks": list(self._tasks),
                "subtask_success": list(self._subtask_success),
                "subtask_steps": list(self._subtask_steps),
                "action_out_of_range_steps": self._out_of_range,
            }
        reward = 1.0 if solved else 0.0
        return obs, reward, terminated, False, info

    def _convert(self, checked: np.ndarray) -> np.ndarray:
        act = checked.astype(np.float64)  # calvin_env scales the float32 action (see tasks/calvin.py)
        g = act[6]
        if self.action_mode == "native":
            if g not in (1.0, -1.0):
                raise ValueError(f"native CALVIN actions need the gripper exactly +1 (open) or -1 (close), got {g}")
            return act
        if g not in (1.0, -1.0):
            self._gripper_thresholded += 1
        act[6] = 1.0 if g > self.protocol.gripper_threshold else -1.0
        return act

    # ------------------------------------------------------------------------------------ observation/info
    def _snapshot(self) -> predicates.Snapshot:
        return predicates.snapshot(self.world.cid, self.world.robot.uid, self.world.table)

    def _resize(self, image: np.ndarray) -> np.ndarray:
        return resize_square(image, self.protocol.image_size, self.protocol.resize_interpolation)

    def _observe(self) -> dict[str, Any]:
        if self._render_cameras:
            images = {k: self._resize(v) for k, v in self.world.observe_images(gripper=self._wrist).items()}
        else:  # rendering changes no simulator state: privileged agents' outcomes are the same
            black = np.zeros((self.protocol.image_size, self.protocol.image_size, 3), dtype=np.uint8)
            images = {"static": black, "gripper": black.copy()}
        obs: dict[str, Any] = {"image": images["static"]}
        if self._wrist:
            obs["wrist_image"] = images["gripper"]
        obs["language"] = instruction(self._tasks[min(self._index, len(self._tasks) - 1)])
        if self.proprio:
            obs["proprio"] = self.world.robot.observation().astype(np.float32)
        self._last_obs = obs
        return obs

    def _info(self, *, subtask_changed: bool, subtask_success: bool) -> dict[str, Any]:
        current = self._tasks[min(self._index, len(self._tasks) - 1)]
        return {
            "success": self._index == len(self._tasks),
            "task": current,
            "task_index": TASK_NAMES.index(current),
            "episode": self._episode,
            "subtask_index": min(self._index, len(self._tasks) - 1),
            "subtask_changed": subtask_changed,
            "subtask_success": subtask_success,
            "chain_length": int(sum(self._subtask_success)),
            "subtask_step": self._subtask_steps[-1],
            "gripper_thresholded": self._gripper_thresholded,
            "action_out_of_range_steps": self._out_of_range,
            "steps": self._steps,
        }

    @property
    def chain_tasks(self) -> tuple[str, ...]:
        """The tasks of the running episode, in order (``episode_metrics["chain_tasks"]`` at its end)."""
        return self._tasks

    # --------------------------------------------------------------------------------------------- extras
    # render_cameras (VLAEnv): set it between episodes: EGL's images depend on how many were rendered since
    # the reset.

    def privileged_state(self) -> dict[str, Any]:
        """Simulator ground truth for scripted experts (not for real policies)."""
        world = self.world
        robot, table = world.robot, world.table
        tcp_pos, tcp_orn = robot.tcp_pose()
        snap = self._snapshot()
        blocks = {
            name: {
                "pos": snap.blocks[name].pos.copy(),
                "orn": snap.blocks[name].orn.copy(),
                "lin_vel": snap.blocks[name].lin_vel.copy(),
                "ang_vel": snap.blocks[name].ang_vel.copy(),
                "contacts": sorted(snap.blocks[name].contacts),
            }
            for name, _ in BLOCKS
        }
        robot_obs = robot.observation()
        return {
            "robot_obs": robot_obs,
            "scene_obs": table.observation(),
            "tcp_pos": np.array(tcp_pos),
            "tcp_orn": np.array(tcp_orn),
            "tcp_target_pos": robot.target_pos.copy(),
            "tcp_target_euler": robot.target_orn.copy(),
            "arm_joints": robot_obs[7:14].copy(),
            "gripper_width": float(robot_obs[6]),
            "gripper_joints": list(GRIPPER_JOINTS),
            "blocks": blocks,
            "doors": dict(snap.doors),
            "button_joint": table.joint_state("base__button"),
            "switch_joint": table.joint_state("base__switch"),
            "lights": dict(snap.lights),
            "button_toggle_on": table.button_on,
            "body_ids": {"robot": robot.uid, "table": table.table, "plane": table.plane, **table.blocks},
            "table_links": dict(table.links),
            # drawer / slide / switch / button: joint, limits, world axis, link pose, named world points
            "fixtures": table.fixtures(),
            "tasks": list(self._tasks),
            "subtask_index": self._index,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        if self._last_obs is None:
            raise RuntimeError("call reset() before render()")
        return self._last_obs["image"]

    def close(self) -> None:
        world = getattr(self, "_world", None)
        if world is not None:
            world.close()
            self._world = None
        super().close()
