"""Evaluate a benchmark set (tasks.suite_sets) in one command: ``python -m harness.evaluate env=<set> ...``.

A set's env config (``conf/env/<set>.yaml``) holds ``benchmark_set: <name>`` and the settings every member
takes (``protocol``: null for each member's default, ``protocol_overrides``, ``kwargs``), with ``per_member:
{<member>: {protocol, protocol_overrides, kwargs}}`` on top of them for one member. Each member then runs exactly
as ``env=<member>`` would, one member after the other, each with its own env id, protocol, episode plan,
runner and agent (the agent is built afresh per member: ``Agent.configure`` is once per benchmark):

- the subset options (``tasks``, ``episodes_per_task``, ``episodes``, ``episodes_from``), ``seed``, ``num_envs``,
  ``runner`` and ``video`` mean for every member what they mean for one benchmark (``episodes_per_task=2`` runs
  2 episodes of every task of every member; ``tasks=[0]`` the first task of each; task names exist in one
  member only, so name tasks by index here);
- member ``m`` writes its own result store and reports into ``output_dir/m/``, the same folder ``env=m
  output_dir=<output_dir>/m`` would resume: a crash loses no finished episode and a rerun resumes every member;
- ``output_dir`` gets ``config.yaml`` (the latest invocation's) and, once every member has run, the set's
  ``results.json`` (the set's metrics, each member's protocol digest and the set digest), ``report.md`` (one
  row per member) and a bar plot. ``set.json`` marks the folder as a set's, so a single benchmark's store is
  never written over it (and vice versa).
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.evaluate import evaluate_benchmark
from harness.report import write_set_report
from harness.spec import RunSpec, resolve
from harness.store import CONFIG_FILE, RUN_FILE, SET_FILE, StoreMismatchError, atomic_write
from tasks.registry import get_benchmark_set
from tasks.suite_sets import BenchmarkSet

log = logging.getLogger(__name__)

MEMBER_KEYS = ("protocol", "protocol_overrides", "kwargs")  # what a member's single-benchmark env config takes
SET_KEYS = ("benchmark_set", *MEMBER_KEYS, "per_member")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _mapping(where: str, value: Any) -> dict[str, Any]:
    value = _plain(value)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a mapping, got {value!r}")
    return dict(value)


def member_env_configs(env_cfg: Any, bset: BenchmarkSet) -> dict[str, dict[str, Any]]:
    """Per member, the single-benchmark env config (``benchmark``, ``id``, ``protocol``, ...) a set config
    gives it: the shared settings, then the member's own ``per_member`` entry on top (mappings merged)."""
    unknown = sorted(set(env_cfg) - set(SET_KEYS))
    if unknown:
        raise ValueError(
            f"the config of benchmark set {bset.name!r} has key(s) {unknown}; a set config takes {list(SET_KEYS)} "
            f"(each member's env id comes from its benchmark declaration)"
        )
    shared = {
        "protocol": _plain(env_cfg.get("protocol")),
        "protocol_overrides": _mapping("env.protocol_overrides", env_cfg.get("protocol_overrides")),
        "kwargs": _mapping("env.kwargs", env_cfg.get("kwargs")),
    }
    per_member = _mapping("env.per_member", env_cfg.get("per_member"))
    strangers = sorted(set(per_member) - set(bset.members))
    if strangers:
        raise ValueError(f"env.per_member names {strangers}, not members of set {bset.name!r}: {list(bset.members)}")
    benchmarks = bset.benchmarks()
    configs = {}
    for member in bset.members:
        own = _mapping(f"env.per_member.{member}", per_member.get(member))
        bad = sorted(set(own) - set(MEMBER_KEYS))
        if bad:
            raise ValueError(f"env.per_member.{member} has key(s) {bad}; a member takes {list(MEMBER_KEYS)}")
        configs[member] = {
            "benchmark": member,
            "id": benchmarks[member].env_id,
            "protocol": own.get("protocol", shared["protocol"]),
            "protocol_overrides": {**shared["protocol_overrides"],
                                   **_mapping(f"env.per_member.{member}.protocol_overrides", own.get("protocol_overrides"))},
            "kwargs": {**shared["kwargs"], **_mapping(f"env.per_member.{member}.kwargs", own.get("kwargs"))},
        }  # fmt: skip
    return configs


