"""SimplerEnv-Bridge (WidowX, ManiSkill3 digital twins): its four tasks, protocols and episode plan.
Imports no simulator.

Protocols:

- ``vlm4vla`` (default): the 3rd-person camera rendered at 640x480 (Logitech C920 intrinsics), green-screened
  onto the real photo of the scene, then resized to 224x224 with area interpolation (OpenCV ``INTER_AREA``);
  60 steps per episode (120 for the eggplant), no early termination; success = the flag at the final step;
  24 episodes per task (``episode_id`` 0..23, the original SimplerEnv layouts); every episode starts from a
  freshly built scene, as a newly made ManiSkill3 env (what the VLM4VLA code does for every episode).
- ``vlm4vla_fast``: like ``vlm4vla`` but rendered straight at 224x224 with the intrinsics scaled by 224/640
  and 224/480 (same field of view; the green-screen photo is resized to 224 too). Not comparable with the
  default (different digest).
- ``terminate_on_success`` (alias ``vlm4vla_terminate``): like ``vlm4vla`` but the episode terminates at the
  first step where the task holds (``success="first_step"``), so the reward ``float(success)`` sums to 1.0
  for a solved episode: for RL. Its success rate can only be higher than the default's (an episode that
  succeeds and then undoes it counts); different digest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.plan import EpisodeKey, task_grid
from tasks.protocol import Protocol, pick_protocol
from tasks.scoring import MetricField, Record, Scoring, Section, Table, by_task, ci, pct, rate

NAME = "simpler_bridge"
ENV_ID = "VLA/SimplerBridge-v0"

TASK_NAMES: tuple[str, ...] = ("spoon_on_towel", "carrot_on_plate", "stack_cube", "eggplant_in_basket")

INSTRUCTIONS: dict[str, str] = {
    "spoon_on_towel": "put the spoon on the towel",
    "carrot_on_plate": "put carrot on plate",
    "stack_cube": "stack the green block on the yellow block",
    "eggplant_in_basket": "put eggplant into yellow basket",
}

RESIZE_INTERPOLATIONS = ("area", "linear", "cubic", "lanczos")
# The C920 intrinsics SimplerEnv's Bridge camera uses, at 640x480.
CAMERA_INTRINSICS_640x480 = (623.588, 623.588, 319.501, 239.545)  # fx, fy, cx, cy


def instruction(task: str) -> str:
    if task not in INSTRUCTIONS:
        raise KeyError(f"unknown {NAME} task {task!r}; known: {list(TASK_NAMES)}")
    return INSTRUCTIONS[task]


@dataclasses.dataclass(frozen=True)
class SimplerBridgeProtocol(Protocol):
    """Every constant that changes a SimplerEnv-Bridge score."""

    FACTS = {
        "episode_start": "each episode starts in a freshly built PhysX scene, as gym.make builds it",
        "rotation_input": "the contract's rotation is roll/pitch/yaw deltas, converted to axis-angle",
        "control_freq": "the Bridge digital twins control at 5 Hz",
        "sim_freq": "the Bridge digital twins simulate at 500 Hz",
        "consecutive_grasp_steps": "ManiSkill's Bridge envs count a grasp held 5 steps in a row",
        "simulator": "the simulator these protocols are pinned to",
    }

    benchmark: str = NAME
    name: str = "vlm4vla"
    camera: str = "3rd_view_camera"
    render_width: int = 640
    render_height: int = 480
    image_size: int = 224
    resize_interpolation: str = "area"  # OpenCV INTER_AREA (only used when the render size differs)
    green_screen: bool = True
    max_steps: int = 60
    max_steps_eggplant: int = 120
    episodes_per_task: int = 24
    # "final_step": the success flag at the last step (episodes run to truncation); "first_step": terminate at
    # the first step with the flag set
    success: str = "final_step"
    consecutive_grasp_steps: int = 5  # "grasped_consecutive": the source object held this many steps in a row
    # "simpler_8x3": SimplerEnv's 8 positions x bare yaws (0, +45, -45 deg), dropped and settled as SimplerEnv
    # does; "maniskill3_8x8": ManiSkill3's 8 positions x 8 tilted resting poses and its settling
    eggplant_layouts: str = "simpler_8x3"
    # "fresh_scene": every episode starts from a PhysX scene built as gym.make builds ManiSkill's env (the
    # construction reset with seed 2022 included), so episode k never depends on what ran before
    episode_start: str = "fresh_scene"
    rotation_input: str = "euler_xyz"  # contract rotation: roll/pitch/yaw deltas, converted to axis-angle
    control_freq: int = 5
    sim_freq: int = 500
    simulator: str = "mani-skill==3.0.1 sapien==3.0.3 physx_cpu"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.resize_interpolation not in RESIZE_INTERPOLATIONS:
            raise ValueError(
                f"resize_interpolation must be one of {RESIZE_INTERPOLATIONS}, got {self.resize_interpolation!r}"
            )
        for field in ("render_width", "render_height", "image_size", "max_steps", "max_steps_eggplant"):
            if getattr(self, field) < 1:
                raise ValueError(f"protocol field {field} must be >= 1, got {getattr(self, field)}")
        if not 1 <= self.episodes_per_task <= 24:
            raise ValueError(f"episodes_per_task must be in 1..24, got {self.episodes_per_task}")
        if self.success not in ("final_step", "first_step"):
            raise ValueError(f"success must be 'final_step' or 'first_step', got {self.success!r}")
        if self.eggplant_layouts not in ("simpler_8x3", "maniskill3_8x8"):
            raise ValueError(
                f"eggplant_layouts must be 'simpler_8x3' or 'maniskill3_8x8', got {self.eggplant_layouts!r}"
            )

    def max_steps_for(self, task: str) -> int:
        instruction(task)  # validates the name
        return self.max_steps_eggplant if task == "eggplant_in_basket" else self.max_steps

    def intrinsics(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy at the render size: the C920's scaled so the field of view stays the same."""
        fx, fy, cx, cy = CAMERA_INTRINSICS_640x480
        sx, sy = self.render_width / 640.0, self.render_height / 480.0
        return fx * sx, fy * sy, cx * sx, cy * sy


