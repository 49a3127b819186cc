"""An in-process rollout of a scripted expert on one env (for tests, benchmarks and debugging).

The harness runs experts like any agent (``needs_privileged``); this loop is the small, dependency-free
version: one env, one episode, privileged state read straight from ``env.unwrapped``. ``privileged_fn``
maps the env to the planner's privileged dict (default ``env.unwrapped.privileged_state()``).
``render=False`` blanks the camera sensors while stepping (the expert does not look at images; rendering
changes no simulator state), which makes CPU runs about 10x faster for LIBERO.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from policies.expert import PRIVILEGED_KEY, ExpertAgent


@dataclasses.dataclass
class ExpertEpisode:
    episode: int
    task: str
    success: bool
    steps: int
    stage: str | None
    failure: str | None
    actions: np.ndarray  # (steps, 7) float32, for bitwise determinism checks


def _default_privileged(env: Any) -> dict[str, Any]:
    return env.unwrapped.privileged_state()


@contextlib.contextmanager
def cameras_blanked(env: Any) -> Iterator[None]:
    """robosuite envs only: camera observables return a 1x1 black image while the block runs."""
    raw = getattr(env.unwrapped, "_raw", None)
    observables = getattr(getattr(raw, "env", None), "_observables", None)
    if not observables:
        yield
        return
    saved = {}
    for name, observable in observables.items():
        if name.endswith("_image"):
            saved[name] = observable._sensor

            def blank(obs_cache: dict[str, Any]) -> np.ndarray:
                return np.zeros((1, 1, 3), dtype=np.uint8)

            blank.__modality__ = getattr(observable._sensor, "__modality__", "image")
            observable._sensor = blank
    try:
        yield
    finally:
        for name, sensor in saved.items():
            observables[name]._sensor = sensor


def run_expert_episode(
    env: Any,
    episode: int,
    *,
    agent: ExpertAgent | None = None,
    privileged_fn: Callable[[Any], dict[str, Any]] = _default_privileged,
    render: bool = True,
    seed: int = 0,
) -> ExpertEpisode:
    """Run plan episode ``episode`` to termination or truncation with the expert; returns its outcome."""
    unwrapped = env.unwrapped
    if agent is None:
        agent = ExpertAgent()
        agent.configure(unwrapped.benchmark, unwrapped.protocol.to_dict())
    actions = []
    obs, info = env.reset(seed=seed, options={"episode": episode})
    agent.reset([0])
    # after the reset: LIBERO's hard reset builds new observables, so blanking before it would not hold
    with contextlib.nullcontext() if render else cameras_blanked(env):
        terminated = truncated = False
        while not (terminated or truncated):
            batch = {k: [v] if isinstance(v, str) else np.asarray(v)[None] for k, v in obs.items()}
            batch[PRIVILEGED_KEY] = [privileged_fn(env)]
            action = agent.act(batch, [0])[0, 0]
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            if info.get("subtask_changed"):
                agent.reset([0])
    details = agent.episode_info(0)
    return ExpertEpisode(
        episode=episode,
        task=str(info["task"]),
        success=bool(info["success"]),
        steps=len(actions),
        stage=details["expert_stage"],
        failure=details["expert_failure"],
        actions=np.asarray(actions, dtype=np.float32),
    )
