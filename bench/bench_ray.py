"""Episodes/hour of runner=ray on a local Ray cluster vs runner=local on the same machine, side by side.

    .venv/bin/python bench/bench_ray.py [--env toy|libero_long|calvin|simpler_bridge] [--workers 2]
        [--episodes 24] [--max-steps 40] [--step-ms 10] [--repeats 3] [hydra overrides]

The same episodes, the same agent (noop unless overridden), the same number of env workers (``--workers``, W)
in three set-ups:

1. ``runner=local``, ``num_envs=W`` (W env processes, the agent in this process);
2. ``runner=ray``, W actors of 1 env each (one CPU each; the layout for many nodes);
3. ``runner=ray``, 1 actor of W envs (the layout for one GPU box: one agent batching W envs).

All runners are started and warmed up first (W episodes each, not timed: worker and actor start-up, agent
construction), then take turns running the timed episodes ``--repeats`` times; the median is printed: the
steady state a long evaluation or a sweep sees. The Ray cluster's start-up is printed apart. ``--env toy`` is
the test benchmark (tests/toy_env.py) whose steps sleep ``--step-ms`` to stand in for a simulator: it measures
the runners' own overhead without loading the machine; the real envs need their assets (see the README).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no token in the home folder

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # before tests/: its conf/ folder must not shadow the conf package
sys.path.append(str(REPO / "tests"))  # the toy benchmark

import ray  # noqa: E402
from hydra import compose, initialize_config_module  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from harness.local_runner import LocalRunner  # noqa: E402
from harness.ray_runner import RayRunner  # noqa: E402
from harness.runner import AgentSource, Runner  # noqa: E402
from harness.spec import RunSpec, build_agent, resolve  # noqa: E402


def run_spec(
    env: str, episodes: int, max_steps: int, step_ms: float, extra: list[str]
) -> tuple[RunSpec, dict]:
    overrides = ["policy=noop", f"+env.protocol_overrides.max_steps={max_steps}"]
    if env == "toy":
        import toy_env

        toy_env.install()
        overrides += [
            f"hydra.searchpath=[file://{REPO / 'tests' / 'harness_conf'}]",
            f"+env.kwargs.step_sleep={step_ms / 1000}",
            f"+env.protocol_overrides.episodes_per_task={max(4, -(-episodes // len(toy_env.TASKS)))}",
        ]
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"env={env}", *overrides, "output_dir=unused", *extra])
    spec = resolve(cfg)
    if len(spec.plan) < episodes:
        raise ValueError(f"--episodes {episodes}: the {env} plan has only {len(spec.plan)} episodes")
    # Spread over the tasks (every k-th episode of the plan), so episode lengths vary as in a real evaluation.
    stride = len(spec.plan) // episodes
    spec.episodes = [spec.plan[i * stride] for i in range(episodes)]
    policy = OmegaConf.to_container(cfg.policy, resolve=True)
    assert isinstance(policy, dict)
    return spec, policy


def timed_run(runner: Runner, spec: RunSpec, source: AgentSource) -> float:
    """Episodes per hour of one run of the timed episodes."""
    start = time.perf_counter()
    records = [result.record for result in runner.run(spec.episodes, source)]
    elapsed = time.perf_counter() - start
    errors = [r for r in records if r.is_error]
    if len(records) != len(spec.episodes) or errors:
        raise RuntimeError(f"incomplete run: {len(records)} records, errors: {[r.error for r in errors][:3]}")
    return 3600 * len(records) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="toy", help="toy (default), libero_long, calvin or simpler_bridge")
    parser.add_argument("--workers", type=int, default=2, help="env workers in each set-up (= Ray CPUs)")
    parser.add_argument("--episodes", type=int, default=24, help="timed episodes, spread over the plan")
    parser.add_argument("--max-steps", type=int, default=40, help="protocol max_steps override")
    parser.add_argument("--step-ms", type=float, default=10.0, help="toy env only: simulated step time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per set-up, taken in turns")
    parser.add_argument(
        "overrides", nargs="*", help="more Hydra overrides, e.g. policy=constant policy.w=0.25 (toy: episodes "
        "of different lengths, which shows the batch-end idling of 1 actor x W envs)",
    )  # fmt: skip
    args = parser.parse_args()
    spec, policy = run_spec(args.env, args.episodes, args.max_steps, args.step_ms, args.overrides)
    source = AgentSource(functools.partial(build_agent, policy))
    w, protocol = args.workers, spec.protocol.to_dict()

    # Logical CPUs for both Ray set-ups at once (2 x W): all runners stay warm side by side, and only the one
    # being timed works, so the set-ups can take turns (the machine's other load drifts; turns spread it).
    start = time.perf_counter()
    temp_dir = tempfile.mkdtemp(prefix="vgray_")
    ray.init(num_cpus=2 * w, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    print(f"local Ray cluster started in {time.perf_counter() - start:.1f} s (not counted below)")
    runners: dict[str, Runner] = {}
    rates: dict[str, list[float]] = {}
    try:
        runners[f"local  num_envs={w}"] = LocalRunner(spec.env, spec.benchmark, protocol, num_envs=w)
        runners[f"ray    {w} actors x 1 env"] = RayRunner(
            spec.env, spec.benchmark, protocol, num_actors=w, envs_per_actor=1, cpus_per_actor=1
        )
        runners[f"ray    1 actor x {w} envs"] = RayRunner(
            spec.env, spec.benchmark, protocol, num_actors=1, envs_per_actor=w, cpus_per_actor=w
        )
        for runner in runners.values():  # start-up off the clock: workers, actors, agents
            for _ in runner.run(spec.plan[-w:], source):
                pass
        for _ in range(args.repeats):
            for name, runner in runners.items():
                rates.setdefault(name, []).append(timed_run(runner, spec, source))
    finally:
        for runner in runners.values():
            runner.close()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    agent = policy["_target_"].rsplit(".", 1)[-1]
    print(
        f"\n{args.env}: {len(spec.episodes)} episodes (max_steps {args.max_steps}), {agent}, {w} env workers"
    )
    median = {name: statistics.median(values) for name, values in rates.items()}
    base = next(iter(median.values()))
    for name, rate in median.items():
        each = " ".join(f"{v:.0f}" for v in rates[name])
        print(
            f"  {name:28s} {rate:10.0f} episodes/hour (median of {each})   ratio to local {rate / base:.3f}"
        )


if __name__ == "__main__":
    main()
