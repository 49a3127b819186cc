"""Episode videos (mp4 through imageio-ffmpeg) of the first k episodes of each task."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.plan import EpisodeKey


def video_episodes(episodes: Sequence[EpisodeKey], per_task: int) -> set[int]:
    """The first ``per_task`` episodes of each task, in plan order."""
    if per_task < 0:
        raise ValueError(f"video.episodes_per_task must be >= 0, got {per_task}")
    seen: dict[int, int] = {}
    chosen = set()
    for key in episodes:
        if seen.get(key.task_index, 0) < per_task:
            chosen.add(key.index)
            seen[key.task_index] = seen.get(key.task_index, 0) + 1
    return chosen


def video_path(folder: Path, key_index: int, task: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", task)[:80]
    return folder / f"episode_{key_index:05d}_{safe}.mp4"


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"no frames to write to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1 keeps odd frame sizes as they are instead of resizing them.
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
        for frame in frames:
            writer.append_data(np.asarray(frame, dtype=np.uint8))
    return path
