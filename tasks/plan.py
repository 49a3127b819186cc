"""Episode plans: the deterministic list of episodes a protocol defines, computable without a simulator."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class EpisodeKey:
    """One episode of a protocol's plan. ``index`` is what ``reset(options={"episode": index})`` takes."""

    index: int
    task_index: int
    task: str
    within_task: int  # init state (LIBERO), episode_id (Bridge), chain index (CALVIN)


def task_grid(task_names: Sequence[str], per_task: int) -> list[EpisodeKey]:
    """The usual plan: episode k is task k // per_task, its ``within_task`` k % per_task."""
    return [
        EpisodeKey(index=t * per_task + j, task_index=t, task=name, within_task=j)
        for t, name in enumerate(task_names)
        for j in range(per_task)
    ]


def select(
    plan: Sequence[EpisodeKey],
    *,
    tasks: Sequence[int | str] | None = None,
    episodes_per_task: int | None = None,
    episodes: Sequence[int] | None = None,
    episodes_from: int | None = None,
) -> list[EpisodeKey]:
    """A subset of ``plan`` for quick runs; each kept episode stays exactly the protocol's episode.

    ``tasks`` keeps tasks by index or name, ``episodes_from`` keeps episode indices >= it (e.g. held-out
    episodes after those a policy was trained on), ``episodes_per_task`` then keeps the first n of each task,
    ``episodes`` keeps explicit episode indices (in plan order). Unknown values raise ``KeyError``.
    """
    by_index = {key.index: key for key in plan}
    chosen = list(plan)
    if episodes_from is not None:
        chosen = [key for key in chosen if key.index >= episodes_from]
    if tasks is not None:
        names = {key.task for key in plan}
        indices = {key.task_index for key in plan}
        for task in tasks:
            if (isinstance(task, str) and task not in names) or (not isinstance(task, str) and task not in indices):
                raise KeyError(
                    f"unknown task {task!r}; known task indices {sorted(indices)} and names {sorted(names)}"
                )
        wanted = set(tasks)
        chosen = [key for key in chosen if key.task_index in wanted or key.task in wanted]
    if episodes_per_task is not None:
        if episodes_per_task < 1:
            raise ValueError(f"episodes_per_task must be >= 1, got {episodes_per_task}")
        seen: dict[int, int] = {}
        kept = []
        for key in chosen:
            if seen.get(key.task_index, 0) < episodes_per_task:
                kept.append(key)
                seen[key.task_index] = seen.get(key.task_index, 0) + 1
        chosen = kept
    if episodes is not None:
        missing = sorted(set(episodes) - set(by_index))
        if missing:
            raise KeyError(f"episode(s) {missing} are not in the plan (0..{len(plan) - 1})")
        wanted_episodes = set(episodes)
        chosen = [key for key in chosen if key.index in wanted_episodes]
    return chosen
