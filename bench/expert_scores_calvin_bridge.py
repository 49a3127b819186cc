"""Score the scripted privileged experts on CALVIN and SimplerEnv-Bridge (in-process loop, one env).

    python bench/expert_scores_calvin_bridge.py calvin --chains 100 --skip-render
    python bench/expert_scores_calvin_bridge.py bridge --episodes-per-task 24 --protocol vlm4vla_fast

CALVIN: the first ``--chains`` chains of the protocol's plan; prints the chain success rates for 1..5, the
average length, per-task successes/attempts and which skill was running when a subtask failed.
Bridge: the first ``--episodes-per-task`` episodes of each task; final-step success per task, the 4-task
mean and the grasp rate. Both print a digest over every action sent, so two runs with equal digests made
bitwise the same rollouts.

``--skip-render`` (CALVIN) skips drawing the camera images, which the expert never reads (it reads the
privileged state): the physics and the scores are unchanged, the run is ~10x faster on CPU. The images in
``obs`` are then black. Use it for scoring the expert only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vla_gym  # noqa: E402,F401  (registers the envs)
from policies.experts import planner_class  # noqa: E402
from policies.experts.local_loop import EpisodeOutcome, run_episode  # noqa: E402


@contextlib.contextmanager
def calvin_images_skipped() -> Iterator[None]:
    """Within the block, CALVIN's cameras return black frames instead of rendering (restored on exit)."""
    from vla_gym.calvin import cameras

    saved = cameras.Cameras.static, cameras.Cameras.gripper

    def black(self: Any, which: str) -> np.ndarray:
        size = self.sizes[which]
        return np.zeros((size, size, 3), dtype=np.uint8)

    cameras.Cameras.static = lambda self: black(self, "static")  # type: ignore[method-assign]
    cameras.Cameras.gripper = lambda self: black(self, "gripper")  # type: ignore[method-assign]
    try:
        yield
    finally:
        cameras.Cameras.static, cameras.Cameras.gripper = saved  # type: ignore[method-assign]


def failure_breakdown(outcomes: list[EpisodeOutcome]) -> dict[str, dict[str, int]]:
    """task -> {skill running (or failed) when the task failed: count}."""
    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for out in outcomes:
        for sub in out.subtasks:
            if not sub.success:
                table[sub.task][sub.failure or f"{sub.stage} (no failure noticed)"] += 1
    return {task: dict(c) for task, c in sorted(table.items())}


def score_calvin(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"protocol": args.protocol}
    if args.data_dir:
        kwargs["data_dir"] = args.data_dir
    ctx = calvin_images_skipped() if args.skip_render else contextlib.nullcontext()
    with ctx:
        env = gym.make("VLA/Calvin-v0", **kwargs)
        cls = planner_class("calvin")
        outcomes = []
        t0 = time.perf_counter()
        for k in range(args.first, args.first + args.chains):
            out = run_episode(env, cls, k)
            outcomes.append(out)
            if args.verbose:
                print(k, out.metrics.get("chain_length"), [(s.task, s.success, s.failure) for s in out.subtasks],
                      flush=True)
        seconds = time.perf_counter() - t0
        env.close()
    lengths = [int(o.metrics["chain_length"]) for o in outcomes]
    per_task: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    for o in outcomes:
        for sub in o.subtasks:
            per_task[sub.task][0] += int(sub.success)
            per_task[sub.task][1] += 1
    digest = hashlib.sha256("".join(o.actions_digest for o in outcomes).encode()).hexdigest()
    return {
        "benchmark": "calvin",
        "protocol": args.protocol,
        "images": "skipped" if args.skip_render else "rendered",
        "chains": [args.first, args.first + args.chains],
        "avg_len": float(np.mean(lengths)),
        "success_rate_k": [float(np.mean([n >= k for n in lengths])) for k in range(1, 6)],
        "chain_lengths": lengths,
        "per_task": {t: f"{s}/{n}" for t, (s, n) in sorted(per_task.items())},
        "failures": failure_breakdown(outcomes),
        "steps": int(sum(sum(s.steps for s in o.subtasks) for o in outcomes)),
        "seconds": round(seconds, 1),
        "actions_digest": digest,
    }


def score_bridge(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"protocol": args.protocol}
    if args.data_dir:
        kwargs["assets_dir"] = args.data_dir
    env = gym.make("VLA/SimplerBridge-v0", **kwargs)
    unwrapped = env.unwrapped
    cls = planner_class("simpler_bridge")
    plan = unwrapped.episode_plan
    per_task: dict[str, list[EpisodeOutcome]] = collections.defaultdict(list)
    t0 = time.perf_counter()
    for key in plan:
        if key.within_task < args.first or key.within_task >= args.first + args.episodes_per_task:
            continue
        if args.tasks and key.task not in args.tasks:
            continue
        out = run_episode(env, cls, key.index)
        per_task[key.task].append(out)
        if args.verbose:
            print(key.task, key.within_task, out.success, out.metrics.get("grasped_any"), out.subtasks[-1].stage,
                  out.subtasks[-1].failure, flush=True)
    seconds = time.perf_counter() - t0
    result = {
        "benchmark": "simpler_bridge",
        "protocol": args.protocol,
        "assets_are_standins": bool(unwrapped.assets_are_standins),
        "asset_digest": str(unwrapped.asset_digest),
        "episodes_per_task": [args.first, args.first + args.episodes_per_task],
        "success": {t: float(np.mean([o.success for o in outs])) for t, outs in per_task.items()},
        "grasped_any": {t: float(np.mean([bool(o.metrics.get("grasped_any")) for o in outs]))
                        for t, outs in per_task.items()},
        "failures": {t: failure_breakdown(outs).get(t, {}) for t, outs in per_task.items()},
        "seconds": round(seconds, 1),
        "actions_digest": hashlib.sha256(
            "".join(o.actions_digest for outs in per_task.values() for o in outs).encode()
        ).hexdigest(),
    }
    result["mean_success"] = float(np.mean(list(result["success"].values()))) if per_task else 0.0
    env.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("benchmark", choices=("calvin", "bridge"))
    parser.add_argument("--protocol", default=None, help="default: vlm4vla_static (CALVIN), vlm4vla_fast (Bridge)")
    parser.add_argument("--chains", type=int, default=100, help="CALVIN: how many chains")
    parser.add_argument("--episodes-per-task", type=int, default=24, help="Bridge: episodes of each task")
    parser.add_argument("--first", type=int, default=0, help="first chain / episode id")
    parser.add_argument("--tasks", nargs="*", default=None, help="Bridge: only these tasks")
    parser.add_argument("--skip-render", action="store_true", help="CALVIN: black images (see the docstring)")
    parser.add_argument("--data-dir", default=None, help="CALVIN data folder / Bridge asset folder")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.protocol is None:
        args.protocol = "vlm4vla_static" if args.benchmark == "calvin" else "vlm4vla_fast"
    result = score_calvin(args) if args.benchmark == "calvin" else score_bridge(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
