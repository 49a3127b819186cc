"""LIBERO-Long (LIBERO-10): its ten tasks, its protocols and its episode plan. Imports no simulator.

Protocols:

- ``vlm4vla`` (default): agentview + wrist cameras rendered at 256x256, rotated 180 degrees to upright and
  resized to 224 with area interpolation; 10 settle no-ops ``[0, 0, 0, 0, 0, 0, -1]`` (LIBERO's sign: gripper
  open) after the init state is set, not counted; then at most 520 policy steps; 50 init states per task;
  success = the first step at which every BDDL goal predicate holds (the episode terminates there).
- ``vlm4vla_paper``: the paper's own evaluation loop step for step. Its wait branch has no ``continue``, so a
  single counter runs to ``max_steps + settle_steps`` (530) and, while it is below ``settle_steps``, every
  policy step is preceded by a no-op that also advances the counter: 5 no-ops interleaved before policy steps
  1..5, then up to 520 more policy steps (525 in all); a no-op's own success is not checked.
- ``vlm4vla_fast``: like ``vlm4vla`` but rendered straight at 224 (no resize). Scores are not comparable with
  the 256-render protocols (different digest).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.plan import EpisodeKey, task_grid
from tasks.protocol import Protocol, pick_protocol

NAME = "libero_long"
ENV_ID = "VLA/LiberoLong-v0"
SUITE = "libero_10"

# hf-libero's libero_10 suite in its default task order (task_orders[0] is the identity).
TASK_NAMES: tuple[str, ...] = (
    "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket",
    "LIVING_ROOM_SCENE2_put_both_the_cream_cheese_box_and_the_butter_in_the_basket",
    "KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it",
    "KITCHEN_SCENE4_put_the_black_bowl_in_the_bottom_drawer_of_the_cabinet_and_close_it",
    "LIVING_ROOM_SCENE5_put_the_white_mug_on_the_left_plate_and_put_the_yellow_and_white_mug_on_the_right_plate",
    "STUDY_SCENE1_pick_up_the_book_and_place_it_in_the_back_compartment_of_the_caddy",
    "LIVING_ROOM_SCENE6_put_the_white_mug_on_the_plate_and_put_the_chocolate_pudding_to_the_right_of_the_plate",
    "LIVING_ROOM_SCENE1_put_both_the_alphabet_soup_and_the_cream_cheese_box_in_the_basket",
    "KITCHEN_SCENE8_put_both_moka_pots_on_the_stove",
    "KITCHEN_SCENE6_put_the_yellow_and_white_mug_in_the_microwave_and_close_it",
)
INIT_STATES_PER_FILE = 50  # each task's .pruned_init file holds 50 init states

SETTLE_MODES = ("before", "interleaved")
RESIZE_INTERPOLATIONS = ("area", "linear", "cubic", "lanczos")


def instruction(task_name: str) -> str:
    """The language instruction, as LIBERO derives it (the task name without its scene prefix)."""
    words = task_name.split("_")
    start = next(i for i, word in enumerate(words) if word.startswith("SCENE")) + 1
    return " ".join(words[start:])


@dataclasses.dataclass(frozen=True)
class LiberoLongProtocol(Protocol):
    """Every constant that changes a LIBERO-Long score."""

    benchmark: str = NAME
    name: str = "vlm4vla"
    suite: str = SUITE
    max_steps: int = 520  # policy steps (settle no-ops excluded, except as `settle_mode` says)
    settle_steps: int = 10
    settle_mode: str = "before"  # "before": all no-ops first; "interleaved": the paper's loop
    settle_action: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # LIBERO's sign: -1 = open
    init_states_per_task: int = 50
    cameras: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")
    render_size: int = 256
    image_size: int = 224
    resize_interpolation: str = "area"  # OpenCV INTER_AREA: the standard choice for downscaling
    image_rotation: int = 180  # LIBERO renders upside down; both cameras are rotated to upright
    controller: str = "OSC_POSE"
    control_freq: int = 20
    fixture_seed: int = 0  # numpy's global RNG is seeded with this before every hard reset
    hard_reset: bool = True
    success: str = "first_step"  # terminate at the first step where all goal predicates hold
    simulator: str = "hf-libero==0.1.4 robosuite==1.4.0 mujoco==3.8.1"

    def __post_init__(self) -> None:
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
        if len(self.settle_action) != 7:
            raise ValueError(f"settle_action must have 7 values, got {len(self.settle_action)}")
        if self.image_rotation not in (0, 180):
            raise ValueError(f"image_rotation must be 0 or 180, got {self.image_rotation}")
        if not self.hard_reset:
            raise ValueError(
                "hard_reset=False is not supported: LIBERO's soft reset diverges from the first step"
            )
        if self.success != "first_step":
            raise ValueError(f"success must be 'first_step', got {self.success!r}")
        if self.suite != SUITE:
            raise ValueError(f"suite must be {SUITE!r}, got {self.suite!r}")

    @property
    def max_policy_steps(self) -> int:
        """Policy steps an episode may take before truncation."""
        if self.settle_mode == "interleaved":  # the counter runs to max + settle; no-ops take some of it
            return self.max_steps + self.settle_steps - interleaved_noops(self.settle_steps)
        return self.max_steps


def interleaved_noops(settle_steps: int) -> int:
    """No-ops the paper's loop runs: each iteration below ``settle_steps`` advances its counter twice."""
    return (settle_steps + 1) // 2


PROTOCOLS: dict[str, LiberoLongProtocol] = {
    "vlm4vla": LiberoLongProtocol(),
    "vlm4vla_paper": LiberoLongProtocol(name="vlm4vla_paper", settle_mode="interleaved"),
    "vlm4vla_fast": LiberoLongProtocol(name="vlm4vla_fast", render_size=224),
}
DEFAULT_PROTOCOL = "vlm4vla"


class LiberoLongBenchmark:
    name = NAME
    env_id = ENV_ID
    task_names = TASK_NAMES

    def protocol(self, name: str | None = None, **overrides: Any) -> LiberoLongProtocol:
        return pick_protocol(NAME, PROTOCOLS, name, DEFAULT_PROTOCOL, overrides)  # type: ignore[return-value]

    def episode_plan(self, protocol: Protocol) -> list[EpisodeKey]:
        """Task k // n, init state k % n, with n = ``protocol.init_states_per_task`` (50 by default)."""
        if not isinstance(protocol, LiberoLongProtocol):
            raise TypeError(f"expected a LiberoLongProtocol, got {type(protocol).__name__}")
        return task_grid(TASK_NAMES, protocol.init_states_per_task)


BENCHMARK = LiberoLongBenchmark()
