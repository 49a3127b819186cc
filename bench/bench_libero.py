"""Speed of VLA/LiberoLong-v0 against hf-libero's raw OffScreenRenderEnv, measured side by side in one run.

Both envs start from the same init state and step the same actions; their stepping is interleaved in blocks
(ours, raw, ours, raw, ...) so that load changes on the machine hit both alike. Prints steps/s of each, the
ratio (target >= 0.95, i.e. at most 5% wrapper overhead), construction time, reset-to-episode time (same
task, env reused) and peak RSS.

    python bench/bench_libero.py [--task 0] [--steps 120] [--block 10] [--resets 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=int, default=0, help="LIBERO-Long task index (0..9)")
    parser.add_argument("--init-state", type=int, default=0)
    parser.add_argument("--steps", type=int, default=120, help="policy steps per env")
    parser.add_argument("--block", type=int, default=10, help="steps per interleaved timing block")
    parser.add_argument("--resets", type=int, default=3, help="timed reset-to-episode calls")
    parser.add_argument(
        "--protocol",
        default="openvla",
        choices=["openvla", "openpi"],
        help="a 10-no-ops-first protocol: the raw env below replays that loop (not the paper's interleaved one)",
    )
    args = parser.parse_args()

    import gymnasium as gym

    import vla_gym  # noqa: F401 - registers the env ids
    from tasks.libero_long import TASK_NAMES
    from vla_gym.libero import sim, suite
    from vla_gym.libero.assets import import_libero, resolve_assets
    from vla_gym.rendering import select_gl_backend

    backend = select_gl_backend()
    print(f"GL backend: {backend}; protocol: {args.protocol}; task {args.task}: {TASK_NAMES[args.task]}")
    rss_start = _rss_mb()

    # --- construction (+ the first reset, which builds the task's simulator)
    t0 = time.perf_counter()
    env = gym.make("VLA/LiberoLong-v0", protocol=args.protocol)
    obs, _ = env.reset(options={"task": args.task, "init_state": args.init_state})
    ours_first = time.perf_counter() - t0
    protocol = env.unwrapped.protocol
    rss_ours = _rss_mb()

    t0 = time.perf_counter()
    import_libero(resolve_assets())
    from libero.libero.envs import OffScreenRenderEnv

    raw = OffScreenRenderEnv(
        bddl_file_name=str(suite.bddl_path(TASK_NAMES[args.task])),
        camera_heights=protocol.render_size,
        camera_widths=protocol.render_size,
    )
    raw_construct = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw.seed(protocol.fixture_seed)
    raw.reset()
    raw.set_init_state(suite.load_init_states(TASK_NAMES[args.task])[args.init_state])
    for _ in range(protocol.settle_steps):
        raw.step(list(protocol.settle_action))
    raw_first_reset = time.perf_counter() - t0

    # --- stepping, interleaved blocks of the same actions
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.5, 0.5, size=(args.steps, 7)).astype(np.float32)
    actions[:, 6] = np.where(np.arange(args.steps) % 40 < 20, 1.0, -1.0)
    native = actions.astype(np.float64)
    native[:, 6] = -native[:, 6]
    ours_time = raw_time = 0.0
    ours_done = raw_done = 0
    over = False
    for start in range(0, args.steps, args.block):
        stop = min(start + args.block, args.steps)
        t0 = time.perf_counter()
        for k in range(start, stop):
            if not over:
                _, _, terminated, truncated, _ = env.step(actions[k])
                over = terminated or truncated
                ours_done += 1
        ours_time += time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(start, stop):
            if raw_done < ours_done:
                raw.step(native[k].tolist())
                raw_done += 1
        raw_time += time.perf_counter() - t0
    identical = all(
        np.array_equal(a, b)
        for a, b in zip(env.unwrapped.sim_snapshot().values(), sim.snapshot(raw).values(), strict=True)
    )

    # --- reset to an episode of the same task (env reused, no rebuild)
    reset_times = []
    for j in range(args.resets):
        t0 = time.perf_counter()
        env.reset(options={"task": args.task, "init_state": (args.init_state + 1 + j) % 50})
        reset_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    raw.reset()
    raw_reset = time.perf_counter() - t0

    ours_sps = ours_done / ours_time
    raw_sps = raw_done / raw_time
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"steps timed: ours {ours_done}, raw {raw_done} (blocks of {args.block}); same final sim state: {identical}"
    )
    print(f"steps/s  VLA/LiberoLong-v0: {ours_sps:.2f}   raw OffScreenRenderEnv: {raw_sps:.2f}")
    print(f"ratio ours/raw: {ours_sps / raw_sps:.3f}  (target >= 0.95)")
    print(
        f"construct + first reset, ours: {ours_first:.2f} s   raw construct: {raw_construct:.2f} s, "
        f"raw first reset + settle: {raw_first_reset:.2f} s"
    )
    print(
        f"reset to episode (same task, reused env, incl. {protocol.settle_steps} settle steps): "
        f"mean {np.mean(reset_times):.2f} s over {len(reset_times)}   raw hard reset alone: {raw_reset:.2f} s"
    )
    print(
        f"RSS: start {rss_start:.0f} MB, after our env {rss_ours:.0f} MB, now {_rss_mb():.0f} MB, "
        f"peak {peak_mb:.0f} MB (process, both envs)"
    )
    print(f"cpu count: {os.cpu_count()}")
    env.close()
    raw.close()


if __name__ == "__main__":
    main()
