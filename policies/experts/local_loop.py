"""Run a benchmark's expert planner against ONE env in this process, reading ``env.unwrapped.privileged_state()``.

For the expert's tests and ``bench/expert_scores_calvin_bridge.py``; scored evaluations go through
``harness.evaluate policy=expert``, which hands the agent the same privileged dicts. Nothing here imports a
simulator: the env is passed in.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from policies.experts import Planner


@dataclasses.dataclass
class SubtaskOutcome:
    task: str
    success: bool
    steps: int
    stage: str  # the skill running when the subtask ended
    failure: str | None  # the skill that failed, if the planner noticed


@dataclasses.dataclass
class EpisodeOutcome:
    episode: int
    success: bool
    subtasks: list[SubtaskOutcome]
    metrics: dict[str, Any]
    actions_digest: str  # sha256 of every action sent, in order: equal digests = bitwise equal rollouts


def _digest_update(h: Any, action: np.ndarray) -> None:
    h.update(np.ascontiguousarray(action, dtype=np.float32).tobytes())


def run_episode(env: Any, planner_cls: type[Planner], episode: int, max_steps: int | None = None) -> EpisodeOutcome:
    """One episode of the protocol's plan; a fresh planner per episode and per CALVIN subtask.

    ``max_steps`` (optional) stops early, for quick checks; the outcome then covers what ran.
    """
    import hashlib

    unwrapped = env.unwrapped
    protocol = unwrapped.protocol.to_dict()
    obs, info = env.reset(options={"episode": int(episode)})
    planner = planner_cls(protocol)
    h = hashlib.sha256()
    subtasks: list[SubtaskOutcome] = []
    steps = sub_steps = 0
    metrics: dict[str, Any] = {}
    while True:
        action = np.asarray(planner.act(obs, unwrapped.privileged_state()), dtype=np.float32)
        _digest_update(h, action)
        task = str(info.get("task", ""))
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        sub_steps += 1
        over = terminated or truncated or (max_steps is not None and steps >= max_steps)
        if info.get("subtask_changed") or over:
            done_ok = bool(info.get("subtask_success", info.get("success", False)))
            subtasks.append(SubtaskOutcome(task, done_ok, sub_steps, planner.stage, planner.failure))
            sub_steps = 0
            if info.get("subtask_changed"):
                planner = planner_cls(protocol)  # the harness resets the agent when a subtask begins
        if over:
            metrics = dict(info.get("episode_metrics", {}))
            return EpisodeOutcome(int(episode), bool(info.get("success", False)), subtasks, metrics, h.hexdigest())
