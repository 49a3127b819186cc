"""``VLA/LiberoLong-v0``: LIBERO-10 (hf-libero + robosuite 1.4 + MuJoCo) behind the vla-gym contract.

One LIBERO env is kept per task and reused across its episodes; it is rebuilt only when the task changes.
Every episode starts with a hard reset whose fixture-placement RNG is pinned (see ``vla_gym.libero.sim``),
then the init state from hf-libero's files, then the protocol's settle no-ops, so episode k is bitwise the
same whatever ran before it, in any process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from tasks.libero_long import INIT_STATES_PER_FILE, LiberoLongProtocol, LiberoSuiteBenchmark, instruction
from tasks.plan import EpisodeKey
from vla_gym import contract
from vla_gym.base import VLAEnv
from vla_gym.libero import observation as obs_utils
from vla_gym.libero import sim, suite
from vla_gym.libero.assets import resolve_assets
from vla_gym.rendering import select_gl_backend


class LiberoLongEnv(VLAEnv):
    """LIBERO-Long with the vla-gym contract.

    Observation: ``image`` (agentview) and ``wrist_image`` (eye-in-hand) uint8 (224, 224, 3) upright,
    ``language``, plus ``proprio`` float32 (8,) when ``proprio=True`` and ``image_native`` (the upright
    agentview at the protocol's render size, e.g. 256) when ``native_image=True``.
    Action: ``[dx, dy, dz, drot(3), gripper]`` for robosuite's OSC_POSE controller (the LIBERO datasets'
    actions), gripper +1 open / -1 close; ``action_mode="native"`` takes LIBERO's own action (-1 open).
    Action space: Box [-1, 1]^7, OSC_POSE's ``input_min`` / ``input_max`` (robosuite 1.4
    ``controllers/config/osc_pose.json``; scaled to 0.05 m and 0.5 rad per step) and the gripper's [-1, 1].
    robosuite clips input outside it, as it always did; such steps are counted in
    ``info["action_out_of_range_steps"]``.
    Reward: 1.0 on the step where every goal predicate holds (the episode terminates there), else 0.0.
    Either way robosuite receives ``list`` of 7 Python floats, the action at the protocol's ``action_dtype``
    precision (default float64: the values as given, not rounded to float32).

    Kwargs: ``protocol`` (name or :class:`LiberoLongProtocol`), ``protocol_overrides``, ``action_mode``,
    ``proprio``, ``native_image``, ``render_mode`` (``"rgb_array"``: the upright agentview at render size),
    ``assets_dir`` / ``download_assets`` / ``cache_dir`` (see ``vla_gym.libero.assets``) and ``gl``
    (``"egl"`` / ``"osmesa"``; default automatic, or ``MUJOCO_GL``), ``episode_pool`` (plan indices a reset
    without options draws from with its seed; default the whole plan), ``render_cameras`` (default True;
    False skips the cameras and returns black images: for agents that read only ``privileged_state()``,
    such as the scripted expert, about 10x faster on a CPU; rendering changes no simulator state, so their
    outcomes are the same).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    benchmark = "libero_long"
    EXTRA_RESET_OPTIONS = {"task": (int, str), "init_state": int}
    protocol: LiberoLongProtocol

    def __init__(
        self,
        protocol: str | LiberoLongProtocol | None = None,
        protocol_overrides: Mapping[str, Any] | None = None,
        action_mode: str = "contract",
        proprio: bool = False,
        native_image: bool = False,
        render_mode: str | None = None,
        assets_dir: str | os.PathLike[str] | None = None,
        download_assets: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        gl: str | None = None,
        episode_pool: Sequence[int] | None = None,
        render_cameras: bool = True,
    ) -> None:
        super().__init__(
            protocol,
            protocol_overrides,
            action_mode=action_mode,
            render_mode=render_mode,
            episode_pool=episode_pool,
            render_cameras=render_cameras,
        )
        bench = self.benchmark_spec
        assert isinstance(bench, LiberoSuiteBenchmark)
        self.task_names: tuple[str, ...] = bench.task_names
        self._title = bench.title
        self._proprio = bool(proprio)
        self._native_image = bool(native_image)
        self._assets_dir = assets_dir
        self._download_assets = download_assets
        self._cache_dir = cache_dir
        self._gl = gl

        space = contract.observation_space(
            wrist="robot0_eye_in_hand" in self.protocol.cameras,
            proprio_dim=obs_utils.PROPRIO_DIM if self._proprio else None,
            image_size=self.protocol.image_size,
        )
        parts = dict(space.spaces)
        if self._native_image:
            parts["image_native"] = contract.image_space(self.protocol.render_size)
        self.observation_space = spaces.Dict(parts)
        self.action_space = contract.action_space(-1.0, 1.0)

        self._raw: Any = None  # hf-libero OffScreenRenderEnv of the current task
        self._raw_task: int | None = None
        self._assets: Path | None = None
        self._task_index = -1
        self._init_state = -1
        self._policy_steps = 0
        self._settle_done = 0
        self._counter = 0  # the paper loop's shared counter (interleaved settle mode)
        self._success = False
        self._last_raw_obs: dict[str, Any] | None = None

    # ------------------------------------------------------------------ episode selection
    def _key_from_options(self, options: Mapping[str, Any]) -> EpisodeKey | None:
        if "episode" in options and ("task" in options or "init_state" in options):
            raise ValueError("give either options={'episode': k} or options={'task': i, 'init_state': j}, not both")
        return super()._key_from_options(options)

    def _select(self, key: EpisodeKey | None, opts: Mapping[str, Any]) -> tuple[int, int, int]:
        """(task_index, init_state, episode): the plan's ``key``, else the ``task`` / ``init_state`` options,
        the seeded ``np_random`` picking what is left open."""
        if key is None and "init_state" in opts and "task" not in opts:
            raise ValueError("options['init_state'] needs options['task'] too (or use options={'episode': k})")
        if key is None and "task" in opts:
            task = _task_index(opts["task"], self.task_names, self._title)
            per_task = self.protocol.init_states_per_task
            if "init_state" in opts:
                init_state = int(opts["init_state"])
                if not 0 <= init_state < INIT_STATES_PER_FILE:
                    raise ValueError(
                        f"init_state {init_state} does not exist: LIBERO has 0..{INIT_STATES_PER_FILE - 1}"
                    )
            else:
                init_state = int(self.np_random.integers(per_task))
            episode = task * per_task + init_state if init_state < per_task else -1
            return task, init_state, episode
        key = key or self.draw_episode()
        return key.task_index, key.within_task, key.index

    # ------------------------------------------------------------------ simulator lifetime
    def _ensure_task(self, task_index: int) -> None:
        if self._raw is not None and self._raw_task == task_index:
            return
        self._close_raw()
        select_gl_backend(self._gl)
        if self._assets is None:
            self._assets = resolve_assets(
                self._assets_dir, download=self._download_assets, cache_dir=self._cache_dir
            )
        self._raw = sim.build(self.task_names[task_index], self.protocol, self._assets)
        self._raw_task = task_index

    def _close_raw(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None
            self._raw_task = None

    # ------------------------------------------------------------------ gym API
    def _start_episode(self, key: EpisodeKey | None, options: dict[str, Any]) -> tuple[dict, dict]:
        task_index, init_state, episode = self._select(key, options)
        self._ensure_task(task_index)
        self._task_index, self._init_state, self._episode = task_index, init_state, episode
        protocol = self.protocol

        sim.pinned_reset(self._raw, protocol.fixture_seed)
        states = suite.load_init_states(self.task_names[task_index], protocol.suite)
        raw_obs = self._raw.set_init_state(states[init_state])
        self._policy_steps = 0
        self._settle_done = 0
        self._counter = 0
        if protocol.settle_mode == "before":
            raw_obs = self._noops(protocol.settle_steps, raw_obs)
        elif protocol.settle_steps > 0:  # the paper's loop: a no-op before the first policy step
            raw_obs = self._noops(1, raw_obs)
            self._counter = 1
        self._success = bool(self._raw.check_success())
        self._last_raw_obs = raw_obs
        return self._observation(raw_obs), self._info()

    def _advance(self, action: Any, checked: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        native = self._native_action(action, checked)
        with _cameras_off(self._raw, self.protocol.cameras, enabled=not self._render_cameras):
            raw_obs, _, done, _ = self._raw.step(native)
        self._policy_steps += 1
        terminated = bool(done)
        truncated = False
        protocol = self.protocol
        if protocol.settle_mode == "before":
            truncated = not terminated and self._policy_steps >= protocol.max_steps
        else:
            self._counter += 1
            limit = protocol.max_steps + protocol.settle_steps
            truncated = not terminated and self._counter >= limit
            if not terminated and not truncated and self._counter < protocol.settle_steps:
                raw_obs = self._noops(1, raw_obs)  # its own success is not checked, as in the paper
                self._counter += 1
        self._success = terminated
        self._last_raw_obs = raw_obs
        info = self._info()
        if terminated or truncated:
            info["episode_metrics"] = {
                "policy_steps": self._policy_steps,
                "settle_steps": self._settle_done,
                "success": self._success,
                "action_out_of_range_steps": self._out_of_range,
            }
        return self._observation(raw_obs), float(terminated), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array" or self._last_raw_obs is None:
            return None
        return self._camera(self._last_raw_obs, "agentview_image")

    def close(self) -> None:
        self._close_raw()
        self._last_raw_obs = None
        self._over = True

    # ------------------------------------------------------------------ internals
    def _native_action(self, action: Any, checked: np.ndarray) -> list[float]:
        """What robosuite receives, as the published loops hand it over (``action.tolist()``): a list of 7
        Python floats holding the action at the protocol's ``action_dtype`` precision ("float64": the values
        as given, float32 or float64 alike; "float32": rounded to float32 first), the gripper negated in the
        contract mode (exact)."""
        if self.protocol.action_dtype == "float64":
            native = np.asarray(action, dtype=np.float64).copy()
        else:
            native = checked.astype(np.float64)
        if self.action_mode == "contract":
            native[6] = -native[6]  # contract +1 = open; LIBERO's simulator: -1 = open
        return native.tolist()

    def _noops(self, count: int, raw_obs: dict[str, Any]) -> dict[str, Any]:
        """``count`` settle no-ops, each the protocol's ``settle_action`` as a fresh list of the same Python
        numbers the published loop passes; cameras render only on the last one (rendering changes no state,
        and the observation of the earlier ones is discarded)."""
        for i in range(count):
            off = i < count - 1 or not self._render_cameras
            with _cameras_off(self._raw, self.protocol.cameras, enabled=off):
                raw_obs, _, _, _ = self._raw.step(list(self.protocol.settle_action))
            self._settle_done += 1
        return raw_obs

    def _observation(self, raw_obs: dict[str, Any]) -> dict[str, Any]:
        p = self.protocol
        agentview = self._camera(raw_obs, "agentview_image")
        out: dict[str, Any] = {"image": obs_utils.resize(agentview, p.image_size, p.resize_interpolation)}
        if "robot0_eye_in_hand" in p.cameras:
            wrist = self._camera(raw_obs, "robot0_eye_in_hand_image")
            out["wrist_image"] = obs_utils.resize(wrist, p.image_size, p.resize_interpolation)
        out["language"] = instruction(self.task_names[self._task_index])
        if self._proprio:
            out["proprio"] = obs_utils.proprio(raw_obs)
        if self._native_image:
            out["image_native"] = agentview
        return out

    def _camera(self, raw_obs: dict[str, Any], key: str) -> np.ndarray:
        """A camera's upright image at render size (black when the cameras are off)."""
        if not self._render_cameras:
            size = self.protocol.render_size
            return np.zeros((size, size, 3), dtype=np.uint8)
        return obs_utils.upright(raw_obs[key], self.protocol.image_rotation)

    def _info(self) -> dict[str, Any]:
        return {
            "success": self._success,
            "task": self.task_names[self._task_index],
            "task_index": self._task_index,
            "episode": self._episode,
            "init_state": self._init_state,
            "policy_steps": self._policy_steps,
            "action_out_of_range_steps": self._out_of_range,
        }

    # ------------------------------------------------------------------ ground truth (not for policies)
    @property
    def bddl_problem(self) -> dict[str, Any]:
        """hf-libero's parsed BDDL problem of the current task (objects, fixtures, regions, ``goal_state``).
        Read-only by convention; available after the first reset."""
        return self._require_raw().env.parsed_problem

    @property
    def goal_predicates(self) -> list[tuple[str, ...]]:
        """The task's goal as a conjunction of predicates, e.g. ``[("turnon", "flat_stove_1"), ("on",
        "moka_pot_1", "flat_stove_1_cook_region")]``; success = all hold."""
        return [tuple(p) for p in self.bddl_problem["goal_state"]]

    def sim_snapshot(self) -> dict[str, np.ndarray]:
        """The simulator's full state (MuJoCo state vector and model body poses), for reproducibility checks."""
        return sim.snapshot(self._require_raw())

    def privileged_state(self) -> dict[str, Any]:
        """Simulator ground truth for scripted experts and debugging. NOT available to real policies.

        Returns ``objects`` {name: {"pos" (3,), "quat" (4,) wxyz, "fixture" bool}} for every BDDL object and
        fixture (world frame), ``joints`` {joint name: qpos array} for every object joint (doors, drawers,
        knobs, free joints), ``robot`` {"eef_pos", "eef_quat" (4,) wxyz, "joint_pos", "gripper_qpos"},
        ``goal`` [(predicate, args..., holds)] and ``success``; plus the scene geometry of
        :func:`vla_gym.libero.sim.scene_geometry`: ``sites`` (BDDL regions), ``boxes`` (collision boxes in
        each object's frame), ``joint_frames`` and ``bodies`` (articulated fixtures) and ``robot_base``.
        All arrays are copies: changing them changes nothing in the simulator.
        """
        raw = self._require_raw()
        inner = raw.env
        data = raw.sim.data
        objects: dict[str, Any] = {}
        joints: dict[str, np.ndarray] = {}
        for group, is_fixture in ((inner.objects_dict, False), (inner.fixtures_dict, True)):
            for name, obj in group.items():
                body = inner.obj_body_id[name]
                objects[name] = {
                    "pos": np.array(data.body_xpos[body]),
                    "quat": np.array(data.body_xquat[body]),
                    "fixture": is_fixture,
                }
                for joint in getattr(obj, "joints", []):
                    joints[joint] = np.array(data.get_joint_qpos(joint), ndmin=1)
        robot = inner.robots[0]
        eef_site = robot.eef_site_id
        goal = [(*p, bool(inner._eval_predicate(p))) for p in inner.parsed_problem["goal_state"]]
        return {
            "objects": objects,
            "joints": joints,
            "robot": {
                "eef_pos": np.array(data.site_xpos[eef_site]),
                "eef_quat": _mat_to_quat_wxyz(data.site_xmat[eef_site]),
                "joint_pos": np.array(data.qpos[robot._ref_joint_pos_indexes]),
                "gripper_qpos": np.array(data.qpos[robot._ref_gripper_joint_pos_indexes]),
            },
            "goal": goal,
            "success": all(g[-1] for g in goal),
            **sim.scene_geometry(raw),
        }

    def _require_raw(self) -> Any:
        if self._raw is None:
            raise RuntimeError("no task is loaded yet: call reset() first")
        return self._raw


class _cameras_off:  # noqa: N801 - used as a context manager
    """Temporarily replace the camera observables' render functions by a cheap stand-in (robosuite 1.4)."""

    def __init__(self, raw: Any, cameras: tuple[str, ...], enabled: bool) -> None:
        self._observables = raw.env._observables if enabled else {}
        self._names = [f"{cam}_image" for cam in cameras] if enabled else []
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> None:
        for name in self._names:
            observable = self._observables[name]
            self._saved[name] = observable._sensor
            observable._sensor = _blank_sensor(observable._sensor)

    def __exit__(self, *exc: object) -> None:
        for name, sensor in self._saved.items():
            self._observables[name]._sensor = sensor


def _blank_sensor(real: Any) -> Any:
    def blank(obs_cache: dict[str, Any]) -> np.ndarray:
        return np.zeros((1, 1, 3), dtype=np.uint8)

    blank.__modality__ = getattr(real, "__modality__", "image")
    return blank


def _mat_to_quat_wxyz(xmat: np.ndarray) -> np.ndarray:
    import mujoco

    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(xmat, dtype=np.float64).reshape(9))
    return quat


def _task_index(task: int | str, task_names: tuple[str, ...], benchmark: str) -> int:
    if isinstance(task, str):
        if task not in task_names:
            raise KeyError(f"unknown {benchmark} task {task!r}; known: {list(task_names)}")
        return task_names.index(task)
    index = int(task)
    if not 0 <= index < len(task_names):
        raise ValueError(f"task index {index} is out of range: {benchmark} has tasks 0..{len(task_names) - 1}")
    return index


class LiberoSpatialEnv(LiberoLongEnv):
    """``VLA/LiberoSpatial-v0``: LIBERO-Spatial, otherwise as :class:`LiberoLongEnv`."""

    benchmark = "libero_spatial"


class LiberoObjectEnv(LiberoLongEnv):
    """``VLA/LiberoObject-v0``: LIBERO-Object, otherwise as :class:`LiberoLongEnv`."""

    benchmark = "libero_object"


class LiberoGoalEnv(LiberoLongEnv):
    """``VLA/LiberoGoal-v0``: LIBERO-Goal, otherwise as :class:`LiberoLongEnv`."""

    benchmark = "libero_goal"


class Libero90Env(LiberoLongEnv):
    """``VLA/Libero90-v0``: LIBERO-90, otherwise as :class:`LiberoLongEnv`."""

    benchmark = "libero_90"
