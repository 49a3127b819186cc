"""Find the checkpoints of a training run and the step/epoch each was saved at, from its name.

Recognised names: ``step=40000.pt``, ``step_40000.pt``, ``epoch=3-step=12000.ckpt`` (Lightning),
``checkpoint-500`` (Hugging Face Trainer folders), ``iter_2000.pth``, ``40000.pt``, ``epoch_3.pt``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

_STEP = re.compile(r"(?:^|[^a-z])(?:step|global_step|checkpoint|ckpt|iter|iteration)[=_-]?(\d+)(?![0-9])", re.I)
_EPOCH = re.compile(r"(?:^|[^a-z])epoch[=_-]?(\d+)(?![0-9])", re.I)
_BARE = re.compile(r"^(\d+)$")
DEFAULT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", "")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int | None
    epoch: int | None

    @property
    def name(self) -> str:
        return self.path.name


def parse_name(name: str) -> tuple[int | None, int | None]:
    """(step, epoch) from a checkpoint file or folder name; None where the name does not say."""
    stem = name
    for suffix in DEFAULT_SUFFIXES:
        if suffix and stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    step = _STEP.search(stem)
    epoch = _EPOCH.search(stem)
    bare = _BARE.match(stem)
    step_value = int(step.group(1)) if step else (int(bare.group(1)) if bare else None)
    return step_value, int(epoch.group(1)) if epoch else None


def find_checkpoints(
    folder: str | Path, pattern: str = "*", suffixes: Sequence[str] = DEFAULT_SUFFIXES
) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints in ``folder`` ordered by step (by epoch when no name has a step), and the names skipped
    because they carry no number on that axis (e.g. ``last.ckpt``). ``""`` in ``suffixes`` admits folders."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"checkpoint folder {root} does not exist (set checkpoints=DIR)")
    found: list[Checkpoint] = []
    for path in sorted(root.glob(pattern)):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            if "" not in suffixes:
                continue
        elif path.suffix not in suffixes or path.suffix == "":
            continue
        step, epoch = parse_name(path.name)
        found.append(Checkpoint(path, step, epoch))
    axis = "step" if any(c.step is not None for c in found) else "epoch"
    kept = [c for c in found if getattr(c, axis) is not None]
    skipped = [c.name for c in found if getattr(c, axis) is None]
    if not kept:
        raise FileNotFoundError(
            f"no checkpoint with a step or epoch number in its name in {root} "
            f"(pattern {pattern!r}, suffixes {list(suffixes)}); found {[c.name for c in found][:20]}"
        )
    kept.sort(key=lambda c: (getattr(c, axis), c.epoch or 0, c.name))
    seen: dict[int, str] = {}
    for c in kept:
        value = getattr(c, axis)
        if value in seen:
            raise ValueError(
                f"two checkpoints at {axis} {value}: {seen[value]} and {c.name}; narrow checkpoint_glob "
                f"or checkpoint_suffixes so each {axis} has one file"
            )
        seen[value] = c.name
    return kept, skipped
