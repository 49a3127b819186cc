"""CALVIN env speed: steps/s with both cameras (EGL, the default, and TinyRenderer) and with the static camera
only (224 output), physics alone, reset and construction time, peak RSS. All measured side by side in one
process and printed.

    python bench/bench_calvin.py [--data-dir DIR] [--steps 60] [--resets 5]

The original environment runs ~13 steps/s here with both cameras on TinyRenderer (static 200 + gripper 84).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vla_gym  # noqa: E402,F401 - registers the envs

ORIGINAL_STEPS_PER_S = 13.0


def _actions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.5, 0.5, size=(n, 7))
    actions[:, 6] = np.where(np.arange(n) % 40 < 20, 1.0, -1.0)
    return actions


def bench_env(protocol: str, data_dir: str | None, steps: int, resets: int) -> dict[str, float]:
    t0 = time.perf_counter()
    env = gym.make("VLA/Calvin-v0", protocol=protocol, data_dir=data_dir,
                   protocol_overrides={"max_steps_per_subtask": 10_000})
    construct = time.perf_counter() - t0
    reset_times = []
    for k in range(resets):
        t0 = time.perf_counter()
        env.reset(options={"episode": k})
        reset_times.append(time.perf_counter() - t0)
    env.reset(options={"episode": 0})
    actions = _actions(steps)
    t0 = time.perf_counter()
    for action in actions:
        env.step(action)
    rendered = steps / (time.perf_counter() - t0)
    world = env.unwrapped.world
    t0 = time.perf_counter()
    for action in actions:
        world.step(action)  # physics, button/switch logic; no rendering, no task check
    physics = steps / (time.perf_counter() - t0)
    env.close()
    return {"construct_s": construct, "reset_s": float(np.median(reset_times)), "steps_per_s": rendered,
            "physics_steps_per_s": physics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="CALVIN data folder (default: VLA_GYM_CALVIN_DIR or cache)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--resets", type=int, default=5)
    args = parser.parse_args()
    both = bench_env("vlm4vla", args.data_dir, args.steps, args.resets)
    static = bench_env("vlm4vla_static", args.data_dir, args.steps, args.resets)
    tiny = bench_env("tiny", args.data_dir, args.steps, args.resets)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"CALVIN scene D, {args.steps} steps per setting, images resized to 224")
    print(f"  both cameras, EGL (default):            {both['steps_per_s']:7.1f} steps/s")
    print(f"  both cameras, TinyRenderer ('tiny'):    {tiny['steps_per_s']:7.1f} steps/s "
          f"(EGL/tiny {both['steps_per_s'] / tiny['steps_per_s']:.2f}x; the original on TinyRenderer: "
          f"~{ORIGINAL_STEPS_PER_S:.0f})")
    print(f"  static camera only:                     {static['steps_per_s']:7.1f} steps/s "
          f"({static['steps_per_s'] / both['steps_per_s']:.2f}x both cameras)")
    print(f"  physics only (no render, no check):     {both['physics_steps_per_s']:7.1f} steps/s")
    print(f"  reset (new client + EGL, rebuild, render): {both['reset_s'] * 1000:4.0f} ms (median of {args.resets}; "
          f"tiny: {tiny['reset_s'] * 1000:.0f} ms)")
    print(f"  construct (gym.make):                   {both['construct_s']:7.2f} s")
    print(f"  peak RSS:                               {rss_mb:7.0f} MB")


if __name__ == "__main__":
    main()
