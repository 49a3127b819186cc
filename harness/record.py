"""``python -m harness.record env=<name> policy=<name> [overrides]``: record an agent's episodes as a dataset.

Runs like ``harness.evaluate`` (same plan selection, parallel env workers, resumable result store) and, inside
each env worker, a recording wrapper saves every episode it runs: the observation before each step, the
action given to ``env.step`` (the contract action as executed, after the harness's chunking), the instruction
at each step, and the episode's key, protocol digest and outcome. Typical use, demonstrations of the scripted
expert for one CALVIN task::

    python -m harness.record env=calvin env.protocol=vlm4vla_static policy=expert \
        +env.protocol_overrides.tasks=[lift_red_block_table] episodes_per_task=80 num_envs=2 \
        record.image_size=64 output_dir=data/lift_red

The folder (dataset format version 1)::

    run.json, config.yaml, episodes.jsonl   the harness's result store (resume: run the command again)
    dataset.json                            what the dataset is (see DATASET_FIELDS) and its episode list
    episodes/episode_<k>.npz                one file per finished episode k (plan index), written atomically

Each ``episode_<k>.npz`` holds (T = steps of the episode):

    image        uint8 (T, S, S, 3)   the main camera before each step (S = record.image_size or the env's)
    wrist_image  uint8 (T, S, S, 3)   when the env has one
    proprio      float32 (T, D)       when the env provides it (env.kwargs.proprio=true)
    actions      float32 (T, 7)       the contract action passed to env.step at each step
    language     str (T,)             the instruction at each step (CALVIN chains change it per subtask)
    task         str (T,)             info["task"] at each step
    meta         str                  JSON: episode, task, task_index, within_task, benchmark, protocol name and
                                      digest, seed, success, steps, terminated, truncated, episode_metrics,
                                      image_size, format

Only finished episodes are written (an episode cut short by an agent error or a dying worker leaves no file;
a re-run replaces a file). Images are resized with OpenCV's area interpolation when ``record.image_size`` is
set (``vla_gym.images.resize_square``): a policy trained on them must preprocess the same way.

Why not LeRobot's format: its writer (``lerobot`` 0.4.x) requires torchvision, torch < 2.11 and wandb, which
this install must not have; the npz files map onto it one to one (per-step frames, actions, task strings).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness.evaluate import run_into_store, run_options
from harness.records import STATUS_OK
from harness.runner import AgentSource
from harness.spec import build_agent, resolve, run_info, runner_from_cfg
from harness.store import ResultStore, read_records
from harness.workers import EnvSpec

log = logging.getLogger(__name__)

FORMAT = "vla-gym-episodes/1"
DATASET_FILE = "dataset.json"
EPISODES_DIR = "episodes"
RECORDING_ENV_ID = "VLA/Recording-v0"
DATASET_FIELDS = {
    "image": "uint8 (T, S, S, 3): main camera before each step",
    "wrist_image": "uint8 (T, S, S, 3): wrist camera before each step (when the env has one)",
    "proprio": "float32 (T, D): proprioception before each step (when the env provides it)",
    "actions": "float32 (T, 7): contract action passed to env.step (gripper +1 open / -1 close)",
    "language": "str (T,): instruction at each step",
    "task": "str (T,): info['task'] at each step",
    "meta": "str: JSON of the episode's key, protocol digest, seed and outcome",
}


def episode_path(folder: str | os.PathLike[str], episode: int) -> Path:
    return Path(folder) / EPISODES_DIR / f"episode_{episode:06d}.npz"


class RecordEpisodes(gym.Wrapper):
    """Keeps each episode's observations and executed actions in memory; writes them when it ends."""

    def __init__(self, env: gym.Env, folder: str, image_size: int | None = None) -> None:
        super().__init__(env)
        self.folder = Path(folder)
        self.image_size = None if image_size is None else int(image_size)
        self._steps: list[tuple[dict[str, Any], np.ndarray, str]] | None = None
        self._obs: dict[str, Any] | None = None
        self._task = ""
        self._key: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps = []  # an unfinished episode before this one is dropped
        self._obs, self._task = obs, str(info.get("task", ""))
        self._key = {"seed": seed, "episode": int(info.get("episode", -1)), "task_index": info.get("task_index")}
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._steps is None or self._obs is None:
            raise RuntimeError("RecordEpisodes: step() before reset()")
        executed = np.array(action, dtype=np.float32, copy=True)
        before, task = self._obs, self._task
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps.append((self._keep(before), executed, task))
        self._obs, self._task = obs, str(info.get("task", task))
        if terminated or truncated:
            self._write(info, bool(terminated), bool(truncated))
            self._steps = None
        return obs, reward, terminated, truncated, info

    def _keep(self, obs: dict[str, Any]) -> dict[str, Any]:
        from vla_gym.images import resize_square

        kept: dict[str, Any] = {"language": str(obs.get("language", ""))}
        for name in ("image", "wrist_image"):
            if name in obs:
                image = np.asarray(obs[name], dtype=np.uint8)
                kept[name] = image.copy() if self.image_size is None else resize_square(image, self.image_size, "area")
        if "proprio" in obs:
            kept["proprio"] = np.asarray(obs["proprio"], dtype=np.float32).copy()
        return kept

    def _write(self, info: dict[str, Any], terminated: bool, truncated: bool) -> None:
        assert self._steps
        base = self.env.unwrapped
        episode = self._key["episode"]
        observations = [obs for obs, _, _ in self._steps]
        arrays: dict[str, Any] = {
            "actions": np.stack([action for _, action, _ in self._steps]).astype(np.float32),
            "language": np.array([obs["language"] for obs in observations]),
            "task": np.array([task for _, _, task in self._steps]),
        }
        for name in ("image", "wrist_image", "proprio"):
            if name in observations[0]:
                arrays[name] = np.stack([obs[name] for obs in observations])
        protocol = getattr(base, "protocol", None)
        key = _plan_key(base, episode)
        meta = {
            "format": FORMAT,
            "episode": episode,
            "task": self._steps[0][2] if key is None else key.task,
            "task_index": self._key["task_index"] if key is None else key.task_index,
            "within_task": None if key is None else key.within_task,
            "benchmark": getattr(base, "benchmark", None),
            "protocol": getattr(protocol, "name", None),
            "protocol_digest": getattr(base, "protocol_digest", None),
            "seed": self._key["seed"],
            "success": bool(info.get("success", False)),
            "steps": len(self._steps),
            "terminated": terminated,
            "truncated": truncated,
            "episode_metrics": info.get("episode_metrics") or {},
            "image_size": self.image_size,
        }
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True, default=_jsonable))
        path = episode_path(self.folder, episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)


