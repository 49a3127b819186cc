"""Helpers for the per-benchmark table tests of the agents: composing a policy config as a user does, and
finding Python copies of a table (module constants keyed by benchmark names)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from tasks.registry import BENCHMARKS


def compose_policy(name: str, *overrides: str) -> DictConfig:
    """conf/policy/<name>.yaml as ``policy=<name> <overrides>`` composes it (defaults list included)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=[f"policy={name}", *overrides]).policy


def benchmark_keyed_constants(module: ModuleType) -> list[str]:
    """Names of the module's constants (and its classes' attributes) that are mappings keyed by benchmark
    names: a Python copy of a per-benchmark table."""

    def keyed(value: Any) -> bool:
        return isinstance(value, Mapping) and bool(set(map(str, value)) & set(BENCHMARKS))

    found = [name for name, value in vars(module).items() if keyed(value)]
    for cls_name, cls in vars(module).items():
        if inspect.isclass(cls) and cls.__module__ == module.__name__:
            found += [f"{cls_name}.{name}" for name, value in vars(cls).items() if keyed(value)]
    return found
