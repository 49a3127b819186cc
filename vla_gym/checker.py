"""``check_vla_env``: run a few episodes of an env and check the vla-gym contract beyond Gymnasium's own
checker, the properties vector envs and RL replay buffers rely on.

- spaces: a ``Dict`` observation with ``image`` (uint8 HxWx3) and ``language`` (the shared-memory-safe
  :class:`~vla_gym.instruction_space.InstructionText`); a ``Box`` action of shape (7,) with finite bounds;
- every observation is in the observation space, ``language`` a non-empty ``str``;
- rewards are finite floats, ``terminated`` / ``truncated`` bools, and an episode ends within ``max_steps``;
- ``info`` has :data:`vla_gym.contract.INFO_KEYS` on reset and every step, the same keys on every step, and
  each value keeps its type and shape on every step of every episode (variable-length facts belong in
  ``info["episode_metrics"]``, which appears exactly on an episode's last step and is JSON-serialisable);
- reset by plan index is deterministic: the same ``reset(options=...)`` twice, each followed by the same
  step, gives equal observations, rewards and infos (``determinism=True``, needs ``reset_options[0]``);
- the same mistake gets the same error in every env: a bad action (wrong shape, NaN) ``ValueError`` and the
  episode goes on; an unknown reset option ``KeyError``; an ``episode`` not in ``episode_plan``
  ``ValueError``; ``step`` after the episode ended ``EpisodeOverError``.

Raises ``AssertionError`` naming what is wrong; returns a short report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from vla_gym.contract import ACTION_DIM, INFO_KEYS, EpisodeOverError
from vla_gym.instruction_space import InstructionText

FINAL_ONLY_KEYS = ("episode_metrics",)


def info_signature(value: Any) -> tuple[str, tuple[int, ...]]:
    """(kind, shape) of an info value: "str", "bool", "int", "float" or a numpy kind letter, and the shape."""
    if isinstance(value, str):
        return ("str", ())
    if isinstance(value, bool | np.bool_):
        return ("bool", ())
    if isinstance(value, dict):
        return ("dict", (len(value),))
    arr = np.asarray(value)
    kind = {"i": "int", "u": "int", "f": "float", "b": "bool"}.get(arr.dtype.kind, arr.dtype.kind)
    return (kind, arr.shape)


def _check_spaces(env: gym.Env) -> None:
    obs_space = env.observation_space
    assert isinstance(obs_space, spaces.Dict), f"observation space must be a Dict, got {obs_space}"
    for key in ("image", "language"):
        assert key in obs_space.spaces, f"observation space has no {key!r}"
    image = obs_space["image"]
    assert isinstance(image, spaces.Box) and image.dtype == np.uint8 and len(image.shape) == 3, image
    assert isinstance(obs_space["language"], InstructionText), (
        f"language space must be vla_gym's InstructionText (shared-memory safe), got {obs_space['language']!r}"
    )
    act = env.action_space
    assert isinstance(act, spaces.Box) and act.shape == (ACTION_DIM,), f"action space must be Box (7,), got {act}"
    assert np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high)), f"action space must be bounded: {act}"
    assert np.all(act.low < act.high), f"action space bounds must satisfy low < high: {act}"


def check_vla_env(
    env: gym.Env,
    *,
    episodes: int = 2,
    max_steps: int = 1000,
    reset_options: Sequence[dict[str, Any] | None] | None = None,
    action_fn: Callable[[int], Any] | None = None,
    determinism: bool = True,
) -> dict[str, Any]:
    """Run ``episodes`` episodes (``reset(options=reset_options[i])``) with ``action_fn(step)`` (default: no
    motion, gripper open) and check the contract (module docstring). Returns ``{"steps", "info_keys",
    "returns"}``."""
    _check_spaces(env)
    act_fn = action_fn or (lambda _t: np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32))
    options = list(reset_options) if reset_options is not None else [None] * episodes
    assert len(options) == episodes, f"reset_options has {len(options)} entries for {episodes} episodes"
    signatures: dict[str, tuple[str, tuple[int, ...]]] | None = None
    steps, returns = 0, []
    if determinism:
        assert options[0] is not None, "determinism=True needs reset_options[0] (e.g. {'episode': 0})"
        _check_reset_determinism(env, options[0], act_fn(0))
    _check_error_types(env, options[0], act_fn(0))

    def check_obs(obs: Any, where: str) -> None:
        assert env.observation_space.contains(obs), f"{where}: observation not in the observation space"
        assert isinstance(obs["language"], str) and obs["language"], f"{where}: language must be a non-empty str"

    for ep in range(episodes):
        obs, info = env.reset(options=options[ep])
        check_obs(obs, f"episode {ep} reset")
        missing = [k for k in INFO_KEYS if k not in info]
        assert not missing, f"episode {ep} reset: info lacks {missing}"
        for key in FINAL_ONLY_KEYS:
            assert key not in info, f"episode {ep} reset: info[{key!r}] belongs to the last step only"
        total = 0.0
        for t in range(max_steps):
            obs, reward, terminated, truncated, info = env.step(act_fn(t))
            steps += 1
            where = f"episode {ep} step {t + 1}"
            check_obs(obs, where)
            assert isinstance(reward, float | np.floating) and np.isfinite(reward), f"{where}: reward {reward!r}"
            assert isinstance(terminated, bool | np.bool_) and isinstance(truncated, bool | np.bool_), where
            total += float(reward)
            over = bool(terminated or truncated)
            for key in FINAL_ONLY_KEYS:
                assert (key in info) == over, f"{where}: info[{key!r}] must appear exactly on the last step"
            if over:
                json.dumps(info["episode_metrics"])
            current = {k: info_signature(v) for k, v in info.items() if k not in FINAL_ONLY_KEYS}
            missing = [k for k in INFO_KEYS if k not in current]
            assert not missing, f"{where}: info lacks {missing}"
            if signatures is None:
                signatures = current
            elif current != signatures:
                changed = {
                    k: (signatures.get(k), current.get(k))
                    for k in sorted(set(current) | set(signatures))
                    if current.get(k) != signatures.get(k)
                }
                raise AssertionError(f"{where}: info keys or (type, shape) changed: {changed}")
            if over:
                break
        else:
            raise AssertionError(f"episode {ep} did not end within {max_steps} steps")
        returns.append(total)
    try:
        env.step(act_fn(0))
    except EpisodeOverError:
        pass
    else:
        raise AssertionError("step() after the episode ended must raise vla_gym.contract.EpisodeOverError")
    return {"steps": steps, "info_keys": sorted(signatures or {}), "returns": returns}


def _same(a: Any, b: Any) -> bool:
    """Equality of observations / infos: arrays elementwise and bitwise, containers recursively."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return bool(a == b)