PROTOCOLS: dict[str, SimplerBridgeProtocol] = {
    "vlm4vla": SimplerBridgeProtocol(),
    "vlm4vla_fast": SimplerBridgeProtocol(name="vlm4vla_fast", render_width=224, render_height=224),
    "terminate_on_success": SimplerBridgeProtocol(name="terminate_on_success", success="first_step"),
}
DEFAULT_PROTOCOL = "vlm4vla"
# short aliases accepted by ``protocol()``
_ALIASES = {"default": "vlm4vla", "fast": "vlm4vla_fast", "vlm4vla_terminate": "terminate_on_success"}


# The env's ``episode_metrics`` (vla_gym.bridge.env writes them at the last step); read below.
EPISODE_METRICS: dict[str, MetricField] = {
    "grasped_any": MetricField(bool, "the source object was grasped at some step (partial success)"),
    "grasped_consecutive": MetricField(bool, "held for protocol.consecutive_grasp_steps steps in a row"),
    "gripper_clipped_steps": MetricField(int, "steps whose gripper input was clipped to [-1, 1]"),
    "asset_digest": MetricField(str, "digest of the scene assets the episode ran on"),
    "assets_are_standins": MetricField(bool, "True when the assets are test stand-ins, not the benchmark's"),
}


def grasped(record: Record) -> bool:
    """Partial success: the source object was grasped at any step (error episodes: False)."""
    if record.is_error:
        return False
    if "grasped_any" not in record.episode_metrics:
        raise KeyError(f"Bridge episode {record.episode} has no episode_metrics.grasped_any")
    return bool(record.episode_metrics["grasped_any"])


def partial_metrics(records: Sequence[Record]) -> dict[str, Any]:
    """Partial (grasp) rates overall and per task."""
    return {
        "overall": rate(sum(map(grasped, records)), len(records)),
        "per_task": [
            {"task_index": t, "task": group[0].task, **rate(sum(map(grasped, group)), len(group))}
            for t, group in sorted(by_task(records).items())
        ],
    }


class SimplerBridgeBenchmark(Scoring):
    """Headline: the success rate; also partial (grasp) rates and the asset digests the episodes ran on."""

    name = NAME
    env_id = ENV_ID
    protocols = PROTOCOLS
    entry_point = "vla_gym.bridge.env:SimplerBridgeEnv"  # registered by vla_gym from this declaration
    task_names = TASK_NAMES
    EPISODE_METRICS = EPISODE_METRICS
    simulator_packages = ("mani-skill", "sapien")

    def extra_metrics(self, records: Sequence[Record], protocol: Any = None) -> dict[str, Any]:
        return {"partial": partial_metrics(records)}

    def report_header(self, records: Sequence[Record]) -> list[str]:
        """The asset digests the env reported; a loud warning when any episode ran on stand-in assets."""
        digests = sorted(
            {str(r.episode_metrics["asset_digest"]) for r in records if "asset_digest" in r.episode_metrics}
        )
        if not digests:
            return []
        lines = [f"- assets: digest {', '.join(f'`{d}`' for d in digests)}"]
        if any(r.episode_metrics.get("assets_are_standins") for r in records):
            lines.append("- **WARNING: stand-in assets (test data), not benchmark numbers**")
        return lines

    def report_sections(self, metrics: Mapping[str, Any]) -> list[Section]:
        part = metrics["partial"]
        rows = tuple(
            (t["task_index"], t["task"], t["n"], t["successes"], pct(t["rate"]), ci(t))
            for t in [*part["per_task"], {**part["overall"], "task_index": "", "task": "**overall**"}]
        )
        table = Table(("#", "task", "episodes", "grasped", "rate", "95% CI"), rows)
        return [Section("Partial success (object grasped at any step)", (table,))]

    def protocol(self, name: str | None = None, **overrides: Any) -> SimplerBridgeProtocol:
        return pick_protocol(NAME, PROTOCOLS, name, DEFAULT_PROTOCOL, overrides, _ALIASES)  # type: ignore[return-value]

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Task k // n, ``episode_id`` k % n, with n = ``protocol.episodes_per_task`` (24: 96 episodes)."""
        if not isinstance(protocol, SimplerBridgeProtocol):
            raise TypeError(f"expected a SimplerBridgeProtocol, got {type(protocol).__name__}")
        return task_grid(TASK_NAMES, protocol.episodes_per_task)


BENCHMARK = SimplerBridgeBenchmark()
