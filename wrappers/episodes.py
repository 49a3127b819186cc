"""Per-env episode assignment: each env of a vector env walks its own slice of a protocol's episode plan.

Vector envs and RL collectors (gymnasium's autoreset, tianshou's ``Collector``) reset every env with the same
arguments, so they cannot ask env ``i`` for episode ``k``. :class:`AssignedEpisodes` holds env ``i``'s list
and answers a plain ``reset()`` with the next episode of that list, through the env's own
``reset(options={"episode": k})``.

An episode is used up when it *ends* (terminated or truncated), not when it starts: a reset in the middle of
an episode (a collector's reset at the start or end of ``collect``) starts the same episode again, from the
same initial state. Every vla-gym episode is a pure function of its plan index, so the completed episodes of
env ``i`` are exactly its list, in order, whatever extra resets happened. Once the list is used up, a reset
starts its last episode again with ``info["assignment_done"] = True``; a driver that wants the exact plan
(:func:`vla_gym.rl.collect_plan`) stops stepping that env.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym


def assign_episodes(episodes: Sequence[int], num_envs: int) -> list[list[int]]:
    """Deal ``episodes`` round-robin over ``num_envs`` envs: env ``i`` gets ``episodes[i::num_envs]``.

    Round-robin keeps the lists' lengths non-increasing in the env index, so in round ``r`` the envs that
    still have an episode are ``0..k-1`` for some ``k`` (what :func:`vla_gym.rl.collect_plan` relies on).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    episodes = [int(k) for k in episodes]
    if len(set(episodes)) != len(episodes):
        raise ValueError(f"episodes must not repeat, got {episodes}")
    return [episodes[i::num_envs] for i in range(num_envs)]


class AssignedEpisodes(gym.Wrapper):
    """``reset()`` without options starts the next unfinished episode of ``episodes`` (see the module docs).

    ``info`` gains ``assigned_position`` (index into ``episodes`` of the running episode) and
    ``assignment_done`` (True once every assigned episode has ended). Resets with explicit ``options`` go
    to the env unchanged and do not touch the assignment.
    """

    def __init__(self, env: gym.Env, episodes: Sequence[int]) -> None:
        super().__init__(env)
        plan = getattr(env.unwrapped, "episode_plan", None)
        self.episodes = [int(k) for k in episodes]
        if plan is not None:
            bad = [k for k in self.episodes if not 0 <= k < len(plan)]
            if bad:
                raise ValueError(f"episodes {bad} are not in the env's plan (0..{len(plan) - 1})")
        self.position = 0  # index of the next episode to finish
        self._running_assigned = False

    @property
    def done(self) -> bool:
        """Every assigned episode has ended."""
        return self.position >= len(self.episodes)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if options is not None:
            self._running_assigned = False
            return self.env.reset(seed=seed, options=options)
        if not self.episodes:
            raise RuntimeError("AssignedEpisodes has no episodes assigned to this env")
        index = min(self.position, len(self.episodes) - 1)
        obs, info = self.env.reset(seed=seed, options={"episode": self.episodes[index]})
        self._running_assigned = not self.done
        return obs, self._annotate(info, index)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        index = min(self.position, len(self.episodes) - 1)
        if self._running_assigned and (terminated or truncated):
            self.position += 1
            self._running_assigned = False
        return obs, reward, terminated, truncated, self._annotate(info, index)

    def _annotate(self, info: dict[str, Any], index: int) -> dict[str, Any]:
        info = dict(info)
        info["assigned_position"] = index
        info["assignment_done"] = self.done
        return info
