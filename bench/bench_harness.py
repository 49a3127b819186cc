"""Harness overhead and parallel scaling on LIBERO-Long, measured side by side in one run.

    .venv/bin/python bench/bench_harness.py [--episodes 4] [--max-steps 60] [--repeats 2] [--skip-parallel]

Variants, each a fresh Python process timed from start to exit (so each pays its own imports and env
construction, as a user's run does), on the same episodes (task 0, init states 0..n-1) and protocol:
1. bare loop: ``gym.make`` then ``reset(seed, options={"episode": k})`` and no-op steps until the episode ends;
2. ``python -m harness.evaluate policy=noop num_envs=1`` (worker process, result store, reports);
3. the same with ``num_envs=2``.
Rounds alternate the order of 1 and 2 to even out a machine whose load changes. Printed: episodes per hour
of each, the ratio 2/1 (harness overhead, target >= 0.95) and 3/2 (parallel speed-up).

Because the LIBERO figures swing with the machine's load, the harness's own cost per step is also measured
on a free env (no physics, no rendering; two 224x224 images and an instruction per observation, like
LIBERO's): milliseconds per step of the local runner with the noop agent minus those of a bare loop.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from harness.local_runner import LocalRunner  # noqa: E402
from harness.runner import AgentSource  # noqa: E402
from harness.workers import EnvSpec  # noqa: E402
from policies.noop import NoopAgent  # noqa: E402
from tasks.plan import EpisodeKey  # noqa: E402
from tasks.protocol import Protocol  # noqa: E402
from vla_gym import contract  # noqa: E402

BARE_LOOP = """
import sys, numpy as np, gymnasium as gym, vla_gym
from tasks.registry import get_benchmark
episodes, max_steps, seed = [int(x) for x in sys.argv[1].split(",")], int(sys.argv[2]), int(sys.argv[3])
env = gym.make("VLA/LiberoLong-v0", protocol=get_benchmark("libero_long").protocol(None, max_steps=max_steps))
action = np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)  # the noop agent's action (gripper open)
for k in episodes:
    env.reset(seed=seed, options={"episode": k})
    while True:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
env.close()
"""


@dataclasses.dataclass(frozen=True)
class _FreeProtocol(Protocol):
    benchmark: str = "free"
    name: str = "free"
    max_steps: int = 500


class FreeEnv(gym.Env):
    """Costs nothing per step: what remains in a harness run is the harness."""

    def __init__(self, protocol: _FreeProtocol) -> None:
        self.protocol, self.protocol_digest = protocol, protocol.digest
        self.observation_space = contract.observation_space(wrist=True)
        self.action_space = contract.action_space()
        rng = np.random.default_rng(0)
        self._obs = {
            "image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
            "language": "put both the alphabet soup and the tomato sauce in the basket",
        }
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        self._t = 0
        return self._fresh(), {"success": False, "episode": (options or {}).get("episode", 0)}

    def _fresh(self) -> dict:
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._obs.items()}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        contract.validate_action(action)
        self._t += 1
        return self._fresh(), 0.0, False, self._t >= self.protocol.max_steps, {"success": False}


def step_overhead(episodes: int = 10) -> tuple[float, float]:
    """(bare, harness) milliseconds per step on FreeEnv, one env."""
    protocol = _FreeProtocol()
    gym.register(id="Bench/Free-v0", entry_point=FreeEnv)
    plan = [EpisodeKey(index=k, task_index=0, task="free", within_task=k) for k in range(episodes)]
    env = gym.make("Bench/Free-v0", protocol=protocol)
    action = np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32)
    start, steps = time.perf_counter(), 0
    for key in plan:
        env.reset(seed=0, options={"episode": key.index})
        truncated = False
        while not truncated:
            *_, truncated, _ = env.step(action)
            steps += 1
    bare = (time.perf_counter() - start) / steps
    # fork: the worker inherits this process's registration of the bench-only env
    spec = EnvSpec("Bench/Free-v0", {"protocol": protocol}, protocol_digest=protocol.digest)
    with LocalRunner(spec, "free", protocol.to_dict(), num_envs=1, start_method="fork") as runner:
        source = AgentSource(NoopAgent)
        list(runner.run(plan[:1], source))  # worker started and warm
        start = time.perf_counter()
        records = [r.record for r in runner.run(plan, source)]
        harness = (time.perf_counter() - start) / sum(r.steps for r in records)
    return 1e3 * bare, 1e3 * harness


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=4, help="episodes of task 0 (init states 0..n-1)")
    parser.add_argument("--max-steps", type=int, default=60, help="protocol max_steps override")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the order of bare/harness alternates")
    parser.add_argument("--skip-parallel", action="store_true", help="do not measure num_envs=2")
    args = parser.parse_args()
    episodes = ",".join(str(k) for k in range(args.episodes))
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    bare = [sys.executable, "-c", BARE_LOOP, episodes, str(args.max_steps), str(args.seed)]

    def harness(num_envs: int, out: Path) -> list[str]:
        return [
            sys.executable, "-m", "harness.evaluate", "env=libero_long", "policy=noop", f"episodes=[{episodes}]",
            f"seed={args.seed}", f"num_envs={num_envs}", f"output_dir={out}", "progress=false",
            f"+env.protocol_overrides.max_steps={args.max_steps}",
        ]  # fmt: skip

    bare_ms, harness_ms = step_overhead()
    seconds: dict[str, list[float]] = {"bare loop": [], "harness num_envs=1": [], "harness num_envs=2": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeats):
            order = ["bare", "h1"] if round_ % 2 == 0 else ["h1", "bare"]
            for which in order:
                if which == "bare":
                    seconds["bare loop"].append(timed(bare, env))
                else:
                    seconds["harness num_envs=1"].append(timed(harness(1, Path(tmp) / f"n1_{round_}"), env))
            if not args.skip_parallel:
                seconds["harness num_envs=2"].append(timed(harness(2, Path(tmp) / f"n2_{round_}"), env))
    n = args.episodes
    per_hour = {k: 3600 * n * len(v) / sum(v) for k, v in seconds.items() if v}
    print(f"LIBERO-Long, {n} episodes of task 0, max_steps={args.max_steps}, noop agent, {args.repeats} round(s), "
          f"{os.cpu_count()} CPUs, MUJOCO_GL={env['MUJOCO_GL']}, load average now {os.getloadavg()[0]:.1f}")  # fmt: skip
    for name, value in per_hour.items():
        runs = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"  {name:<20} {value:8.1f} episodes/hour  (process wall times: {runs} s)")
    print(f"harness overhead ratio (harness num_envs=1 / bare loop): "
          f"{per_hour['harness num_envs=1'] / per_hour['bare loop']:.3f}  (target >= 0.95)")  # fmt: skip
    print(f"harness cost per step on a free env: {harness_ms - bare_ms:.3f} ms "
          f"(bare {bare_ms:.3f} ms, harness {harness_ms:.3f} ms per step)")  # fmt: skip
    if "harness num_envs=2" in per_hour:
        print(f"parallel speed-up (num_envs=2 / num_envs=1): "
              f"{per_hour['harness num_envs=2'] / per_hour['harness num_envs=1']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
