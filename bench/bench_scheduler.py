"""Throughput of the local runner's schedulers as a fraction of the ideal bound, side by side in one run.

    .venv/bin/python bench/bench_scheduler.py                      # simulated envs and agent (sleep-based)
    .venv/bin/python bench/bench_scheduler.py --real libero_long calvin --envs 4 --real-steps 40

The ideal bound in env steps per second is min(env-bound, agent-bound): the env-bound is what the env workers
deliver when the agent costs nothing, the agent-bound what the agent delivers on full batches back to back
(``execute_steps * B / (fixed + per_item * B)``). Each scenario runs, on the same episodes and warm workers:
``lockstep`` (the runner before the pipeline), ``pipeline`` (the default: agent called as soon as it is free)
and ``pipeline-half`` (the agent waits for half the envs, at most 20 ms), and prints steps/s and the fraction.

Simulated scenarios (``bench/synthetic.py``): N env workers on C simulated cores (each step holds a core for
``step_ms``, resets for ``reset_ms``), and a synthetic agent that sleeps ``fixed + per_item * B`` per call, like a
GPU forward. They use no CPU, so they predict a 16-core GPU box on this small machine. ``--real`` runs LIBERO /
CALVIN envs (CPU physics and rendering here) with the synthetic agent sized so that its bound is twice the
measured env-bound (a GPU that outpaces the envs, the case the issue targets).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import synthetic  # noqa: E402

from harness.local_runner import LocalRunner  # noqa: E402
from harness.runner import AgentSource  # noqa: E402
from harness.workers import EnvSpec  # noqa: E402
from tasks.plan import EpisodeKey  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "lockstep": {"scheduler": "lockstep"},
    "pipeline": {"scheduler": "pipeline"},
    "pipeline-half": {"scheduler": "pipeline", "min_batch": None, "max_wait_s": 0.02},  # min_batch: half the envs
}


@dataclasses.dataclass
class Scenario:
    name: str
    cores: int
    envs: int
    step_ms: float
    reset_ms: float
    fixed_ms: float
    item_ms: float
    execute_steps: int = 1

    def env_bound(self, max_steps: int) -> float:
        busy = max_steps * self.step_ms + self.reset_ms
        return min(self.envs, self.cores) * max_steps / busy * 1e3

    def agent_bound(self) -> float:
        return synthetic.agent_bound(self.fixed_ms / 1e3, self.item_ms / 1e3, self.execute_steps, self.envs)


SCENARIOS = [
    # the issue's GPU box, scaled: envs need 40 ms of a core per step, a batched forward costs 15 + 1.5 ms/item
    Scenario("gpu-box: agent fast, 2 envs/core", 4, 8, 40, 100, 15, 1.5),
    Scenario("gpu-box, chunks of 5 (LIBERO-like)", 4, 8, 40, 100, 40, 5, execute_steps=5),
    Scenario("balanced: agent ~ envs", 4, 8, 40, 100, 30, 6),
    Scenario("agent-bound: slow agent", 4, 8, 40, 100, 60, 10),
    Scenario("one env per core, agent fast", 4, 4, 40, 100, 15, 1.5),
]


def throughput(
    runner: LocalRunner, plan: list[EpisodeKey], factory: Callable[[], Any]
) -> tuple[float, list[Any]]:
    start = time.perf_counter()
    records = [r.record for r in runner.run(plan, AgentSource(factory))]
    elapsed = time.perf_counter() - start
    bad = [r for r in records if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} episodes failed: {bad[0].error}")
    return sum(r.steps for r in records) / elapsed, records


def run_variants(
    spec: EnvSpec, benchmark: str, protocol: dict[str, Any], plan: list[EpisodeKey], envs: int,
    make_agent: Callable[[float | None], Callable[[], Any]], repeats: int, start_method: str,
    measure_env_bound: bool = False, half_wait_s: float | None = None,
) -> tuple[dict[str, float], float | None]:  # fmt: skip
    """Best steps/s of each variant over ``repeats`` rounds, all on the same warm workers (one runner whose
    scheduler settings change between runs), variants interleaved within a round. With ``measure_env_bound``
    the pipeline first runs with an agent that costs nothing: that is the env-bound, handed to ``make_agent``."""
    best = dict.fromkeys(VARIANTS, 0.0)
    env_bound = None
    free = functools.partial(synthetic.SyntheticLatencyAgent, 0.0, 0.0)
    with LocalRunner(spec, benchmark, protocol, num_envs=envs, start_method=start_method) as runner:
        list(runner.run(plan[:envs], AgentSource(free)))  # start the workers, warm up
        if measure_env_bound:
            env_bound = max(throughput(runner, plan, free)[0] for _ in range(repeats))
        factory = make_agent(env_bound)
        for _ in range(repeats):
            for name, variant in VARIANTS.items():
                settings = {"scheduler": "pipeline", "min_batch": 1, "max_wait_s": 0.0, **variant}
                if settings["min_batch"] is None:
                    settings["min_batch"] = max(1, (envs + 1) // 2)
                    if half_wait_s is not None:  # real envs: wait up to about one env step
                        settings["max_wait_s"] = half_wait_s
                for key, value in settings.items():
                    setattr(runner, key, value)
                best[name] = max(best[name], throughput(runner, plan, factory)[0])
    return best, env_bound


def simulated(args: argparse.Namespace) -> None:
    synthetic.register()
    ctx = multiprocessing.get_context("fork")
    protocol = synthetic.SimProtocol(max_steps=args.max_steps)
    plan = synthetic.plan(args.episodes)
    print(f"simulated: {args.episodes} episodes of {args.max_steps} steps; steps/s (fraction of the ideal bound)")
    header = f"{'scenario':38s} {'N':>2s} {'C':>2s} {'env-b':>6s} {'agent-b':>7s} " + " ".join(
        f"{v:>21s}" for v in VARIANTS
    )
    print(header)
    for sc in SCENARIOS:
        cores = ctx.Semaphore(sc.cores)
        spec = EnvSpec(synthetic.ENV_ID, {"protocol": protocol, "cores": cores, "step_s": sc.step_ms / 1e3,
                                          "reset_s": sc.reset_ms / 1e3})  # fmt: skip

        def factory(sc: Scenario = sc) -> synthetic.SyntheticLatencyAgent:
            return synthetic.SyntheticLatencyAgent(sc.fixed_ms / 1e3, sc.item_ms / 1e3, sc.execute_steps,
                                                   sc.execute_steps)  # fmt: skip

        got, _ = run_variants(spec, "simcpu", protocol.to_dict(), plan, sc.envs, lambda _: factory, args.repeats, "fork")
        ideal = min(sc.env_bound(args.max_steps), sc.agent_bound())
        cells = " ".join(f"{v:>12.1f} ({v / ideal:5.1%})" for v in got.values())
        print(f"{sc.name:38s} {sc.envs:>2d} {sc.cores:>2d} {sc.env_bound(args.max_steps):>6.1f} "
              f"{sc.agent_bound():>7.1f} {cells}", flush=True)  # fmt: skip


def real(args: argparse.Namespace) -> None:
    from tasks import registry

    data = Path(os.environ.get("VLA_GYM_TEST_DATA", REPO.parent / "shared" / "data"))
    env_ids = {"libero_long": "VLA/LiberoLong-v0", "calvin": "VLA/Calvin-v0"}
    for name in args.real:
        bench = registry.get_benchmark(name)
        if name == "calvin":
            protocol = bench.protocol(None, max_steps_per_subtask=args.real_steps)
            kwargs: dict[str, Any] = {"data_dir": str(data / "calvin")}
        else:
            protocol = bench.protocol(None, max_steps=args.real_steps)
            kwargs = {}
        plan = bench.episode_plan(protocol)[: args.real_episodes]
        spec = EnvSpec(env_ids[name], {**kwargs, "protocol": protocol}, protocol_digest=protocol.digest)
        envs = args.envs

        def make_agent(env_bound: float | None, envs: int = envs) -> Callable[[], Any]:
            assert env_bound is not None  # agent-bound = 2 x env-bound, all of it a fixed cost per call
            return functools.partial(synthetic.SyntheticLatencyAgent, envs / (2 * env_bound), 0.0)

        got, env_bound = run_variants(spec, name, protocol.to_dict(), plan, envs, make_agent, args.repeats, "spawn",
                                      measure_env_bound=True, half_wait_s=args.real_half_wait_s)  # fmt: skip
        assert env_bound is not None
        cells = "  ".join(f"{k} {v:.1f} ({v / env_bound:.1%})" for k, v in got.items())
        print(f"{name}: {envs} envs, env-bound {env_bound:.1f} steps/s, agent {envs / (2 * env_bound) * 1e3:.0f} "
              f"ms/call: {cells}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--real", nargs="*", default=[], help="libero_long and/or calvin")
    parser.add_argument("--envs", type=int, default=4, help="env workers for --real")
    parser.add_argument("--real-steps", type=int, default=40, help="max steps (per subtask for CALVIN) for --real")
    parser.add_argument("--real-episodes", type=int, default=8)
    parser.add_argument("--real-half-wait-s", type=float, default=0.5, help="pipeline-half's max wait on real envs")
    parser.add_argument("--skip-simulated", action="store_true")
    args = parser.parse_args()
    if not args.skip_simulated:
        simulated(args)
    if args.real:
        real(args)


if __name__ == "__main__":
    main()
