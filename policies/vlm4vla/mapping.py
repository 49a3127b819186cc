"""From head outputs to env actions, per benchmark (the paper's evaluation adapters, as data).

Arm: the tanh output mapped to ``[norm_min, norm_max]`` as the paper's ``unnoramalize_action`` does,
``0.5 * (a + 1) * (norm_max - norm_min) + norm_min`` (``scale * a`` for the symmetric +-0.65 of every
paper config; a training config beside the checkpoint sets them), then for LIBERO and Bridge the q01/q99
un-normalisation ``0.5 * (a + 1) * (q99 - q01) + q01``. Gripper: sigmoid > 0.5 -> +1 open, else -1 close
(the env contract; each env converts to its simulator's sign). Bridge keeps the rotation as Euler deltas
(the env converts to axis-angle) and only opens after ``open_after`` consecutive open predictions.

Shipped statistics (``action_stats_*.json`` beside this file): the action q01/q99 of the paper's released
``dataset_statistics_libero_10.json`` and ``dataset_statistics_bridge.json``.

:data:`MAPPINGS` is the one per-benchmark table of VLM4VLA (its YAML has none): the harness reads
``VLM4VLAAgent.needs_native_image`` from the class before building it, so the table must be importable, and
its values are the paper's fixed evaluation adapters, each with its own override in
``conf/policy/base/vlm4vla.yaml`` (``chunk_size``, ``execute_steps``, ``statistics``, ``action_scale``,
``center_crop``). The paper trained and evaluated LIBERO-10 only: the other LIBERO suites get its LIBERO
adapter (chunk 4, the centre crop) but no statistics, which their own data would give (``policy.statistics``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve().parent
SHIPPED_STATS = {"libero_10": _HERE / "action_stats_libero_10.json", "bridge": _HERE / "action_stats_bridge.json"}


@dataclasses.dataclass(frozen=True)
class OutputMapping:
    benchmark: str
    chunk_size: int  # actions predicted per query (the head's n)
    execute_steps: int  # actions executed open-loop per query
    statistics: str | None = None  # key of SHIPPED_STATS or a path; None = none shipped
    needs_statistics: bool = False  # the arm is q01/q99-normalised data (LIBERO, Bridge): statistics are required
    scale: float = 0.65  # symmetric action range (norm_min = -scale, norm_max = scale) unless these are set
    norm_min: float | None = None
    norm_max: float | None = None
    open_after: int = 1  # consecutive open predictions before the gripper opens (Bridge: 2)
    libero_crop: bool = False  # 90%-area centre crop before the model (LIBERO)


def _libero(suite: str, statistics: str | None = None) -> OutputMapping:
    """The paper's LIBERO adapter (its LIBERO-10 configs: chunk 4, all executed, the 90% centre crop)."""
    return OutputMapping(suite, chunk_size=4, execute_steps=4, statistics=statistics, needs_statistics=True,
                         libero_crop=True)


MAPPINGS = {
    "calvin": OutputMapping("calvin", chunk_size=10, execute_steps=10),
    "libero_long": _libero("libero_long", statistics="libero_10"),
    # no released statistics: the paper did not train on these suites
    "libero_spatial": _libero("libero_spatial"),
    "libero_object": _libero("libero_object"),
    "libero_goal": _libero("libero_goal"),
    "libero_90": _libero("libero_90"),
    "simpler_bridge": OutputMapping("simpler_bridge", chunk_size=4, execute_steps=4, statistics="bridge",
                                    needs_statistics=True, open_after=2),
}


def libero_crop_benchmarks() -> tuple[str, ...]:
    """The benchmarks whose images get the LIBERO centre crop (from the native render): ``needs_native_image``."""
    return tuple(name for name, mapping in MAPPINGS.items() if mapping.libero_crop)


def get_mapping(benchmark: str, **overrides: object) -> OutputMapping:
    if benchmark not in MAPPINGS:
        raise KeyError(
            f"no VLM4VLA output mapping for benchmark {benchmark!r} (known: {sorted(MAPPINGS)}): add an "
            f"OutputMapping for it to MAPPINGS in policies/vlm4vla/mapping.py"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(MAPPINGS[benchmark], **overrides)


def load_statistics(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(q01, q99) of the 7-d action from a shipped key or a JSON file (the paper's layout or ``{q01, q99}``)."""
    path = SHIPPED_STATS.get(str(source), Path(source))
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"action statistics {source!r} not found: use one of {sorted(SHIPPED_STATS)} or a JSON file path"
        )
    data = json.loads(Path(path).read_text())
    if "action" in data:
        data = data["action"]
    try:
        q01 = np.asarray(data["q01"], dtype=np.float64)
        q99 = np.asarray(data["q99"], dtype=np.float64)
    except KeyError as exc:
        raise KeyError(f"{path}: statistics need 'q01' and 'q99' (top level or under 'action')") from exc
    if q01.shape != (7,) or q99.shape != (7,):
        raise ValueError(f"{path}: q01/q99 must have 7 values each, got {q01.shape} and {q99.shape}")
    return q01, q99


class ActionMapper:
    """Maps (B, n, 6) tanh arm + (B, n) gripper logits to (B, n, 7) env-contract actions; keeps the
    per-env gripper filter state (reset it with :meth:`reset`)."""

    def __init__(self, mapping: OutputMapping, statistics_path: str | None = None) -> None:
        self.mapping = mapping
        source = statistics_path or mapping.statistics
        if source is None and mapping.needs_statistics:
            raise ValueError(
                f"VLM4VLA has no action statistics for {mapping.benchmark} (the paper released "
                f"{sorted(SHIPPED_STATS)} only): pass policy.statistics=<q01/q99 JSON of the data the checkpoint was "
                f"trained on, or a shipped key> (the paper's dataset_statistics_*.json layout or {{\"q01\": [...], \"q99\": [...]}})"
            )
        self.q01, self.q99 = load_statistics(source) if source else (None, None)
        self._open_streak: dict[int, int] = {}

    def reset(self, env_ids: Sequence[int]) -> None:
        for env_id in env_ids:
            self._open_streak.pop(int(env_id), None)

    def __call__(self, arm: np.ndarray, gripper_logits: np.ndarray, env_ids: Sequence[int]) -> np.ndarray:
        arm = np.asarray(arm, dtype=np.float64)
        lo, hi = self.mapping.norm_min, self.mapping.norm_max
        if lo is None or hi is None or lo == -hi:
            arm = (self.mapping.scale if hi is None else hi) * arm
        else:
            arm = 0.5 * (arm + 1.0) * (hi - lo) + lo
        if self.q01 is not None:
            arm = 0.5 * (arm + 1.0) * (self.q99[:6] - self.q01[:6]) + self.q01[:6]
        is_open = 1.0 / (1.0 + np.exp(-np.asarray(gripper_logits, dtype=np.float64))) > 0.5
        grip = np.empty(is_open.shape, dtype=np.float64)
        for row, env_id in enumerate(env_ids):
            streak = self._open_streak.get(int(env_id), 0)
            for k in range(is_open.shape[1]):
                streak = streak + 1 if is_open[row, k] else 0
                grip[row, k] = 1.0 if streak >= self.mapping.open_after else -1.0
                if k + 1 == self.mapping.execute_steps:
                    # Only executed actions advance the filter; the rest of the chunk is never run.
                    self._open_streak[int(env_id)] = streak
        return np.concatenate([arm, grip[..., None]], axis=-1).astype(np.float32)
