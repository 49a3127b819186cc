"""Env ids, entry points and the Hydra env configs all derive from (or are checked against) the benchmark
(and benchmark set) declarations in tasks.registry."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from gymnasium.envs.registration import load_env_creator

import vla_gym
from tasks.registry import BENCHMARK_SETS, BENCHMARKS, get_benchmark, get_benchmark_set

CONF_ENV = Path(__file__).resolve().parents[1] / "conf" / "env"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_each_benchmark_is_registered_from_its_declaration(name: str) -> None:
    benchmark = get_benchmark(name)
    assert vla_gym.ENV_IDS[name] == benchmark.env_id
    spec = gym.registry[benchmark.env_id]
    assert spec.entry_point == benchmark.entry_point
    assert isinstance(load_env_creator(benchmark.entry_point), type)  # importable without building an env
    config = yaml.safe_load((CONF_ENV / f"{name}.yaml").read_text())
    assert config["benchmark"] == name and config["id"] == benchmark.env_id


def test_no_env_config_without_a_benchmark() -> None:
    assert {p.stem for p in CONF_ENV.glob("*.yaml")} <= set(BENCHMARKS) | set(BENCHMARK_SETS)


@pytest.mark.parametrize("name", sorted(BENCHMARK_SETS))
def test_each_benchmark_set_has_its_env_config_and_registered_members(name: str) -> None:
    config = yaml.safe_load((CONF_ENV / f"{name}.yaml").read_text())
    assert config["benchmark_set"] == name and "benchmark" not in config and "id" not in config
    assert name not in BENCHMARKS  # one name, one meaning
    assert set(get_benchmark_set(name).benchmarks()) == set(get_benchmark_set(name).members)
