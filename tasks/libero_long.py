"""LIBERO-Long (LIBERO-10): its ten tasks, its protocols and its episode plan. Imports no simulator.

Every protocol renders agentview + wrist at ``render_size``, rotates both 180 degrees to upright and resizes
them to 224 with area interpolation (``image``, ``wrist_image``); a policy that does its own preprocessing of
the render (a crop, another resize) reads ``image_native``. 50 init states per task; success = the first
policy step at which every BDDL goal predicate holds (the episode terminates there). The settle no-op is
``[0, 0, 0, 0, 0, 0, -1]`` (LIBERO's sign: gripper open). Actions reach robosuite as a list of Python floats
(``action.tolist()``), as in all three published loops.

Protocols (the published loop each one replays, step for step, on the simulator side):

- ``vlm4vla`` (default): the VLM4VLA paper's evaluation loop, ``run_libero_eval_single_episode`` in
  ``eval/libero/libero_evaluator.py`` of github.com/CladernyJorn/VLM4VLA (lines 39-55). Its wait branch has
  no ``continue``, so one counter runs to ``max_steps + num_steps_wait`` (520 + 10) and, while it is below 10,
  every policy step is preceded by a no-op that also advances it: 5 no-ops, one before each of policy steps
  1..5, then policy steps up to 525 in all. Only a policy step's ``done`` is read. The no-op is the Python
  list ``[0, 0, 0, 0, 0, 0, -1]`` (ints); ``env.seed(0)`` after building the env (fixture seed 0).
- ``vlm4vla_fast``: ``vlm4vla`` rendered straight at 224 (no resize). Not comparable with the 256-render
  protocols (different digest).
- ``openvla``: OpenVLA's ``experiments/robot/libero/run_libero_eval.py`` (github.com/openvla/openvla,
  ``eval_libero``: the ``while t < max_steps + cfg.num_steps_wait`` loop): 10 no-ops first (the wait branch
  ends in ``continue``), then at most 520 policy steps. The no-op is ``get_libero_dummy_action`` of its
  ``libero_utils.py``, ``[0, 0, 0, 0, 0, 0, -1]`` (ints), and ``get_libero_env`` calls ``env.seed(0)``.
- ``openpi``: openpi's ``examples/libero/main.py`` (github.com/Physical-Intelligence/openpi, ``eval_libero``):
  the same 10-then-520 loop, but its no-op is ``LIBERO_DUMMY_ACTION = [0.0] * 6 + [-1.0]`` (floats) and
  ``_get_libero_env`` calls ``env.seed(args.seed)`` with the default seed 7 (fixture seed 7: its fixtures
  sit elsewhere than OpenVLA's).

``vlm4vla_paper`` is an alias of ``vlm4vla`` (the same loop; earlier versions used that name for it while
``vlm4vla`` was the 10-then-520 loop, now ``openvla``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.libero_tasks import MAX_STEPS, SUITE_TASKS
from tasks.plan import EpisodeKey, task_grid
from tasks.protocol import Protocol, pick_protocol
from tasks.scoring import MetricField, Scoring

NAME = "libero_long"
ENV_ID = "VLA/LiberoLong-v0"
SUITE = "libero_10"

# hf-libero's libero_10 suite in its default task order (task_orders[0] is the identity).
TASK_NAMES: tuple[str, ...] = SUITE_TASKS[SUITE]
INIT_STATES_PER_FILE = 50  # each task's .pruned_init file holds 50 init states

SETTLE_MODES = ("before", "interleaved")
ACTION_DTYPES = ("float64", "float32")
PAPER_NOOP: tuple[float, ...] = (0, 0, 0, 0, 0, 0, -1)  # the paper's and OpenVLA's no-op: Python ints
OPENPI_NOOP: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # openpi's: Python floats
RESIZE_INTERPOLATIONS = ("area", "linear", "cubic", "lanczos")


def instruction(task_name: str) -> str:
    """The language instruction, as LIBERO derives it: the task name without its scene prefix (Spatial and
    Object names have none)."""
    words = task_name.split("_")
    start = next((i + 1 for i, word in enumerate(words) if word.startswith("SCENE")), 0)
    return " ".join(words[start:])


@dataclasses.dataclass(frozen=True)
class LiberoProtocol(Protocol):
    """Every constant that changes a LIBERO score (any suite; the defaults are LIBERO-Long's)."""

    FACTS = {
        "controller": "the contract's actions are OSC_POSE deltas, the LIBERO datasets' actions",
        "hard_reset": "LIBERO's soft reset diverges from the first step, so every episode starts with a hard reset",
        "success": "an episode ends at the first step where every goal predicate holds",
        "simulator": "the simulator these protocols are pinned to",
    }
    IDENTITY = ("benchmark", "name", "suite")

    benchmark: str = NAME
    name: str = "vlm4vla"
    suite: str = SUITE
    max_steps: int = 520  # the published loops' max_steps (policy steps; see `settle_mode` for how no-ops count)
    settle_steps: int = 10  # the published loops' num_steps_wait
    # "before": all no-ops first, not counted (OpenVLA, openpi); "interleaved": the VLM4VLA paper's loop
    settle_mode: str = "interleaved"
    # LIBERO's sign (-1 = open), passed to robosuite as a list of these Python numbers (ints or floats)
    settle_action: tuple[float, ...] = PAPER_NOOP
    # precision of the values handed to robosuite (always as a list of Python floats, like the published
    # loops' ``action.tolist()``): "float64" passes the agent's values as they are; "float32" rounds them first
    action_dtype: str = "float64"
    init_states_per_task: int = 50
    cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")
    render_size: int = 256
    image_size: int = 224
    resize_interpolation: str = "area"  # OpenCV INTER_AREA: the standard choice for downscaling
    image_rotation: int = 180  # LIBERO renders upside down; both cameras are rotated to upright
    controller: str = "OSC_POSE"
    control_freq: int = 20
    fixture_seed: int = 0  # numpy's global RNG is seeded with this before every hard reset (the loop's env.seed)
    hard_reset: bool = True
    success: str = "first_step"  # terminate at the first step where all goal predicates hold
    simulator: str = "hf-libero==0.1.4 robosuite==1.4.0 mujoco==3.8.1"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.settle_mode not in SETTLE_MODES:
            raise ValueError(f"settle_mode must be one of {SETTLE_MODES}, got {self.settle_mode!r}")
        if self.resize_interpolation not in RESIZE_INTERPOLATIONS:
            raise ValueError(
                f"resize_interpolation must be one of {RESIZE_INTERPOLATIONS}, got {self.resize_interpolation!r}"
            )
        for field in ("max_steps", "render_size", "image_size", "control_freq"):
            if getattr(self, field) < 1:
                raise ValueError(f"protocol field {field} must be >= 1, got {getattr(self, field)}")
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {self.settle_steps}")
        if not 1 <= self.init_states_per_task <= INIT_STATES_PER_FILE:
            raise ValueError(
                f"init_states_per_task must be in 1..{INIT_STATES_PER_FILE}, got {self.init_states_per_task}"
            )
        if len(self.settle_action) != 7 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in self.settle_action
        ):
            raise ValueError(f"settle_action must be 7 ints or floats, got {self.settle_action!r}")
        object.__setattr__(self, "settle_action", tuple(self.settle_action))  # a list from a config, too
        if self.action_dtype not in ACTION_DTYPES:
            raise ValueError(f"action_dtype must be one of {ACTION_DTYPES}, got {self.action_dtype!r}")
        if self.image_rotation not in (0, 180):
            raise ValueError(f"image_rotation must be 0 or 180, got {self.image_rotation}")
        if self.suite not in SUITE_TASKS:
            raise ValueError(f"suite must be one of {sorted(SUITE_TASKS)}, got {self.suite!r}")

    @property
    def task_names(self) -> tuple[str, ...]:
        """The suite's tasks in hf-libero's default order."""
        return SUITE_TASKS[self.suite]

    @property
    def max_policy_steps(self) -> int:
        """Policy steps an episode may take before truncation."""
        if self.settle_mode == "interleaved":  # the counter runs to max + settle; no-ops take some of it
            return self.max_steps + self.settle_steps - interleaved_noops(self.settle_steps)
        return self.max_steps


