"""The scripted privileged expert agent (``policy=expert``).

It reads simulator ground truth that real policies never see: for agents with ``needs_privileged = True``
the harness adds ``obs["privileged"]``, a list of B dicts from each env's ``env.unwrapped.privileged_state()``
(same order as the other batch entries). Per env it runs one benchmark ``Planner`` (see
``policies.experts``), rebuilt at every ``reset`` (episode start, or CALVIN subtask start), and returns
one contract action per query (chunk 1, executed 1).

``record_dir``: when set, each finished episode (or CALVIN subtask) is written there as
``expert_<n>.npz`` (observations + actions: ``image``, ``wrist_image`` when present, ``actions``,
``language``, ``stages``, ``failure``), ``<n>`` counting episodes in the order this agent finished them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import Agent, Observation
from policies.experts import Planner, planner_class
from vla_gym.contract import ACTION_DIM

PRIVILEGED_KEY = "privileged"


class ExpertAgent(Agent):
    """Scripted expert over privileged state; deterministic, one planner per env."""

    chunk_size = 1
    execute_steps = 1
    #: the harness puts ``obs["privileged"]`` (list of ``privileged_state()`` dicts) into the batch
    needs_privileged = True

    def __init__(self, record_dir: str | None = None) -> None:
        self._planner_cls: type[Planner] | None = None
        self._protocol: dict[str, Any] = {}
        self._benchmark: str | None = None
        self._planners: dict[int, Planner] = {}
        self._last_info: dict[int, dict[str, Any]] = {}
        self._record_dir = Path(record_dir) if record_dir else None
        self._recordings: dict[int, dict[str, list[Any]]] = {}
        self._recorded = 0

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        self._planner_cls = planner_class(benchmark)
        self._benchmark = benchmark
        self._protocol = dict(protocol)

    def reset(self, env_ids: Sequence[int]) -> None:
        cls = self._require_configured()
        for env_id in env_ids:
            env_id = int(env_id)
            self._flush_recording(env_id)
            self._planners[env_id] = cls(dict(self._protocol))
            self._last_info.pop(env_id, None)

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        self._require_configured()
        privileged = obs.get(PRIVILEGED_KEY)
        if privileged is None:
            raise KeyError(
                f"ExpertAgent needs obs[{PRIVILEGED_KEY!r}] (a list of env.unwrapped.privileged_state() dicts, "
                "one per env); run it through a harness that honours Agent.needs_privileged"
            )
        if len(privileged) != len(env_ids):
            raise ValueError(f"obs[{PRIVILEGED_KEY!r}] has {len(privileged)} entries for {len(env_ids)} envs")
        out = np.empty((len(env_ids), 1, ACTION_DIM), dtype=np.float32)
        for row, env_id in enumerate(env_ids):
            env_id = int(env_id)
            planner = self._planners.get(env_id)
            if planner is None:  # act() before reset(): start a plan anyway, as reset would
                self.reset([env_id])
                planner = self._planners[env_id]
            single = {k: v[row] for k, v in obs.items() if k != PRIVILEGED_KEY}
            action = np.asarray(planner.act(single, privileged[row]), dtype=np.float32)
            if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
                raise ValueError(
                    f"{type(planner).__module__}.Planner returned {action!r}; expected a finite ({ACTION_DIM},) action"
                )
            out[row, 0] = action
            if self._record_dir is not None:
                self._record(env_id, single, action, planner.stage)
        return out

    def episode_info(self, env_id: int) -> dict[str, Any]:
        """``{"expert_stage", "expert_failure"}`` of the env's current (or last) plan, for failure breakdowns."""
        planner = self._planners.get(int(env_id))
        if planner is None:
            return dict(self._last_info.get(int(env_id), {"expert_stage": None, "expert_failure": None}))
        return {"expert_stage": planner.stage, "expert_failure": planner.failure}

    def close(self) -> None:
        for env_id in list(self._recordings):
            self._flush_recording(env_id)
        self._planners.clear()

    # ------------------------------------------------------------------ helpers
    def _require_configured(self) -> type[Planner]:
        if self._planner_cls is None:
            raise RuntimeError("call ExpertAgent.configure(benchmark, protocol) before reset()/act()")
        return self._planner_cls

    def _record(self, env_id: int, obs: dict[str, Any], action: np.ndarray, stage: str) -> None:
        rec = self._recordings.setdefault(env_id, {"image": [], "wrist_image": [], "actions": [], "stages": []})
        rec["image"].append(np.asarray(obs["image"]))
        if "wrist_image" in obs:
            rec["wrist_image"].append(np.asarray(obs["wrist_image"]))
        rec["actions"].append(action.copy())
        rec["stages"].append(stage)
        rec["language"] = [str(obs.get("language", ""))]

    def _flush_recording(self, env_id: int) -> None:
        planner = self._planners.get(env_id)
        if planner is not None:
            self._last_info[env_id] = {"expert_stage": planner.stage, "expert_failure": planner.failure}
        rec = self._recordings.pop(env_id, None)
        if self._record_dir is None or not rec or not rec["actions"]:
            return
        self._record_dir.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "image": np.stack(rec["image"]),
            "actions": np.stack(rec["actions"]).astype(np.float32),
            "language": np.array(rec["language"][0]),
            "stages": np.array(rec["stages"]),
            "failure": np.array("" if planner is None or planner.failure is None else planner.failure),
            "benchmark": np.array(self._benchmark or ""),
        }
        if rec["wrist_image"]:
            arrays["wrist_image"] = np.stack(rec["wrist_image"])
        np.savez_compressed(self._record_dir / f"expert_{self._recorded:06d}.npz", **arrays)
        self._recorded += 1
