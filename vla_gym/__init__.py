"""vla-gym: one Gymnasium API over LIBERO-Long, CALVIN ABC->D and SimplerEnv-Bridge.

Importing this package registers the envs; simulators are imported only when an env is built.
"""

from __future__ import annotations

import gymnasium as gym

from tasks.registry import BENCHMARKS, get_benchmark

__version__ = "0.1.0"

# Registration from one source: every benchmark in tasks.registry declares its env id and entry point.
ENV_IDS = {name: get_benchmark(name).env_id for name in BENCHMARKS}


def _register() -> None:
    for name in BENCHMARKS:
        benchmark = get_benchmark(name)
        if benchmark.env_id not in gym.registry:
            # No TimeLimit wrapper: each env truncates itself at its protocol's step limit.
            gym.register(id=benchmark.env_id, entry_point=benchmark.entry_point)


_register()