def member_configs(cfg: DictConfig, bset: BenchmarkSet, output_dir: Path) -> dict[str, DictConfig]:
    """Per member, the whole run config of ``env=<member>`` writing into ``output_dir/<member>``."""
    configs = {}
    for member, env in member_env_configs(cfg.env, bset).items():
        member_cfg = copy.deepcopy(cfg)
        with open_dict(member_cfg):
            member_cfg.env = OmegaConf.create(env)
            member_cfg.output_dir = str(output_dir / member)
        configs[member] = member_cfg
    return configs


def resolve_members(configs: Mapping[str, DictConfig], set_name: str) -> dict[str, RunSpec]:
    """Every member's protocol, plan and selection, before any episode runs (a bad option fails at once)."""
    specs = {}
    for member, member_cfg in configs.items():
        try:
            specs[member] = resolve(member_cfg)
        except (KeyError, ValueError) as exc:
            message = exc.args[0] if exc.args else str(exc)
            raise type(exc)(f"benchmark set {set_name!r}, member {member}: {message}") from exc
    return specs


def claim_folder(output_dir: Path, info: Mapping[str, Any]) -> None:
    """Mark ``output_dir`` as this set's (``set.json``), refusing one that holds a single benchmark's store or
    another set's run."""
    if (output_dir / RUN_FILE).exists():
        raise StoreMismatchError(
            f"{output_dir} holds one benchmark's result store ({RUN_FILE}), not a set's; use another output_dir"
        )
    path = output_dir / SET_FILE
    if path.exists():
        stored = json.loads(path.read_text()).get("benchmark_set")
        if stored != info["benchmark_set"]:
            raise StoreMismatchError(
                f"{output_dir} holds a run of benchmark set {stored!r}, not {info['benchmark_set']!r}; use another "
                f"output_dir"
            )
        return  # each member's store checks the rest of the set-up (protocol, policy, seed, ...)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(info, indent=2, sort_keys=True, default=str))


def evaluate_set(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) every member of the set that ``cfg.env`` names, then write the set's reports; returns
    the set's metrics (each member's own are in ``output_dir/<member>/results.json``)."""
    bset = get_benchmark_set(str(cfg.env.benchmark_set))
    bset.check_members()
    output_dir = Path(str(cfg.output_dir))
    configs = member_configs(cfg, bset, output_dir)
    specs = resolve_members(configs, bset.name)
    policy = _plain(cfg.policy)
    info = {
        "benchmark_set": bset.name,
        "members": list(bset.members),
        "policy": policy,
        "seed": int(cfg.seed),
        "selection": {key: _plain(cfg.get(key)) for key in ("tasks", "episodes_per_task", "episodes", "episodes_from")},
    }  # fmt: skip
    claim_folder(output_dir, {key: info[key] for key in ("benchmark_set", "members", "policy", "seed")})
    atomic_write(output_dir / CONFIG_FILE, OmegaConf.to_yaml(cfg, resolve=True))  # the latest invocation's
    member_metrics = {}
    for i, member in enumerate(bset.members):
        log.info("%s: member %d of %d, %s (%d episodes) into %s", bset.name, i + 1, len(bset.members), member,
                 len(specs[member].episodes), configs[member].output_dir)  # fmt: skip
        member_metrics[member] = evaluate_benchmark(configs[member], specs[member])
    metrics = bset.summarize(
        member_metrics, {m: s.protocol for m, s in specs.items()}, {m: len(s.plan) for m, s in specs.items()}
    )
    info["env"] = {
        m: {"env_id": s.env.env_id, "env_kwargs": s.env_kwargs, "protocol": s.protocol.to_dict()} for m, s in specs.items()
    }  # fmt: skip
    paths = write_set_report(output_dir, info, metrics, bset)
    head = metrics["headline"]
    log.info("%s %s = %s (%s) over %d episodes (%d errors); report: %s", bset.name, head["name"],
             bset.format_headline(head["value"]), head["definition"], metrics["episodes"], metrics["errors"],
             paths["report"])  # fmt: skip
    return metrics
