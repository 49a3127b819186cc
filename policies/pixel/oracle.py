"""The pixel oracle: demonstrations -> fixed recipe -> checkpoint, then held-out scores with the image path
intact and broken on purpose. Used by ``tests/test_pixel_oracle.py``; also a command that prints the table::

    python -m policies.pixel.oracle --data-dir /data/calvin --out outputs/pixel_oracle

Everything goes through the harness: ``harness.record`` records the scripted expert's episodes of one CALVIN
task (single-task episodes of the protocol), ``policies.pixel.train`` trains with the recipe, and
``harness.evaluate`` scores ``policy=pixel`` on later (held-out) episodes of the same protocol, once as is and
once per perturbation (``policies.perturb``). The checkpoint is cached under ``cache_dir`` in a folder named by
the digest of everything that determines it (the setting below, the protocol digest, the recipe), so a second
run skips recording and training.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module

from policies.pixel.train import Recipe, checkpoint_name, train
from tasks.calvin import BENCHMARK

BROKEN = ("flip_ud", "rot90", "swap_rb", "invert_gripper")


@dataclasses.dataclass(frozen=True)
class OracleSetting:
    """What the oracle trains on and is scored on (CALVIN single-task episodes)."""

    task: str = "lift_red_block_table"  # the block lies on one of two table spots, with a random yaw, per scene
    protocol: str = "vlm4vla_static"
    max_steps: int = 90  # per episode (the expert needs at most about 45); a protocol override
    train_episodes: int = 60  # the first episodes of the plan, recorded with the scripted expert
    held_out_from: int = 500  # held-out episodes: plan episodes with index >= this (chains never trained on)
    image_size: int = 64
    recipe: Recipe = Recipe()

    def protocol_overrides(self) -> dict[str, Any]:
        return {"tasks": [self.task], "max_steps_per_subtask": self.max_steps}

    def protocol_digest(self) -> str:
        return BENCHMARK.protocol(self.protocol, **self.protocol_overrides()).digest

    def key(self) -> str:
        data = {**dataclasses.asdict(self), "recipe": self.recipe.to_dict(), "protocol_digest": self.protocol_digest()}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def overrides(self, data_dir: str | Path) -> list[str]:
        """The Hydra overrides that select the env, protocol and task for every run of the oracle."""
        return [
            "env=calvin",
            f"env.protocol={self.protocol}",
            f"+env.protocol_overrides.tasks=[{self.task}]",
            f"+env.protocol_overrides.max_steps_per_subtask={self.max_steps}",
            f"+env.kwargs.data_dir={data_dir}",
            "progress=false",
        ]


def _config(name: str, overrides: Sequence[str]) -> Any:
    with initialize_config_module("conf", version_base="1.3"):
        return compose(name, overrides=list(overrides))


def record_demos(setting: OracleSetting, data_dir: str | Path, out: Path, num_envs: int = 2) -> dict[str, Any]:
    from harness.record import record

    cfg = _config("record", [*setting.overrides(data_dir), "policy=expert", f"episodes_per_task={setting.train_episodes}",
                             f"num_envs={num_envs}", f"record.image_size={setting.image_size}", f"output_dir={out}"])  # fmt: skip
    return record(cfg)


def checkpoint(
    setting: OracleSetting, data_dir: str | Path, cache_dir: str | Path, num_envs: int = 2
) -> tuple[Path, dict[str, float]]:
    """The final checkpoint of the recipe (from the cache, or recorded and trained now) and the seconds spent."""
    folder = Path(cache_dir) / f"pixel_oracle_{setting.key()}"
    final = folder / "run" / checkpoint_name(setting.recipe.steps)
    timing: dict[str, float] = {}
    if final.exists():
        return final, timing
    if folder.exists():
        shutil.rmtree(folder)  # an unfinished earlier attempt
    started = time.monotonic()
    index = record_demos(setting, data_dir, folder / "demos", num_envs)
    timing["record_s"] = time.monotonic() - started
    if index["num_successes"] < setting.train_episodes // 2:
        raise RuntimeError(f"the expert solved only {index['num_successes']} of {index['num_episodes']} demos")
    started = time.monotonic()
    train(folder / "demos", folder / "run", setting.recipe, log=False)
    timing["train_s"] = time.monotonic() - started
    return final, timing


def evaluate_checkpoint(
    setting: OracleSetting,
    data_dir: str | Path,
    ckpt: Path,
    out: Path,
    perturb: Sequence[str] = (),
    episodes: int = 10,
    num_envs: int = 2,
) -> dict[str, Any]:
    """``harness.evaluate`` of the checkpoint on ``episodes`` held-out episodes; returns its metrics."""
    from harness.evaluate import evaluate

    cfg = _config("config", [
        *setting.overrides(data_dir), "policy=pixel", f"policy.checkpoint='{ckpt}'",
        f"policy.chunk_size={setting.recipe.chunk}", f"policy.execute_steps={setting.recipe.execute_steps}",
        f"policy.perturb=[{','.join(perturb)}]", "policy.threads=1", f"episodes_from={setting.held_out_from}",
        f"episodes_per_task={episodes}", f"num_envs={num_envs}", f"output_dir={out}",
    ])  # fmt: skip
    return evaluate(cfg)


def successes(metrics: dict[str, Any]) -> int:
    return int(metrics["overall"]["successes"])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train the pixel oracle and score it intact and broken")
    parser.add_argument("--data-dir", required=True, help="CALVIN data folder")
    parser.add_argument("--out", required=True, help="output folder (evaluations; the cache unless --cache)")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--episodes", type=int, default=20, help="held-out episodes per condition")
    parser.add_argument("--broken-episodes", type=int, default=None, help="per broken condition (default: --episodes)")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the recipe's seed")
    args = parser.parse_args(argv)
    setting = OracleSetting(recipe=Recipe(seed=args.seed))
    out = Path(args.out)
    ckpt, timing = checkpoint(setting, args.data_dir, args.cache or out / "cache", args.num_envs)
    print(json.dumps({"checkpoint": str(ckpt), "key": setting.key(), **{k: round(v, 1) for k, v in timing.items()}}))
    rows = []
    for perturb in [(), *[(name,) for name in BROKEN]]:
        name = perturb[0] if perturb else "intact"
        n = args.episodes if not perturb else (args.broken_episodes or args.episodes)
        started = time.monotonic()
        metrics = evaluate_checkpoint(setting, args.data_dir, ckpt, out / name, perturb, n, args.num_envs)
        rows.append((name, successes(metrics), metrics["episodes"], time.monotonic() - started))
    print("| image path | held-out successes | eval time (s) |\n|---|---|---|")
    for name, wins, n, seconds in rows:
        print(f"| {name} | {wins}/{n} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
