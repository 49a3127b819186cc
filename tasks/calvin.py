"""CALVIN ABC->D (scene D): its 34 tasks, their instructions, its protocols and its episode plan.
Imports no simulator.

An episode is a chain: one of the 1000 evaluation chains, each an initial condition plus five tasks done in
order without a reset. The plan has one :class:`EpisodeKey` per chain with ``task_index=0``,
``task="chain"`` and ``within_task`` = the chain index; the subtasks of a chain live in the chains file
(``eval_sequences.json``) and appear in ``info`` and ``episode_metrics`` while it runs.

Protocols:

- ``vlm4vla`` (default): the published evaluation. 360 steps per subtask, success checked after every step
  against the state when the subtask started, the chain ends at the first failed subtask; static camera
  200x200 and gripper camera 84x84 rendered with PyBullet's EGL renderer (as the CALVIN dataset and the
  official evaluation: ``use_egl: true``) and resized to 224 (linear); relative actions scaled in float32 as
  calvin_env does with the float32 arrays the published loops send; LED/button behaviour of calvin_env commit
  1431a46 (a reset leaves the button's toggle state off). Every chain is rendered as the original renders the
  first chain after its start-up (EGL's first two images are shadow-free), which is what the recorded traces
  show, and keeps a chain's images independent of the chains before it.
- ``vlm4vla_static``: the same with the gripper camera not rendered (the paper's policy sees only the
  static camera; faster). EGL's render count is kept as if it were rendered, so the static images are the
  same. Same scores, different digest.
- ``vlm4vla_warm``: EGL images as a long-running original evaluation renders every chain after its first
  (shadows from the first image on). Not reproducible against recorded traces; offered for comparison.
- ``tiny``: PyBullet's TinyRenderer (CPU rasteriser) instead of EGL: the physics is the same, the images
  differ from the dataset's (mean 21.9/255 on the static camera), so policies see another image domain.
- ``fixed_button``: the newer calvin_env's LED/button behaviour (the toggle state follows the LED). Scores
  are not comparable with the published ones.

How many actions of a predicted chunk run open-loop is the policy's own setting (``Agent.execute_steps``,
recorded with the policy in every results file), not a protocol field: the benchmark runs whatever it is sent.

Single-task episodes (any protocol): the field ``tasks`` (empty by default: chains) names tasks such as
``("lift_red_block_table",)``. Episode k is then one task alone, started from chain k's initial scene: the first
of ``tasks`` that applies there (CALVIN's symbolic preconditions, e.g. the red block lies on the table), ending
at its success or after ``max_steps_per_subtask`` steps. Chains where none applies are not in the plan, so
``episodes_per_task`` / ``episodes`` select among valid scenes only. Computed without the chains file: chain k's
initial condition follows from CALVIN's shuffle of conditions (``vla_gym.calvin.sequences.chain_slots``).
The field enters the digest only when set, so the chain protocols keep their digests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.plan import EpisodeKey
from tasks.protocol import Protocol, pick_protocol
from tasks.scoring import BarPlot, MetricField, Record, Scoring, Section, Table, ci, num, pct, rate

NAME = "calvin"
ENV_ID = "VLA/Calvin-v0"
CHAIN_TASK = "chain"

# The first validation annotation of each task (CALVIN's new_playtable_validation.yaml), in the task order of
# CALVIN's task definitions.
INSTRUCTIONS: dict[str, str] = {
    "rotate_red_block_right": "take the red block and rotate it to the right",
    "rotate_red_block_left": "take the red block and rotate it to the left",
    "rotate_blue_block_right": "take the blue block and rotate it to the right",
    "rotate_blue_block_left": "take the blue block and rotate it to the left",
    "rotate_pink_block_right": "take the pink block and rotate it to the right",
    "rotate_pink_block_left": "take the pink block and rotate it to the left",
    "push_red_block_right": "go push the red block right",
    "push_red_block_left": "go push the red block left",
    "push_blue_block_right": "go push the blue block right",
    "push_blue_block_left": "go push the blue block left",
    "push_pink_block_right": "go push the pink block right",
    "push_pink_block_left": "go push the pink block left",
    "move_slider_left": "push the sliding door to the left side",
    "move_slider_right": "push the sliding door to the right side",
    "open_drawer": "pull the handle to open the drawer",
    "close_drawer": "push the handle to close the drawer",
    "lift_red_block_table": "grasp and lift the red block",
    "lift_red_block_slider": "lift the red block from the sliding cabinet",
    "lift_red_block_drawer": "Take the red block from the drawer",
    "lift_blue_block_table": "grasp and lift the blue block",
    "lift_blue_block_slider": "lift the blue block from the sliding cabinet",
    "lift_blue_block_drawer": "Take the blue block from the drawer",
    "lift_pink_block_table": "grasp and lift the pink block",
    "lift_pink_block_slider": "lift the pink block from the sliding cabinet",
    "lift_pink_block_drawer": "Take the pink block from the drawer",
    "place_in_slider": "store the grasped block in the sliding cabinet",
    "place_in_drawer": "store the grasped block in the drawer",
    "stack_block": "stack the grasped block",
    "unstack_block": "remove the stacked block",
    "turn_on_lightbulb": "use the switch to turn on the light bulb",
    "turn_off_lightbulb": "use the switch to turn off the light bulb",
    "turn_on_led": "press the button to turn on the led light",
    "turn_off_led": "press the button to turn off the led light",
    "push_into_drawer": "slide the block that it falls into the drawer",
}
TASK_NAMES: tuple[str, ...] = tuple(INSTRUCTIONS)
NUM_CHAINS = 1000
CHAIN_LENGTH = 5  # tasks per evaluation chain in CALVIN's chains file (the protocol may run fewer)
CAMERAS = ("static", "gripper")
RENDERERS = ("egl", "tiny")
RENDERER_STATES = ("fresh", "warm")
BUTTON_MODES = ("1431a46", "fixed")
RESIZE_INTERPOLATIONS = ("linear", "area", "cubic", "nearest")


def instruction(task: str) -> str:
    if task not in INSTRUCTIONS:
        raise KeyError(f"unknown CALVIN task {task!r}; known tasks: {sorted(INSTRUCTIONS)}")
    return INSTRUCTIONS[task]


@dataclasses.dataclass(frozen=True)
class CalvinProtocol(Protocol):
    """Every constant that changes a CALVIN score."""

    FACTS = {
        "scene": "the ABC->D evaluation runs in scene D, the only scene whose files are loaded",
        "success": "calvin_env's task checks run after every step against the subtask's start state",
        "control_freq": "calvin_env steps its 240 Hz physics 8 times per action",
        "action_dtype": "calvin_env 1431a46 scales the float32 arrays the published loops send",
        "physics": "the simulator these protocols are pinned to",
    }

    benchmark: str = NAME
    name: str = "vlm4vla"
    scene: str = "D"
    num_chains: int = NUM_CHAINS
    chain_length: int = CHAIN_LENGTH
    max_steps_per_subtask: int = 360
    success: str = "any_step"  # checked after every step against the subtask's start state
    cameras: tuple[str, ...] = CAMERAS
    static_size: int = 200  # native render sizes, as in the dataset
    gripper_size: int = 84
    image_size: int = 224
    resize_interpolation: str = "linear"
    renderer: str = "egl"
    renderer_state: str = "fresh"  # EGL: every chain rendered as the original's first after start-up
    button_mode: str = "1431a46"
    gripper_threshold: float = 0.0  # contract gripper input > threshold -> open (+1), else close (-1)
    action_dtype: str = "float32"  # the relative-action arithmetic (the published loops send float32 arrays)
    control_freq: int = 30
    physics: str = "pybullet==3.2.7 calvin_env@1431a46 physics"
    tasks: tuple[str, ...] = ()  # single-task episodes (see the module docstring); () = chains

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "tasks", tuple(self.tasks))
        unknown_tasks = [t for t in self.tasks if t not in INSTRUCTIONS]
        if unknown_tasks:
            raise ValueError(f"protocol field tasks names unknown CALVIN task(s) {unknown_tasks}")
        for field in ("num_chains", "max_steps_per_subtask", "static_size", "gripper_size", "image_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"protocol field {field} must be >= 1, got {getattr(self, field)}")
        if not 1 <= self.chain_length <= CHAIN_LENGTH:
            raise ValueError(f"chain_length must be in 1..{CHAIN_LENGTH}, got {self.chain_length}")
        if self.num_chains > NUM_CHAINS:
            raise ValueError(f"num_chains must be <= {NUM_CHAINS}, got {self.num_chains}")
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or "static" not in self.cameras:
            raise ValueError(f"cameras must include 'static' and only name {CAMERAS}, got {self.cameras}")
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {RENDERERS}, got {self.renderer!r}")
        if self.renderer_state not in RENDERER_STATES:
            raise ValueError(f"renderer_state must be one of {RENDERER_STATES}, got {self.renderer_state!r}")
        if self.renderer_state == "warm" and self.renderer != "egl":
            raise ValueError("renderer_state 'warm' is about EGL's shadows: it needs renderer 'egl'")
        if self.button_mode not in BUTTON_MODES:
            raise ValueError(f"button_mode must be one of {BUTTON_MODES}, got {self.button_mode!r}")
        if self.resize_interpolation not in RESIZE_INTERPOLATIONS:
            raise ValueError(
                f"resize_interpolation must be one of {RESIZE_INTERPOLATIONS}, got {self.resize_interpolation!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        if not self.tasks:  # added after the chain protocols' digests were published: left out when unused
            del data["tasks"]
        return data


PROTOCOLS: dict[str, CalvinProtocol] = {
    "vlm4vla": CalvinProtocol(),
    "vlm4vla_static": CalvinProtocol(name="vlm4vla_static", cameras=("static",)),
    "vlm4vla_warm": CalvinProtocol(name="vlm4vla_warm", renderer_state="warm"),
    "tiny": CalvinProtocol(name="tiny", renderer="tiny"),
    "fixed_button": CalvinProtocol(name="fixed_button", button_mode="fixed"),
}
DEFAULT_PROTOCOL = "vlm4vla"


# The env's ``episode_metrics`` (vla_gym.calvin.env writes them at a chain's last step); read below.
EPISODE_METRICS: dict[str, MetricField] = {
    "chain_length": MetricField(int, "subtasks completed in a row (0..protocol.chain_length)"),
    "chain_tasks": MetricField(list, "the chain's subtasks in order"),
    "subtask_success": MetricField(list, "one flag per subtask attempted: successes, then the failure if any"),
}


def chain_length_of(record: Record, max_length: int = CHAIN_LENGTH) -> int:
    """Completed subtasks of a chain; an error chain counts 0 (its progress is not trusted)."""
    if record.is_error:
        return 0
    try:
        length = int(record.episode_metrics["chain_length"])
    except KeyError as exc:
        raise KeyError(f"CALVIN episode {record.episode} has no episode_metrics.chain_length") from exc
    if not 0 <= length <= max_length:
        raise ValueError(f"CALVIN episode {record.episode}: chain_length {length} outside 0..{max_length}")
    return length


def calvin_metrics(records: Sequence[Record], max_length: int = CHAIN_LENGTH) -> dict[str, Any]:
    """Success rate for chain lengths 1..max_length (fraction of chains with >= k successes), average length,
    and per-task attempts/successes (a chain attempts its subtasks up to and including the first failure)."""
    lengths = [chain_length_of(r, max_length) for r in records]
    n = len(lengths)
    success_at = {str(k): rate(sum(length >= k for length in lengths), n) for k in range(1, max_length + 1)}
    per_task: dict[str, dict[str, int]] = {}
    for record, length in zip(records, lengths, strict=True):
        if record.is_error:
            continue
        tasks = list(record.episode_metrics.get("chain_tasks") or [])
        flags = record.episode_metrics.get("subtask_success")
        if flags is not None:
            flags = [bool(f) for f in flags]
            if flags[:length] != [True] * length or (len(flags) > length and flags[length]):
                raise ValueError(
                    f"CALVIN episode {record.episode}: subtask_success {flags} disagrees with "
                    f"chain_length {length} (it must be {length} successes then a failure)"
                )
        attempted = min(length + 1, len(tasks))
        for position, task in enumerate(tasks[:attempted]):
            counts = per_task.setdefault(task, {"attempts": 0, "successes": 0})
            counts["attempts"] += 1
            counts["successes"] += int(position < length)
    return {
        "chains": n,
        "errors": sum(r.is_error for r in records),
        "success_at": success_at,
        "avg_len": sum(lengths) / n if n else None,
        "per_task": {
            task: {**c, "rate": c["successes"] / c["attempts"]} for task, c in sorted(per_task.items())
        },
    }


class CalvinBenchmark(Scoring):
    """Headline: the average number of subtasks completed in a row (``avg_len``); per-episode score: the
    chain length (paired comparisons use the sign test)."""

    name = NAME
    env_id = ENV_ID
    protocols = PROTOCOLS
    entry_point = "vla_gym.calvin.env:CalvinEnv"  # registered by vla_gym from this declaration
    task_names = TASK_NAMES
    headline_name = "avg_len"
    headline_is_rate = False
    binary_scores = False
    EPISODE_METRICS = EPISODE_METRICS
    simulator_packages = ("pybullet",)

    def _max_length(self, protocol: Any) -> int:
        return (protocol if isinstance(protocol, CalvinProtocol) else self.protocol()).chain_length

    def extra_metrics(self, records: Sequence[Record], protocol: Any = None) -> dict[str, Any]:
        return {"calvin": calvin_metrics(records, self._max_length(protocol))}

    def headline(self, metrics: Mapping[str, Any]) -> float | None:
        return metrics["calvin"]["avg_len"]

    def episode_score(self, record: Record) -> float:
        return float(chain_length_of(record))

    def report_sections(self, metrics: Mapping[str, Any]) -> list[Section]:
        cal = metrics["calvin"]
        ks = sorted(int(k) for k in cal["success_at"])
        top = ks[-1] if ks else CHAIN_LENGTH
        chains = Table(
            ("", *[f"{k}/{top}" for k in ks], "avg. len"),
            (
                ("rate", *[pct(cal["success_at"][str(k)]["rate"]) for k in ks], num(cal["avg_len"])),
                ("95% CI", *[ci(cal["success_at"][str(k)]) for k in ks], ""),
            ),
        )
        subtasks = Table(
            ("subtask", "attempts", "successes", "rate"),
            tuple((t, c["attempts"], c["successes"], pct(c["rate"])) for t, c in cal["per_task"].items()),
        )
        return [
            Section("CALVIN chains", (chains, "Per subtask (attempts are subtasks reached in a chain):", subtasks))
        ]

    def plots(self, metrics: Mapping[str, Any]) -> list[BarPlot]:
        cal = metrics["calvin"]
        if not cal["chains"]:
            return []
        ks = tuple(sorted(int(k) for k in cal["success_at"]))
        return [
            BarPlot(
                key="calvin_plot",
                filename="calvin_chains.png",
                entries=tuple(cal["success_at"][str(k)] for k in ks),
                positions=ks,
                xlabel="tasks completed in a row",
                ylabel="fraction of chains (95% Wilson interval)",
                subtitle=None if cal["avg_len"] is None else f"average length {cal['avg_len']:.3f}",
            )
        ]

    def failure_task(self, record: Record) -> str:
        """The subtask the chain stopped at (the record's task for single-task episodes)."""
        chain = record.episode_metrics.get("chain_tasks")
        length = record.episode_metrics.get("chain_length")
        if chain and isinstance(length, int) and length < len(chain):
            return str(chain[length])
        return record.task

    def protocol(self, name: str | None = None, **overrides: Any) -> CalvinProtocol:
        return pick_protocol(NAME, PROTOCOLS, name, DEFAULT_PROTOCOL, overrides)  # type: ignore[return-value]

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Chain k is episode k (``task_index`` 0, ``task`` "chain", ``within_task`` k). With single-task
        episodes (``protocol.tasks``): episode k (``within_task`` k) for each chain k whose initial scene one
        of the tasks applies to, ``task`` and ``task_index`` (into :data:`TASK_NAMES`) naming it."""
        if not isinstance(protocol, CalvinProtocol):
            raise TypeError(f"expected a CalvinProtocol, got {type(protocol).__name__}")
        if not protocol.tasks:
            return [
                EpisodeKey(index=k, task_index=0, task=CHAIN_TASK, within_task=k) for k in range(protocol.num_chains)
            ]
        conditions = chain_conditions(protocol.num_chains)
        plan = []
        for k, condition in enumerate(conditions):
            task = single_task_for(condition, protocol.tasks)
            if task is not None:
                plan.append(EpisodeKey(index=k, task_index=TASK_NAMES.index(task), task=task, within_task=k))
        return plan


def chain_conditions(num: int = NUM_CHAINS) -> list[dict[str, Any]]:
    """The initial conditions of the first ``num`` evaluation chains (without drawing their tasks)."""
    from vla_gym.calvin.sequences import chain_slots, initial_conditions

    conditions = initial_conditions()
    return [dict(conditions[c]) for c, _ in chain_slots(NUM_CHAINS)[:num]]


def single_task_for(condition: dict[str, Any], tasks: tuple[str, ...] | list[str]) -> str | None:
    """The first of ``tasks`` that applies (in exactly one way) in the initial ``condition``, else None."""
    from vla_gym.calvin.sequences import successors

    for task in tasks:
        if len(successors(condition, task)) == 1:
            return task
    return None


BENCHMARK = CalvinBenchmark()
