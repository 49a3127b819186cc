"""SimplerEnv-Bridge speed, measured side by side in one run.

1. steps/s of the default protocol (640x480 render + green screen + resize to 224) vs ``fast`` (224 render);
2. episode set-up time when one env is reused vs rebuilt for every episode (what the paper's code does);
3. peak RSS of each configuration (each runs in its own child process, so the peaks do not mix).

    python bench/bench_bridge.py [--assets-dir DIR] [--task carrot_on_plate] [--steps 40] [--episodes 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(mode: str, args: argparse.Namespace) -> dict:
    import gymnasium as gym
    import numpy as np

    import vla_gym  # noqa: F401

    kwargs = {"assets_dir": args.assets_dir} if args.assets_dir else {}
    task_offset = {"spoon_on_towel": 0, "carrot_on_plate": 24, "stack_cube": 48, "eggplant_in_basket": 72}[
        args.task
    ]
    action = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    out: dict = {"mode": mode}
    t0 = time.perf_counter()
    if mode in ("default", "fast"):
        env = gym.make("VLA/SimplerBridge-v0", protocol=mode, **kwargs)
        env.reset(options={"episode": task_offset})
        out["first_reset_s"] = time.perf_counter() - t0
        env.step(action)  # warm-up
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            env.step(action)
        out["steps_per_s"] = args.steps / (time.perf_counter() - wall)
        out["cpu_s_per_step"] = (time.process_time() - cpu) / args.steps
        env.close()
    elif mode == "reuse":
        env = gym.make("VLA/SimplerBridge-v0", protocol="fast", **kwargs)
        env.reset(options={"episode": task_offset})  # build + shader compile, not counted
        wall, cpu = time.perf_counter(), time.process_time()
        for j in range(args.episodes):
            env.reset(options={"episode": task_offset + 1 + j})
        out["setup_s_per_episode"] = (time.perf_counter() - wall) / args.episodes
        out["setup_cpu_s_per_episode"] = (time.process_time() - cpu) / args.episodes
        env.close()
    elif mode == "rebuild":
        env = gym.make("VLA/SimplerBridge-v0", protocol="fast", **kwargs)
        env.reset(options={"episode": task_offset})  # same warm-up as "reuse"
        env.close()
        wall, cpu = time.perf_counter(), time.process_time()
        for j in range(args.episodes):
            env = gym.make("VLA/SimplerBridge-v0", protocol="fast", **kwargs)
            env.reset(options={"episode": task_offset + 1 + j})
            env.close()
        out["setup_s_per_episode"] = (time.perf_counter() - wall) / args.episodes
        out["setup_cpu_s_per_episode"] = (time.process_time() - cpu) / args.episodes
    else:
        raise ValueError(f"unknown mode {mode!r}")
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run_child(mode: str, argv: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--assets-dir", default=None, help="Bridge asset folder (default: MS_ASSET_DIR / ~/.maniskill)"
    )
    parser.add_argument("--task", default="carrot_on_plate")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args)))
        return
    argv = ["--task", args.task, "--steps", str(args.steps), "--episodes", str(args.episodes)]
    if args.assets_dir:
        argv += ["--assets-dir", args.assets_dir]
    results = {mode: _run_child(mode, argv) for mode in ("default", "fast", "reuse", "rebuild")}
    d, f, reuse, rebuild = (results[m] for m in ("default", "fast", "reuse", "rebuild"))
    print(f"task {args.task}, {args.steps} steps, {args.episodes} episodes per set-up measurement")
    print(
        f"steps/s   default (640x480 -> 224): {d['steps_per_s']:.2f} ({d['cpu_s_per_step']:.3f} CPU-s/step)   "
        f"fast (224): {f['steps_per_s']:.2f} ({f['cpu_s_per_step']:.3f} CPU-s/step)   "
        f"ratio fast/default: {f['steps_per_s'] / d['steps_per_s']:.2f}x"
    )
    print(
        f"set-up s/episode   reuse: {reuse['setup_s_per_episode']:.2f}   rebuild: {rebuild['setup_s_per_episode']:.2f}   "
        f"ratio rebuild/reuse: {rebuild['setup_s_per_episode'] / reuse['setup_s_per_episode']:.1f}x   "
        f"(CPU-s {reuse['setup_cpu_s_per_episode']:.2f} vs {rebuild['setup_cpu_s_per_episode']:.2f}: "
        f"{rebuild['setup_cpu_s_per_episode'] / reuse['setup_cpu_s_per_episode']:.1f}x)"
    )
    print(
        "peak RSS MB   "
        + "   ".join(f"{m}: {r['peak_rss_mb']:.0f}" for m, r in results.items())
        + f"   ratio default/fast: {d['peak_rss_mb'] / f['peak_rss_mb']:.2f}"
    )
    print(f"first make+reset s   default: {d['first_reset_s']:.1f}   fast: {f['first_reset_s']:.1f}")


if __name__ == "__main__":
    main()
