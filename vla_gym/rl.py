"""tianshou integration: vla-gym envs in tianshou's vector envs and collectors, and any vla-gym ``Agent`` as a
tianshou policy. Needs the ``rl`` extra (``pip install -e .[rl]``: tianshou 2.x).

Three pieces:

- :func:`env_factories` builds the env functions for ``DummyVectorEnv`` / ``SubprocVectorEnv`` /
  ``ShmemVectorEnv``: each env is ``gym.make(env_id, **kwargs)`` wrapped in
  :class:`~wrappers.episodes.AssignedEpisodes` (its slice of the episode plan, when ``episodes`` is given) and
  :class:`TianshouReady` (instruction as a fixed-length uint8 array, info of fixed shape).
- :class:`AgentPolicy` makes an :class:`policies.base.Agent` (scripted experts, VLM4VLA, the openpi client,
  ...) act as a tianshou ``Policy``: the same ``configure`` / ``reset`` / ``act`` calls, chunks executed
  ``execute_steps`` at a time, queues flushed at every episode and CALVIN subtask start, as the harness does.
- :func:`collect_plan` walks an exact episode plan with a tianshou ``Collector`` (one episode per env per
  round).

Example::

    from tianshou.data import Collector, VectorReplayBuffer
    from tianshou.env import ShmemVectorEnv
    from vla_gym import rl

    fns = rl.env_factories("VLA/Calvin-v0", 2, episodes=range(4), protocol="vlm4vla_static")
    venv = ShmemVectorEnv(fns)
    policy = rl.AgentPolicy(agent, venv.action_space[0], benchmark="calvin", protocol=..., venv=venv)
    collector = Collector(policy, venv, VectorReplayBuffer(4000, 2))
    stats = rl.collect_plan(collector, rl.assign_episodes(range(4), 2))
    rl.decode_language(collector.buffer.obs.language[0])  # the instruction
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from tianshou.algorithm.algorithm_base import Policy
    from tianshou.data import Batch, CollectStats
    from tianshou.env import BaseVectorEnv, ShmemVectorEnv
    from tianshou.env.worker import SubprocEnvWorker
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "vla_gym.rl needs tianshou 2.x: install the 'rl' extra (pip install -e '.[rl]')"
    ) from exc

from policies.base import Agent
from vla_gym.contract import ACTION_DIM
from wrappers.episodes import AssignedEpisodes, assign_episodes
from wrappers.language import LanguageAsArray, decode_language

__all__ = [
    "AgentPolicy",
    "SpawnShmemVectorEnv",
    "TianshouReady",
    "assign_episodes",
    "collect_plan",
    "decode_language",
    "env_factories",
    "make_env",
]

#: the JSON of ``info["episode_metrics"]`` on an episode's last step, "" on the others
METRICS_KEY = "episode_metrics_json"
#: the env's index in its vector env, on every reset and step (tianshou adds ``env_id`` to step infos only)
INDEX_KEY = "env_index"


def _signature(value: Any) -> tuple[str, tuple[int, ...]]:
    if isinstance(value, str):
        return ("str", ())
    if isinstance(value, bool | np.bool_):
        return ("bool", ())
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind in "iu":
        kind = "int"
    elif kind == "f":
        kind = "float"
    return (kind, arr.shape)


class TianshouReady(gym.Wrapper):
    """What tianshou's vector envs and replay buffers need from a vla-gym env.

    - ``obs["language"]``: uint8 (``max_length``,) UTF-8, zero-padded (``ShmemVectorEnv`` keeps only fixed-shape
      arrays); :func:`decode_language` turns it back into the instruction. Longer instructions raise.
    - ``info``: ``episode_metrics`` (the env's end-of-episode dict, whose lists vary in length between
      episodes) becomes the JSON string ``info["episode_metrics_json"]`` ("" before the last step), and
      ``info["env_index"]`` is added. Every other value must keep its type and shape on every step: a change
      raises ``ValueError`` naming the key (tianshou's buffer would otherwise fail later with a shape error).
    - ``privileged``: the env's ``privileged_state()``, for ``AgentPolicy`` with scripted experts (read
      through ``venv.get_env_attr("privileged", ids)``).
    """

    def __init__(self, env: gym.Env, index: int = 0, max_length: int = 512) -> None:
        language = LanguageAsArray(env, max_length=max_length)
        super().__init__(language)
        self.index = int(index)
        self._signatures: dict[str, tuple[str, tuple[int, ...]]] | None = None

    @property
    def privileged(self) -> dict[str, Any]:
        return self.env.unwrapped.privileged_state()  # type: ignore[attr-defined]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, self._fix(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), self._fix(info)

    def _fix(self, info: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in info.items() if k != "episode_metrics"}
        metrics = info.get("episode_metrics")
        out[METRICS_KEY] = "" if metrics is None else json.dumps(metrics, sort_keys=True, default=_jsonable)
        out[INDEX_KEY] = self.index
        signatures = {key: _signature(value) for key, value in out.items()}
        if self._signatures is None:
            self._signatures = signatures
        elif signatures != self._signatures:
            changed = sorted(
                key
                for key in set(signatures) | set(self._signatures)
                if signatures.get(key) != self._signatures.get(key)
            )
            detail = {k: (self._signatures.get(k), signatures.get(k)) for k in changed}
            raise ValueError(
                f"info of {self.env.unwrapped.spec.id if self.env.unwrapped.spec else type(self.env.unwrapped).__name__} "
                f"changed keys or (type, shape) between steps: {detail}; tianshou's replay buffer needs "
                "fixed-shape info (variable-length facts belong in info['episode_metrics'] at the episode's end)"
            )
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot put {type(value).__name__} into episode_metrics_json")


def make_env(
    env_id: str, index: int = 0, episodes: Sequence[int] | None = None, max_length: int = 512, **kwargs: Any
) -> gym.Env:
    """``gym.make(env_id, **kwargs)`` [+ ``AssignedEpisodes(episodes)``] + ``TianshouReady(index)``."""
    env = gym.make(env_id, **kwargs)
    if episodes is not None:
        env = AssignedEpisodes(env, episodes)
    return TianshouReady(env, index=index, max_length=max_length)


def env_factories(
    env_id: str,
    num_envs: int,
    *,
    episodes: Iterable[int] | None = None,
    max_length: int = 512,
    **kwargs: Any,
) -> list[Callable[[], gym.Env]]:
    """Env functions for tianshou's vector envs. With ``episodes``, env ``i`` walks
    ``assign_episodes(episodes, num_envs)[i]`` (see :func:`collect_plan`)."""
    lists: list[list[int] | None]
    if episodes is None:
        lists = [None] * num_envs
    else:
        lists = list(assign_episodes(list(episodes), num_envs))
    return [
        functools.partial(make_env, env_id, i, lists[i], max_length, **kwargs) for i in range(num_envs)
    ]


class SpawnShmemVectorEnv(ShmemVectorEnv):
    """tianshou's ``ShmemVectorEnv`` with a multiprocessing start method (default ``"spawn"``).

    ``ShmemVectorEnv`` itself always forks, after building one env in this process to read its spaces. A
    process that has opened an EGL context (CALVIN's renderer, LIBERO's) cannot safely fork: the workers
    hang. Spawned workers start clean.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        wait_num: int | None = None,
        timeout: float | None = None,
        context: str = "spawn",
    ) -> None:
        def worker_fn(fn: Callable[[], gym.Env]) -> SubprocEnvWorker:
            return SubprocEnvWorker(fn, share_memory=True, context=context)

        BaseVectorEnv.__init__(self, env_fns, worker_fn, wait_num, timeout)