LiberoLongProtocol = LiberoProtocol  # the name from before the other suites


def interleaved_noops(settle_steps: int) -> int:
    """No-ops the paper's loop runs: each iteration below ``settle_steps`` advances its counter twice."""
    return (settle_steps + 1) // 2


def suite_protocols(benchmark: str, suite: str) -> dict[str, LiberoProtocol]:
    """The four protocols of a suite: the published loops above with the suite's step limit
    (``tasks.libero_tasks.MAX_STEPS``). For LIBERO-Long these are exactly the protocols above."""
    base = LiberoProtocol(benchmark=benchmark, suite=suite, max_steps=MAX_STEPS[suite])
    return {
        "vlm4vla": base,
        "vlm4vla_fast": base.replace(name="vlm4vla_fast", render_size=224),
        "openvla": base.replace(name="openvla", settle_mode="before"),
        "openpi": base.replace(name="openpi", settle_mode="before", settle_action=OPENPI_NOOP, fixture_seed=7),
    }  # type: ignore[return-value]


PROTOCOLS: dict[str, LiberoProtocol] = suite_protocols(NAME, SUITE)
ALIASES = {"vlm4vla_paper": "vlm4vla"}
DEFAULT_PROTOCOL = "vlm4vla"


# The env's ``episode_metrics`` (vla_gym.libero.env writes them at the last step).
EPISODE_METRICS: dict[str, MetricField] = {
    "policy_steps": MetricField(int, "policy steps the episode took"),
    "settle_steps": MetricField(int, "settle no-ops run"),
    "success": MetricField(bool, "all goal predicates held at the last policy step"),
}


class LiberoSuiteBenchmark(Scoring):
    """One LIBERO suite. Headline: the success rate (the default scoring)."""

    EPISODE_METRICS = EPISODE_METRICS
    simulator_packages = ("mujoco", "robosuite", "hf-libero", "bddl")

    def __init__(self, name: str, env_id: str, suite: str, title: str, env_class: str) -> None:
        self.name, self.env_id, self.suite, self.title = name, env_id, suite, title
        self.entry_point = f"vla_gym.libero.env:{env_class}"  # registered by vla_gym from this declaration
        self.task_names = SUITE_TASKS[suite]
        self.protocols = PROTOCOLS if suite == SUITE else suite_protocols(name, suite)

    def protocol(self, name: str | None = None, **overrides: Any) -> LiberoProtocol:
        return pick_protocol(  # type: ignore[return-value]
            self.name, self.protocols, name, DEFAULT_PROTOCOL, overrides, ALIASES
        )

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Task k // n, init state k % n, with n = ``protocol.init_states_per_task`` (50 by default)."""
        if not isinstance(protocol, LiberoProtocol) or protocol.suite != self.suite:
            raise TypeError(f"expected a LiberoProtocol of suite {self.suite}, got {protocol!r}")
        return task_grid(self.task_names, protocol.init_states_per_task)


LiberoLongBenchmark = LiberoSuiteBenchmark
BENCHMARK = LiberoSuiteBenchmark(NAME, ENV_ID, SUITE, "LIBERO-Long", "LiberoLongEnv")
