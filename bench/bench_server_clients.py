"""The policy server shared by 1, 2 and 4 evaluation clients against the agent in-process, as fractions of the
ideal bound, side by side in one run.

    .venv/bin/python bench/bench_server_clients.py [--episodes 48] [--max-steps 20] [--max-wait-ms 0]

The same simulated machine as ``bench/bench_scheduler.py``: N env workers on C simulated cores (sleep-based)
and a synthetic agent costing ``fixed + per_item * B`` per call. In-process: one local runner with N envs and the
agent. Served: ``harness.serve`` runs the agent; K clients (local runners with N/K envs each, in threads of
this process, ``policy=openpi``-style clients) share it, all with env ids 0..N/K-1, and the server batches
their requests. Each client makes one agent call at a time (``agent_threads=1``) or one per env at a time
(``agent_threads`` = its envs: every waiting env's request reaches the server at once, where all clients' are
batched together). The bound is min(env-bound, agent-bound) of the whole: C cores and one agent.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import synthetic  # noqa: E402
from bench_scheduler import Scenario  # noqa: E402

from harness.local_runner import LocalRunner  # noqa: E402
from harness.runner import AgentSource  # noqa: E402
from harness.serve import PolicyServer  # noqa: E402
from harness.workers import EnvSpec  # noqa: E402
from policies.openpi_client import OpenPIClientAgent  # noqa: E402

SCENARIOS = [
    Scenario("gpu-box: agent fast, 2 envs/core", 4, 8, 40, 100, 15, 1.5),
    Scenario("gpu-box, chunks of 5 (LIBERO-like)", 4, 8, 40, 100, 40, 5, execute_steps=5),
    # here batching across clients matters: 4 clients' calls of 2 each cost 4 fixed costs unless merged
    Scenario("balanced: agent ~ envs", 4, 8, 40, 100, 30, 6),
]
KEYS = {"simcpu": {"keys": {"image": "image", "wrist_image": "wrist_image", "language": "language"}}}


class _Client:
    """A picklable-free factory of clients of one server (the runner builds its agent from it)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __call__(self) -> OpenPIClientAgent:
        return OpenPIClientAgent(port=self.port, benchmarks=KEYS, request_timeout_s=60)


def _run_clients(runners: list[LocalRunner], plans: list[list[Any]], sources: list[AgentSource]) -> float:
    steps = [0] * len(runners)
    errors: list[str] = []

    def work(i: int) -> None:
        for result in runners[i].run(plans[i], sources[i]):
            if result.record.status != "ok":
                errors.append(str(result.record.error))
            steps[i] += result.record.steps

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(runners))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} episodes failed: {errors[0]}")
    return sum(steps) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=48)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--max-wait-ms", type=float, default=0.0, help="the server's batching wait")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    synthetic.register()
    ctx = multiprocessing.get_context("fork")
    protocol = synthetic.SimProtocol(max_steps=args.max_steps)
    plan = synthetic.plan(args.episodes)
    print(f"{args.episodes} episodes of {args.max_steps} steps; steps/s (fraction of the ideal bound); "
          f"server max_wait_ms={args.max_wait_ms:g}")  # fmt: skip
    for sc in SCENARIOS:
        cores = ctx.Semaphore(sc.cores)
        spec = EnvSpec(synthetic.ENV_ID, {"protocol": protocol, "cores": cores, "step_s": sc.step_ms / 1e3,
                                          "reset_s": sc.reset_ms / 1e3})  # fmt: skip

        def agent(sc: Scenario = sc) -> synthetic.SyntheticLatencyAgent:
            return synthetic.SyntheticLatencyAgent(sc.fixed_ms / 1e3, sc.item_ms / 1e3, sc.execute_steps,
                                                   sc.execute_steps)  # fmt: skip

        ideal = min(sc.env_bound(args.max_steps), sc.agent_bound())
        results: dict[str, float] = {}
        mean_batch: dict[str, float] = {}
        for _ in range(args.repeats):
            with LocalRunner(spec, "simcpu", protocol.to_dict(), num_envs=sc.envs, start_method="fork") as runner:
                source = AgentSource(agent)
                list(runner.run(plan[: sc.envs], source))  # warm
                value = _run_clients([runner], [plan], [source])
                results["in-process"] = max(results.get("in-process", 0.0), value)
            for k, threads in ((1, 1), (2, 1), (4, 1), (1, 0), (2, 0), (4, 0)):
                with PolicyServer(agent(), port=0, log_every_s=0, max_wait_ms=args.max_wait_ms) as server:
                    per = sc.envs // k
                    threads = threads or per  # 0: one agent call per env of the client (the default)
                    runners = [LocalRunner(spec, "simcpu", protocol.to_dict(), num_envs=per, start_method="fork",
                                           agent_threads=threads) for _ in range(k)]  # fmt: skip
                    sources = [AgentSource(_Client(server.port)) for _ in range(k)]
                    try:
                        _run_clients(runners, [plan[:per]] * k, sources)  # warm: workers up, clients connected
                        server.batch_sizes.clear()
                        value = _run_clients(runners, [plan[i::k] for i in range(k)], sources)
                    finally:
                        for runner in runners:
                            runner.close()
                    name = f"server, {k} client{'s' if k > 1 else ''}, {threads} call{'s' if threads > 1 else ''}"
                    results[name] = max(results.get(name, 0.0), value)
                    mean_batch[name] = server.stats()["mean_batch"]
        print(f"{sc.name} (N={sc.envs}, C={sc.cores}, env-bound {sc.env_bound(args.max_steps):.1f}, agent-bound "
              f"{sc.agent_bound():.1f} steps/s)")  # fmt: skip
        for name, value in results.items():
            extra = f"  mean batch {mean_batch[name]:.2f}" if name in mean_batch else ""
            print(f"  {name:28s} {value:7.1f} ({value / ideal:6.1%}){extra}", flush=True)


if __name__ == "__main__":
    main()