def collect_plan(collector: Any, assignment: Sequence[Sequence[int]]) -> list[CollectStats]:
    """Collect exactly the assigned episodes (env ``i`` runs ``assignment[i]``, built by
    :func:`env_factories` with the same episodes), one round per episode index.

    Round ``r`` calls ``collector.collect(n_episode=k)`` with ``k`` the number of envs that still have an
    ``r``-th episode (envs ``0..k-1`` with round-robin assignment); with as many episodes asked as envs
    running, tianshou's collector retires each env after its first finished episode, so every env
    contributes exactly one. Returns the stats of each round.
    """
    counts = [len(a) for a in assignment]
    if len(counts) != collector.env_num:
        raise ValueError(f"assignment is for {len(counts)} envs, the collector has {collector.env_num}")
    if any(b > a for a, b in zip(counts, counts[1:], strict=False)):
        raise ValueError(f"episode counts per env must not increase with the env index, got {counts}")
    collector.reset(reset_buffer=False)
    stats = []
    for r in range(max(counts, default=0)):
        k = sum(c > r for c in counts)
        stats.append(collector.collect(n_episode=k, reset_before_collect=False))
    return stats


def _obs_row_dict(obs: Any, rows: np.ndarray) -> dict[str, Any]:
    """Agent observations (the ``Agent.act`` batch format) for ``rows`` of a tianshou obs batch."""
    out: dict[str, Any] = {}
    for key in obs.get_keys():
        value = obs[key]
        if key == "language":
            arr = np.asarray(value)[rows]
            if arr.dtype == np.uint8:
                decoded = decode_language(arr.reshape(len(rows), -1))
                out[key] = list(decoded) if isinstance(decoded, list) else [decoded]
            else:
                out[key] = [str(s) for s in arr]
        elif isinstance(value, Batch):
            continue
        else:
            out[key] = np.asarray(value)[rows]
    return out