def _check_reset_determinism(env: gym.Env, options: dict[str, Any], action: Any) -> None:
    runs = []
    for _ in range(2):
        obs, info = env.reset(options=options)
        runs.append((obs, info, *env.step(action)))
    first, second = runs
    names = ("reset observation", "reset info", "step observation", "reward", "terminated", "truncated", "step info")
    for name, a, b in zip(names, first, second, strict=True):
        assert _same(a, b), f"reset(options={options}) twice then the same step: the {name} differs"


def _expect(error: type[Exception], what: str, call: Callable[[], Any]) -> None:
    try:
        call()
    except error:
        return
    except Exception as exc:
        raise AssertionError(f"{what} must raise {error.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"{what} must raise {error.__name__}, nothing was raised")


def _check_error_types(env: gym.Env, options: dict[str, Any] | None, action: Any) -> None:
    env.reset(options=options)
    good = np.asarray(action)
    _expect(ValueError, "step() with an action of shape (6,)", lambda: env.step(good[:6]))
    bad = good.astype(np.float64).copy()
    bad[0] = np.nan
    _expect(ValueError, "step() with a NaN in the action", lambda: env.step(bad))
    env.step(good)  # the episode goes on after refused actions
    _expect(KeyError, "reset() with an unknown option", lambda: env.reset(options={"no_such_option": 1}))
    plan = getattr(env.unwrapped, "episode_plan", None)
    if plan is not None:
        outside = max(key.index for key in plan) + 1
        _expect(ValueError, f"reset(options={{'episode': {outside}}}) (not in the plan)",
                lambda: env.reset(options={"episode": outside}))
