"""Score a scripted expert over a benchmark's episodes and print its success rate and failure breakdown.

    python bench/expert_scores.py --benchmark libero_long --per-task 2 --no-render
    python bench/expert_scores.py --benchmark libero_long --tasks 0,4 --init-states 0-9 --json out.json

Runs in process, one env, the expert reading ``env.unwrapped.privileged_state()`` every step;
episodes are the protocol plan's own (task t, init state j -> plan index t * per_task + j for LIBERO).
``--no-render`` blanks the cameras while stepping: outcomes are the same (rendering changes no simulator
state), it only saves time; the printout says which mode ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import vla_gym  # noqa: E402,F401 - registers the envs
from policies.experts.rollout import run_expert_episode  # noqa: E402
from tasks.registry import get_benchmark  # noqa: E402


def _ints(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def episodes_for(env: Any, tasks: list[int] | None, init_states: list[int]) -> list[int]:
    plan = env.unwrapped.episode_plan
    wanted_tasks = set(tasks) if tasks is not None else {k.task_index for k in plan}
    return [k.index for k in plan if k.task_index in wanted_tasks and k.within_task in init_states]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default="libero_long")
    parser.add_argument("--protocol", default=None)
    parser.add_argument("--tasks", default=None, help="task indices, e.g. 0,3-5 (default: all)")
    parser.add_argument("--init-states", default=None, help="within-task indices, e.g. 0-9")
    parser.add_argument("--per-task", type=int, default=1, help="first N episodes of each task (no --init-states)")
    parser.add_argument("--no-render", action="store_true", help="blank the cameras while stepping (faster)")
    parser.add_argument("--json", default=None, help="write per-episode outcomes here")
    args = parser.parse_args(argv)

    env_id = get_benchmark(args.benchmark).env_id
    env = gym.make(env_id, protocol=args.protocol)
    tasks = _ints(args.tasks) if args.tasks else None
    init_states = _ints(args.init_states) if args.init_states else list(range(args.per_task))
    episodes = episodes_for(env, tasks, init_states)
    rows = []
    started = time.monotonic()
    for index in episodes:
        t0 = time.monotonic()
        result = run_expert_episode(env, index, render=not args.no_render)
        rows.append({"episode": index, "task": result.task, "success": result.success, "steps": result.steps,
                     "stage": result.stage, "failure": result.failure})
        print(f"episode {index:4d} {'OK  ' if result.success else 'FAIL'} steps={result.steps:4d} "
              f"stage={result.stage} failure={result.failure} ({time.monotonic() - t0:.0f}s)  {result.task}",
              flush=True)
    env.close()

    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_task[row["task"]].append(row)
    print(f"\n{args.benchmark} expert, protocol {env.unwrapped.protocol.name} "
          f"({'cameras blanked' if args.no_render else 'rendered'}), {len(rows)} episodes, "
          f"{time.monotonic() - started:.0f}s")
    for task, task_rows in by_task.items():
        wins = sum(r["success"] for r in task_rows)
        stages = Counter(r["failure"] or r["stage"] for r in task_rows if not r["success"])
        print(f"  {wins}/{len(task_rows)}  {task}  {dict(stages) if stages else ''}")
    total = sum(r["success"] for r in rows)
    rate = total / len(rows) if rows else 0.0
    per_task = [sum(r["success"] for r in v) / len(v) for v in by_task.values()]
    print(f"success rate {total}/{len(rows)} = {100 * rate:.1f}% (mean over tasks "
          f"{100 * sum(per_task) / max(len(per_task), 1):.1f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"benchmark": args.benchmark, "render": not args.no_render,
                                               "protocol_digest": env.unwrapped.protocol_digest,
                                               "episodes": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