def _plan_key(base: Any, episode: int) -> Any:
    for key in getattr(base, "episode_plan", ()):
        if key.index == episode:
            return key
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def make_recording_env(
    record_env_id: str, record_dir: str, record_image_size: int | None = None, **kwargs: Any
) -> gym.Env:
    """Entry point of :data:`RECORDING_ENV_ID`: ``record_env_id`` built with ``kwargs``, recorded."""
    import vla_gym  # noqa: F401 - registers the VLA/* envs

    return RecordEpisodes(gym.make(record_env_id, **kwargs), record_dir, record_image_size)


def recording_spec(env: EnvSpec, folder: str | os.PathLike[str], image_size: int | None) -> EnvSpec:
    """The env spec whose workers build ``env`` wrapped in :class:`RecordEpisodes` writing into ``folder``."""
    if env.entry_point is None and env.env_id not in gym.registry:
        raise KeyError(f"cannot record {env.env_id!r}: it is not a registered env id")
    kwargs = {
        **env.kwargs,
        "record_env_id": env.env_id,
        "record_dir": str(Path(folder).resolve()),
        "record_image_size": image_size,
    }
    return EnvSpec(RECORDING_ENV_ID, kwargs, "harness.record:make_recording_env", env.protocol_digest)


@dataclasses.dataclass
class DatasetEpisode:
    episode: int
    task: str
    success: bool
    steps: int
    file: str


def write_index(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """(Re)write ``dataset.json`` from the store and the episode files present; returns it."""
    folder = Path(folder)
    run = json.loads((folder / "run.json").read_text())
    episodes = []
    for record in read_records(folder):
        path = episode_path(folder, record.episode)
        if record.status == STATUS_OK and path.exists():
            episodes.append(
                dataclasses.asdict(DatasetEpisode(record.episode, record.task, record.success, record.steps,
                                                  str(path.relative_to(folder))))
            )  # fmt: skip
    index = {
        "format": FORMAT,
        "benchmark": run["benchmark"],
        "env_id": run["env_id"],
        "env_kwargs": run["env_kwargs"],
        "protocol": run["protocol"],
        "protocol_digest": run["protocol_digest"],
        "policy": run["policy"],
        "seed": run["seed"],
        "image_size": run.get("record_image_size"),
        "fields": DATASET_FIELDS,
        "num_episodes": len(episodes),
        "num_successes": sum(e["success"] for e in episodes),
        "episodes": episodes,
    }
    tmp = folder / (DATASET_FILE + ".tmp")
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, folder / DATASET_FILE)
    return index


def record(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) the recording; returns the dataset index."""
    spec = resolve(cfg)
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    assert isinstance(policy, dict)
    image_size = cfg.record.get("image_size")
    folder = Path(str(cfg.output_dir))
    if (folder / "run.json").exists():
        stored = json.loads((folder / "run.json").read_text()).get("record_image_size")
        if stored != image_size:
            raise ValueError(f"{folder} was recorded with record.image_size={stored}, not {image_size}")
    info = {**run_info(spec, policy, int(cfg.seed)), "record_image_size": image_size}
    with ResultStore(folder, info) as store:
        store.write_config(OmegaConf.to_yaml(cfg, resolve=True))
        spec.env = recording_spec(spec.env, folder, image_size)
        source = AgentSource(factory=functools.partial(build_agent, policy))
        with runner_from_cfg(cfg, spec) as runner:
            run_into_store(runner, store, spec.episodes, source, desc=f"recording {spec.benchmark}",
                           **run_options(cfg))  # fmt: skip
    index = write_index(folder)
    log.info("%s: %d episodes (%d successes) in %s", spec.benchmark, index["num_episodes"],
             index["num_successes"], folder / DATASET_FILE)  # fmt: skip
    return index


@hydra.main(version_base="1.3", config_path="pkg://conf", config_name="record")
def main(cfg: DictConfig) -> None:
    record(cfg)


if __name__ == "__main__":
    main()
