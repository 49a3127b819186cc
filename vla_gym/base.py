"""``VLAEnv``: what every vla-gym env shares, so each simulator backend fills in hooks only.

The base owns

- the benchmark (class attribute ``benchmark``, a name in :data:`tasks.registry.BENCHMARKS`), its protocol
  (a name, a protocol object of that benchmark, or None for its default; ``protocol_overrides`` change
  fields and the digest), ``protocol_digest`` and ``episode_plan``;
- the reset options common to all (``episode``: the plan's episode with that ``EpisodeKey.index``) and the
  seeded draw when no episode is named (from ``episode_pool`` if given, else from the whole plan);
- the end-of-episode guard (``step`` after ``terminated``/``truncated`` raises
  :class:`~vla_gym.contract.EpisodeOverError`; before the first ``reset``, ``RuntimeError``), action
  validation (``ValueError``) and the ``action_out_of_range_steps`` count;
- ``action_mode``, ``render_mode`` checks and the ``render_cameras`` switch.

Errors are the same for the same mistake in every env: an unknown name (reset option, task, protocol,
protocol field) is a ``KeyError``; a value of the wrong type, out of range or in conflict with another is a
``ValueError``; a protocol of another benchmark is a ``ValueError``; a protocol argument that is not a
protocol is a ``TypeError``.

A backend implements ``_start_episode(key_or_none, options)`` (build/reset its simulator, return the first
observation and info) and ``_advance(action)`` (one step after the base checked the action).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from tasks.plan import EpisodeKey
from tasks.protocol import Protocol
from tasks.registry import Benchmark, get_benchmark
from vla_gym import contract

StepResult = tuple[dict[str, Any], float, bool, bool, dict[str, Any]]


class VLAEnv(gym.Env):
    """Base of the vla-gym envs (see the module docstring)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}
    benchmark: ClassVar[str]  # a name in tasks.registry.BENCHMARKS
    INFO_KEYS: ClassVar[tuple[str, ...]] = contract.INFO_KEYS
    # reset options beyond "episode", name -> accepted type(s)
    EXTRA_RESET_OPTIONS: ClassVar[Mapping[str, type | tuple[type, ...]]] = {}
    # whether the backend can skip its cameras (render_cameras=False) for privileged agents
    CAN_SKIP_CAMERAS: ClassVar[bool] = True

    def __init__(
        self,
        protocol: str | Protocol | None = None,
        protocol_overrides: Mapping[str, Any] | None = None,
        *,
        action_mode: str = "contract",
        render_mode: str | None = None,
        episode_pool: Sequence[int] | None = None,
        render_cameras: bool = True,
    ) -> None:
        super().__init__()
        self.benchmark_spec: Benchmark = get_benchmark(self.benchmark)
        self.protocol = resolve_protocol(self.benchmark_spec, protocol, protocol_overrides)
        self.protocol_digest = self.protocol.digest
        self.episode_plan: list[EpisodeKey] = self.benchmark_spec.episode_plan(self.protocol)
        self._plan_by_index = {key.index: key for key in self.episode_plan}
        self.action_mode = contract.check_action_mode(action_mode)
        modes = self.metadata["render_modes"]
        if render_mode is not None and render_mode not in modes:
            raise ValueError(f"render_mode must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self.episode_pool = _check_pool(episode_pool, self._plan_by_index)
        self._render_cameras = True
        self.render_cameras = render_cameras
        if not self._render_cameras:
            warnings.warn(
                f"{type(self).__name__}(render_cameras=False): every image is black; only agents that read "
                "privileged_state() (the scripted expert) can act on it",
                stacklevel=3,
            )
        self._episode = -1
        self._over = True
        self._started = False
        self._out_of_range = 0

    # ------------------------------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        allowed = {"episode": int, **self.EXTRA_RESET_OPTIONS}
        opts = contract.check_reset_options(options, allowed)
        key = self._key_from_options(opts)
        self._out_of_range = 0
        obs, info = self._start_episode(key, opts)
        self._over = False
        self._started = True
        return obs, info

    def plan_key(self, episode: int) -> EpisodeKey:
        """The plan's episode ``episode`` (its ``EpisodeKey.index``); ``ValueError`` if the plan has none."""
        key = self._plan_by_index.get(int(episode))
        if key is None:
            raise ValueError(
                f"reset option episode={episode} is not in the {self.protocol.name} plan of {self.benchmark} "
                f"({_describe_indices(self._plan_by_index)}); see env.unwrapped.episode_plan"
            )
        return key

    def draw_episode(self) -> EpisodeKey:
        """An episode drawn with the seeded ``np_random``: from ``episode_pool`` if given, else the plan."""
        if self.episode_pool is not None:
            return self._plan_by_index[self.episode_pool[int(self.np_random.integers(len(self.episode_pool)))]]
        return self.episode_plan[int(self.np_random.integers(len(self.episode_plan)))]

    # ------------------------------------------------------------------------------------------- step
    def step(self, action: Any) -> StepResult:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        if self._over:
            raise contract.EpisodeOverError()
        checked = contract.validate_action(action)  # ValueError before anything moves or is counted
        if contract.out_of_range(np.asarray(action, dtype=np.float64), self.action_space):
            self._out_of_range += 1
        obs, reward, terminated, truncated, info = self._advance(action, checked)
        self._over = bool(terminated or truncated)
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------------------------------ hooks
    def _key_from_options(self, options: Mapping[str, Any]) -> EpisodeKey | None:
        """The plan's episode the options name (None: the backend decides from its own options)."""
        return self.plan_key(options["episode"]) if "episode" in options else None

    def _start_episode(self, key: EpisodeKey | None, options: dict[str, Any]) -> tuple[dict, dict]:
        """Start an episode: the plan's ``key`` (None: the backend reads its own options or draws one with
        :meth:`draw_episode`). Sets ``self._episode``; returns the first observation and info."""
        raise NotImplementedError

    def _advance(self, action: Any, checked: np.ndarray) -> StepResult:
        """One step with the caller's ``action`` (``checked``: the same as validated float32)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- extras
    @property
    def episode_over(self) -> bool:
        """True before the first reset and after an episode terminated or was truncated."""
        return self._over

    @property
    def render_cameras(self) -> bool:
        """Whether observations are rendered (False: black images, for agents that read
        ``privileged_state()``; rendering changes no simulator state, so their outcomes are the same)."""
        return self._render_cameras

    @render_cameras.setter
    def render_cameras(self, value: bool) -> None:
        if not value and not self.CAN_SKIP_CAMERAS:
            raise ValueError(f"{type(self).__name__} always renders its cameras (render_cameras=False is not offered)")
        self._render_cameras = bool(value)


def resolve_protocol(
    benchmark: Benchmark, protocol: str | Protocol | None, overrides: Mapping[str, Any] | None
) -> Protocol:
    """``benchmark``'s protocol named ``protocol`` (its default when None), or the given protocol object,
    with ``overrides`` applied."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise TypeError(f"protocol_overrides must be a dict, got {type(overrides).__name__}")
    changes = dict(overrides or {})
    if protocol is None or isinstance(protocol, str):
        base = benchmark.protocol(protocol)
    elif isinstance(protocol, Protocol):
        base = protocol
    else:
        raise TypeError(f"protocol must be a name, a protocol object or None, got {type(protocol).__name__}")
    if base.benchmark != benchmark.name:
        raise ValueError(
            f"a {base.benchmark} protocol cannot run on {benchmark.env_id} ({benchmark.name}); "
            f"pass one of {benchmark.name}'s protocols, e.g. by name"
        )
    fixed = sorted(set(changes) & (set(type(base).IDENTITY) - {"name"}))
    if fixed:
        raise ValueError(
            f"protocol_overrides cannot change {fixed}: they say which benchmark's protocol this is; "
            "choose another env id or protocol instead"
        )
    return base.replace(**changes) if changes else base


def _check_pool(pool: Sequence[int] | None, plan: Mapping[int, EpisodeKey]) -> tuple[int, ...] | None:
    if pool is None:
        return None
    if isinstance(pool, str | bytes) or not isinstance(pool, Sequence) or len(pool) == 0:
        raise ValueError(f"episode_pool must be a non-empty list of episode indices, got {pool!r}")
    out = []
    for k in pool:
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise ValueError(f"episode_pool entries must be ints, got {type(k).__name__} {k!r}")
        if int(k) not in plan:
            raise ValueError(f"episode_pool entry {k} is not in the plan ({_describe_indices(plan)})")
        out.append(int(k))
    return tuple(out)


def _describe_indices(plan: Mapping[int, EpisodeKey]) -> str:
    indices = sorted(plan)
    if not indices:
        return "it is empty"
    if indices == list(range(indices[0], indices[-1] + 1)):
        return f"episodes {indices[0]}..{indices[-1]}"
    return f"{len(indices)} episodes between {indices[0]} and {indices[-1]}"
