"""Scripted privileged experts: one planner per benchmark, driving the robot through the env contract.

The experts read simulator ground truth (``env.unwrapped.privileged_state()``: object and fixture poses,
joint states, the robot's end-effector pose). That state is NOT available to real policies; the experts
exist to give offline evaluations real successes (so success detection, chain metrics and sweeps are
exercised) and to act as a regression oracle for the envs' physics, success checks and action conversion.

The Planner protocol
--------------------
Each module of ``PLANNER_MODULES`` (``libero``, mapped for all five LIBERO suites; ``calvin``;
``simpler_bridge``) defines a class ``Planner``:

- ``Planner(protocol: dict)``: one instance per episode (CALVIN: per subtask); ``protocol`` is the env's
  protocol as a dict (``Protocol.to_dict()``). Construction must be cheap and must not touch a simulator.
- ``planner.act(obs: dict, privileged: dict) -> np.ndarray``: one contract action of shape (7,):
  ``[dx, dy, dz, drot(3), gripper]`` in the benchmark's own delta units (its training-data convention),
  gripper +1 open / -1 close. ``obs`` is one env's observation (``image``, ``language``, ...; no batch
  axis), ``privileged`` that env's ``privileged_state()`` dict at the same step.
- ``planner.stage: str``: the name of the skill running now (``"done"`` once the plan is finished).
- ``planner.failure: str | None``: ``None``, or the name of the skill that failed (timed out, or its
  post-condition did not hold); once set it stays set, and the planner keeps returning safe actions.

Planners must be deterministic: the same observations and privileged states give bitwise the same actions
(no unseeded randomness, no wall-clock time, no dependence on other envs).

``policies.experts.motion`` holds what the planners share: the per-benchmark action scaling, rotation
helpers and a small skill state machine (move_to, grasp, lift, place, push, turn, press, open/close).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

import numpy as np

from tasks.libero_suites import LIBERO_BENCHMARKS

PLANNER_MODULES = {
    # one goal-driven LIBERO expert for every suite: the plan comes from the task's BDDL goal predicates
    **{suite: "policies.experts.libero" for suite in LIBERO_BENCHMARKS},
    "calvin": "policies.experts.calvin",
    "simpler_bridge": "policies.experts.simpler_bridge",
}


class Planner(Protocol):
    """What ``policies.expert.ExpertAgent`` expects of ``policies.experts.<benchmark>.Planner``."""

    stage: str
    failure: str | None

    def __init__(self, protocol: dict[str, Any]) -> None: ...

    def act(self, obs: dict[str, Any], privileged: dict[str, Any]) -> np.ndarray: ...


def planner_class(benchmark: str) -> type[Planner]:
    """The ``Planner`` class of ``benchmark``; a clear error when the benchmark has no expert."""
    if benchmark not in PLANNER_MODULES:
        raise KeyError(f"no scripted expert for benchmark {benchmark!r}; known: {sorted(PLANNER_MODULES)}")
    module = importlib.import_module(PLANNER_MODULES[benchmark])
    cls = getattr(module, "Planner", None)
    if cls is None:
        raise AttributeError(f"{PLANNER_MODULES[benchmark]} defines no Planner class")
    return cls
