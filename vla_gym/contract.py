"""The observation/action contract every vla-gym env keeps (see README, "The env contract").

Observation: a Dict with ``image`` uint8 (224, 224, 3) upright, ``wrist_image`` where the benchmark has a
wrist camera, ``language`` (Text) and ``proprio`` float32 when asked for.
Action: 7 floats ``[dx, dy, dz, drot(3), gripper]`` in the benchmark's training-data convention, with the
gripper harmonised to +1 open / -1 close. ``native`` action mode passes the simulator's action unchanged.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

IMAGE_SIZE = 224
ACTION_DIM = 7
GRIPPER_OPEN = 1.0
GRIPPER_CLOSE = -1.0
ACTION_MODES = ("contract", "native")

# Instructions need spaces and punctuation; Text's default charset is alphanumeric only.
LANGUAGE_CHARSET = frozenset(string.printable)
MAX_LANGUAGE_LENGTH = 512

# info keys every env sets on reset and on every step
INFO_KEYS = ("success", "task", "task_index", "episode")


def language_space() -> spaces.Text:
    """A ``Text`` that keeps the instruction intact through ``AsyncVectorEnv``'s shared memory
    (:mod:`vla_gym.instruction_space`)."""
    from vla_gym.instruction_space import InstructionText

    return InstructionText(max_length=MAX_LANGUAGE_LENGTH, min_length=0, charset=LANGUAGE_CHARSET)


def image_space(size: int = IMAGE_SIZE) -> spaces.Box:
    return spaces.Box(low=0, high=255, shape=(size, size, 3), dtype=np.uint8)


def observation_space(
    *, wrist: bool, proprio_dim: int | None = None, image_size: int = IMAGE_SIZE
) -> spaces.Dict:
    """The contract's observation space; ``proprio_dim=None`` leaves ``proprio`` out."""
    parts: dict[str, spaces.Space] = {"image": image_space(image_size)}
    if wrist:
        parts["wrist_image"] = image_space(image_size)
    parts["language"] = language_space()
    if proprio_dim is not None:
        parts["proprio"] = spaces.Box(low=-np.inf, high=np.inf, shape=(proprio_dim,), dtype=np.float32)
    return spaces.Dict(parts)


def action_space(low: Sequence[float] | float = -1.0, high: Sequence[float] | float = 1.0) -> spaces.Box:
    """The (7,) action Box with the range the benchmark's controller uses (each env documents its numbers).

    The bounds are declared, not enforced: envs never clip an action themselves. Out-of-range input keeps
    the benchmark's own behaviour (its simulator may clip it) and is counted in
    ``info["action_out_of_range_steps"]`` (see :func:`out_of_range`).
    """
    lo = np.broadcast_to(np.asarray(low, dtype=np.float32), (ACTION_DIM,)).copy()
    hi = np.broadcast_to(np.asarray(high, dtype=np.float32), (ACTION_DIM,)).copy()
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise ValueError(f"action bounds must be finite with low < high, got {lo} .. {hi}")
    return spaces.Box(low=lo, high=hi, dtype=np.float32)


def out_of_range(action: np.ndarray, space: spaces.Box) -> bool:
    """Whether any value of a validated action lies outside the declared range."""
    return bool(np.any(action < space.low) or np.any(action > space.high))


def validate_action(action: Any, shape: tuple[int, ...] = (ACTION_DIM,), name: str = "action") -> np.ndarray:
    """Return ``action`` as a float32 array of ``shape`` or raise ``ValueError`` saying what is wrong.

    Accepts any real numeric array-like (float32/64, ints, lists); refuses non-numeric, complex, wrong-shaped
    and non-finite input.
    """
    try:
        arr = np.asarray(action)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a numeric array of shape {shape}, got {type(action).__name__}") from exc
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(
            f"{name} must hold real numbers (float or int), got dtype {arr.dtype}; "
            f"pass e.g. np.zeros({shape[0] if len(shape) == 1 else shape}, dtype=np.float32)"
        )
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        bad = np.flatnonzero(~np.isfinite(out.reshape(-1))).tolist()
        raise ValueError(f"{name} has non-finite values (NaN or inf) at index {bad}: {arr.tolist()}")
    return out


def check_action_mode(mode: str) -> str:
    if mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {mode!r}")
    return mode


def check_reset_options(options: Any, allowed: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Validate a reset ``options`` dict: known keys only, each of the allowed type."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"reset options must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise KeyError(f"unknown reset option(s) {unknown}; known options: {sorted(allowed)}")
    checked: dict[str, Any] = {}
    for key, value in options.items():
        types = allowed[key] if isinstance(allowed[key], tuple) else (allowed[key],)
        if isinstance(value, np.integer) and int in types:
            value = int(value)  # numpy ints from index arithmetic are fine; hand on a plain int
        if isinstance(value, bool) or not isinstance(value, types):
            expected = " or ".join(t.__name__ for t in types)
            raise ValueError(f"reset option {key!r} must be {expected}, got {type(value).__name__} {value!r}")
        checked[key] = value
    return checked


class EpisodeOverError(RuntimeError):
    """Raised when step() is called after the episode terminated or was truncated."""

    def __init__(self) -> None:
        super().__init__("the episode is over (terminated or truncated): call reset() before step()")