class AgentPolicy(Policy):
    """A vla-gym :class:`~policies.base.Agent` as a tianshou ``Policy`` (no parameters, no learning).

    - ``configure(benchmark, protocol)`` is called here when ``benchmark`` is given.
    - A new episode in an env is recognised by tianshou's hidden state (the collector zeroes an env's state
      when its episode ends, and starts every ``collect(n_episode=...)`` without one); a CALVIN subtask start by
      ``info["subtask_changed"]``. Both call ``agent.reset([env])`` and drop the env's queued actions.
    - Each chunk's first ``agent.execute_steps`` actions are queued and executed one per step.
    - Actions go to the env unchanged: no clipping, no scaling (``action_bound_method=None``).
    - Agents with ``needs_privileged`` get ``obs["privileged"]`` from ``venv.get_env_attr("privileged", ids)``
      (envs built by :func:`env_factories`); pass ``venv``.
    """

    def __init__(
        self,
        agent: Agent,
        action_space: gym.Space,
        *,
        benchmark: str | None = None,
        protocol: dict[str, Any] | None = None,
        venv: Any = None,
    ) -> None:
        super().__init__(action_space=action_space, action_scaling=False, action_bound_method=None)
        if not 1 <= agent.execute_steps <= agent.chunk_size:
            raise ValueError(f"{type(agent).__name__}: execute_steps must be in 1..chunk_size")
        if agent.needs_privileged and venv is None:
            raise ValueError(f"{type(agent).__name__} needs privileged state: pass venv=<the vector env>")
        self.agent = agent
        self.venv = venv
        self._queues: dict[int, deque[np.ndarray]] = {}
        self.agent_calls = 0
        if benchmark is not None:
            agent.configure(benchmark, dict(protocol or {}))

    def forward(self, batch: Any, state: Any = None, **kwargs: Any) -> Any:
        n = len(batch.obs)
        info = batch.info if "info" in batch.get_keys() else Batch()
        if INDEX_KEY in info.get_keys():
            env_ids = np.asarray(info[INDEX_KEY], dtype=np.int64).reshape(n)
        elif "env_id" in info.get_keys():
            env_ids = np.asarray(info["env_id"], dtype=np.int64).reshape(n)
        else:
            env_ids = np.arange(n)
        steps = np.zeros(n, dtype=np.int64) if state is None else np.asarray(state, dtype=np.int64).reshape(n)
        starting = steps == 0
        if "subtask_changed" in info.get_keys():
            starting |= np.asarray(info["subtask_changed"], dtype=bool).reshape(n)
        fresh = [int(e) for e in env_ids[starting]]
        if fresh:
            self.agent.reset(fresh)
            for env_id in fresh:
                self._queues[env_id] = deque()
        need = np.array([not self._queues.get(int(e)) for e in env_ids], dtype=bool)
        if need.any():
            rows = np.flatnonzero(need)
            ids = [int(e) for e in env_ids[rows]]
            obs = _obs_row_dict(batch.obs, rows)
            if self.agent.needs_privileged:
                obs["privileged"] = list(self.venv.get_env_attr("privileged", ids))
            chunks = np.asarray(self.agent.act(obs, ids), dtype=np.float32)
            self.agent_calls += 1
            if chunks.ndim != 3 or chunks.shape[0] != len(ids) or chunks.shape[2] != ACTION_DIM:
                raise ValueError(
                    f"{type(self.agent).__name__}.act returned shape {chunks.shape}; "
                    f"expected ({len(ids)}, chunk, {ACTION_DIM})"
                )
            for row, env_id in enumerate(ids):
                self._queues.setdefault(env_id, deque()).extend(chunks[row, : self.agent.execute_steps])
        act = np.stack([self._queues[int(e)].popleft() for e in env_ids]).astype(np.float32)
        return Batch(act=act, state=steps + 1)
