"""From a Hydra config to what a run needs: protocol, episode plan (and the selected subset), env spec, agent."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from omegaconf import DictConfig, OmegaConf

from harness.runner import Runner, make_runner
from harness.workers import EnvSpec
from policies.base import Agent, needs_native_image_on
from tasks import registry
from tasks.plan import EpisodeKey, select
from tasks.protocol import Protocol

RESERVED_ENV_KWARGS = ("protocol", "protocol_overrides")


@dataclasses.dataclass
class RunSpec:
    benchmark: str
    protocol: Protocol
    plan: list[EpisodeKey]  # every episode of the protocol
    episodes: list[EpisodeKey]  # the ones this run asks for (tasks / episodes_per_task / episodes)
    env: EnvSpec  # its kwargs: the configured ones, the protocol and what the agent declares it needs
    env_kwargs: dict[str, Any]  # as configured (JSON-able), without the protocol


def _container(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _int_list(name: str, value: Any) -> list[int] | None:
    value = _container(value)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a list of ints (e.g. {name}=[0,3]), got {value!r}")
    return value


def is_set_config(env_cfg: Any) -> bool:
    """Whether an env config names a benchmark set (``benchmark_set:``) rather than one benchmark."""
    return env_cfg.get("benchmark_set") is not None


def resolve(cfg: DictConfig) -> RunSpec:
    """Build the protocol and plan from ``cfg.env`` without building an env, and apply the selection."""
    env_cfg = cfg.env
    if is_set_config(env_cfg):
        members = registry.get_benchmark_set(str(env_cfg.benchmark_set)).members
        raise ValueError(
            f"the env config names the benchmark set {env_cfg.benchmark_set!r} (members {list(members)}); only "
            f"harness.evaluate runs a set. Run one member here instead, e.g. env={members[0]}"
        )
    for key in ("benchmark", "id"):
        if key not in env_cfg or env_cfg[key] is None:
            raise KeyError(f"env config needs {key!r} (see conf/env/*.yaml)")
    benchmark = registry.get_benchmark(env_cfg.benchmark)
    overrides = _container(env_cfg.get("protocol_overrides")) or {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"env.protocol_overrides must be a mapping, got {overrides!r}")
    protocol = benchmark.protocol(env_cfg.get("protocol"), **overrides)
    plan = benchmark.episode_plan(protocol)

    tasks = _container(cfg.get("tasks"))
    if tasks is not None and not isinstance(tasks, list):
        tasks = [tasks]
    per_task = cfg.get("episodes_per_task")
    if per_task is not None and (not isinstance(per_task, int) or isinstance(per_task, bool)):
        raise ValueError(f"episodes_per_task must be an int, got {per_task!r}")
    explicit = _int_list("episodes", cfg.get("episodes"))
    start = cfg.get("episodes_from")
    if start is not None and (not isinstance(start, int) or isinstance(start, bool)):
        raise ValueError(f"episodes_from must be an int, got {start!r}")
    episodes = select(plan, tasks=tasks, episodes_per_task=per_task, episodes=explicit, episodes_from=start)
    if not episodes:
        raise ValueError("the selection (tasks / episodes_per_task / episodes) keeps no episode of the plan")

    kwargs = _container(env_cfg.get("kwargs")) or {}
    bad = sorted(set(kwargs) & set(RESERVED_ENV_KWARGS))
    if bad:
        raise ValueError(f"env.kwargs must not set {bad}: use env.protocol and env.protocol_overrides")
    entry_point = None
    if env_cfg.id in gym.registry and isinstance(gym.registry[env_cfg.id].entry_point, str):
        entry_point = gym.registry[env_cfg.id].entry_point
    needed = agent_env_kwargs(_container(cfg.get("policy")), env_cfg.benchmark, env_cfg.id, kwargs)
    env = EnvSpec(
        env_id=env_cfg.id,
        kwargs={**kwargs, **needed, "protocol": protocol},
        entry_point=entry_point,
        protocol_digest=protocol.digest,
    )
    return RunSpec(env_cfg.benchmark, protocol, plan, episodes, env, kwargs)


def agent_env_kwargs(
    policy: Mapping[str, Any] | None, benchmark: str, env_id: str, configured: Mapping[str, Any]
) -> dict[str, Any]:
    """The env kwargs the policy's agent class declares it needs (``Agent.needs_native_image``), read from the
    class without building the agent. Raises ``ValueError`` when the env cannot give them or the config
    turns them off."""
    if not policy or "_target_" not in policy:
        return {}
    from hydra.utils import get_class

    try:
        agent_class = get_class(str(policy["_target_"]))
    except Exception as exc:
        raise ValueError(
            f"cannot import the policy class {policy['_target_']!r} to read what it needs from the env: {exc}"
        ) from exc
    if not (isinstance(agent_class, type) and issubclass(agent_class, Agent)):
        return {}  # build_agent refuses it with its own error
    needed: dict[str, Any] = {}
    if needs_native_image_on(agent_class, benchmark):
        if configured.get("native_image", True) is not True:
            raise ValueError(
                f"{agent_class.__name__} needs obs['image_native'] on {benchmark} (needs_native_image), but the "
                f"config sets env.kwargs.native_image={configured['native_image']!r}; drop that override"
            )
        if not _env_accepts(env_id, "native_image"):
            raise ValueError(
                f"{agent_class.__name__} needs obs['image_native'] (needs_native_image) but {env_id} cannot give "
                f"it (its constructor has no native_image option); run it on an env that renders a native image "
                f"or declare needs_native_image only for the benchmarks that have one"
            )
        needed["native_image"] = True
    return needed


def _env_accepts(env_id: str, kwarg: str) -> bool:
    """Whether the registered env's constructor takes ``kwarg`` (True when it cannot be told: not registered,
    or a constructor taking ``**kwargs``)."""
    if env_id not in gym.registry:
        return True
    entry_point = gym.registry[env_id].entry_point
    creator: Callable[..., Any] | None
    if isinstance(entry_point, str):
        from gymnasium.envs.registration import load_env_creator

        creator = load_env_creator(entry_point)
    else:
        creator = entry_point
    if creator is None:
        return True
    parameters = inspect.signature(creator).parameters.values()
    return any(p.name == kwarg or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def run_info(spec: RunSpec, policy: Mapping[str, Any], seed: int, checkpoint: str | None = None) -> dict[str, Any]:
    """What identifies a run in its result store (see harness.store)."""
    return {
        "benchmark": spec.benchmark,
        "env_id": spec.env.env_id,
        "env_kwargs": spec.env_kwargs,
        "protocol": spec.protocol.to_dict(),
        "protocol_digest": spec.protocol.digest,
        "policy": dict(policy),
        "checkpoint": checkpoint,
        "seed": seed,
    }


def build_agent(policy: Mapping[str, Any]) -> Agent:
    """Instantiate ``conf/policy/<name>.yaml`` (a ``_target_`` and its kwargs)."""
    from hydra.utils import instantiate

    if "_target_" not in policy:
        raise KeyError(f"the policy config needs a _target_ (an Agent class), got keys {sorted(policy)}")
    agent = instantiate(dict(policy), _convert_="all")
    if not isinstance(agent, Agent):
        raise TypeError(f"policy _target_ {policy['_target_']} built {type(agent).__name__}, not an Agent")
    return agent


def runner_from_cfg(cfg: DictConfig, spec: RunSpec) -> Runner:
    options = _container(cfg.runner) or {}
    name = options.pop("name", "local")
    options.setdefault("num_envs", cfg.get("num_envs", 1))
    return make_runner(name, spec.env, spec.benchmark, spec.protocol.to_dict(), int(cfg.seed), **options)
