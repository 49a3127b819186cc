"""``python -m policies.pixel.train --data DIR --out DIR [--steps N] [--seed S] ...``: train the pixel policy.

Reads a dataset written by ``harness.record`` (successful episodes only, by default), trains
:class:`~policies.pixel.model.PixelPolicyNet` by MSE on action chunks (the chunk after each step, padded with
the episode's last action) with random-shift augmentation, and saves ``step=<n>.pt`` every ``save_every``
steps and at the end into ``--out``, a folder ``harness.sweep`` takes as it is (plus ``recipe.json`` and
``train_log.jsonl``, which the sweep ignores).

Reproducible: the recipe fixes the step count, the seeds, the thread count and the batch order; torch runs in
deterministic mode, so the same recipe on the same dataset gives the same checkpoint files bit for bit on one
machine and torch build (``recipe.json`` records the dataset's content digest, which the checkpoints carry).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.pixel.model import PixelPolicyNet, words_vector

CHECKPOINT_FORMAT = "vla-gym-pixel/1"
RECIPE_VERSION = 1  # bump when the model, the trainer or the checkpoint layout changes what a recipe yields


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every setting that changes what training produces."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 1  # CPU threads: part of the recipe, since the reduction order can change the bits
    chunk: int = 8  # actions predicted per query
    execute_steps: int = 8  # of which the harness executes this many
    width: int = 16  # conv channels (16, 32, 32, 32)
    hidden: int = 256
    shift: int = 4  # random-shift augmentation: pad by this many pixels (edge), crop back at random
    save_every: int = 1000
    only_success: bool = True
    version: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "threads", "chunk", "execute_steps", "width", "hidden", "save_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"recipe {name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.execute_steps <= self.chunk:
            raise ValueError(f"execute_steps must be in 1..chunk ({self.chunk}), got {self.execute_steps}")
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0, got {self.shift}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass
class Demos:
    """Every training sample of a dataset, in memory."""

    images: np.ndarray  # (N, S, S, 3) uint8
    words: np.ndarray  # (N, WORD_BUCKETS) float32
    targets: np.ndarray  # (N, chunk, 7) float32
    image_size: int
    episodes: list[int]
    digest: str  # sha256 of the decoded arrays of the episodes used
    info: dict[str, Any]


def load_demos(folder: str | os.PathLike[str], chunk: int, only_success: bool = True) -> Demos:
    """The samples of a ``harness.record`` dataset: (image, instruction) at each step and the next ``chunk``
    executed actions (padded with the episode's last one)."""
    folder = Path(folder)
    index = json.loads((folder / "dataset.json").read_text())
    images, words, targets, used = [], [], [], []
    digest = hashlib.sha256()
    for entry in index["episodes"]:
        if only_success and not entry["success"]:
            continue
        with np.load(folder / entry["file"]) as data:
            image, actions, language = data["image"], data["actions"].astype(np.float32), data["language"]
        for array in (image, actions, language.astype("U")):
            digest.update(np.ascontiguousarray(array).tobytes())
        steps = len(actions)
        padded = np.concatenate([actions, np.repeat(actions[-1:], chunk - 1, axis=0)])
        images.append(image)
        words.append(words_vector([str(s) for s in language]))
        targets.append(np.stack([padded[t : t + chunk] for t in range(steps)]))
        used.append(int(entry["episode"]))
    if not used:
        raise ValueError(f"{folder}: no {'successful ' if only_success else ''}episode to train on")
    sizes = {im.shape[1] for im in images}
    if len(sizes) != 1 or images[0].shape[1] != images[0].shape[2]:
        raise ValueError(f"{folder}: images must be square and of one size, got sizes {sorted(sizes)}")
    info = {k: index[k] for k in ("benchmark", "protocol", "protocol_digest", "image_size", "env_kwargs")}
    return Demos(
        np.concatenate(images), np.concatenate(words), np.concatenate(targets), images[0].shape[1], used,
        digest.hexdigest()[:16], info,
    )  # fmt: skip


def _shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to ``pad`` pixels (edge padding, then a random crop of the original size)."""
    if pad == 0:
        return images
    n, s = images.shape[0], images.shape[1]
    x = images.permute(0, 3, 1, 2).float()
    x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    out = torch.stack([x[i, :, oy : oy + s, ox : ox + s] for i, (oy, ox) in enumerate(offsets.tolist())])
    return out.permute(0, 2, 3, 1)


def build_model(recipe: Recipe, image_size: int) -> PixelPolicyNet:
    return PixelPolicyNet(image_size=image_size, chunk=recipe.chunk, width=recipe.width, hidden=recipe.hidden)


def checkpoint_name(step: int) -> str:
    return f"step={step}.pt"


def train(data: str | os.PathLike[str], out: str | os.PathLike[str], recipe: Recipe, log: bool = True) -> list[Path]:
    """Train with ``recipe`` on the dataset in ``data``; returns the checkpoint paths written into ``out``."""
    demos = load_demos(data, recipe.chunk, recipe.only_success)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = {"recipe": recipe.to_dict(), "recipe_digest": recipe.digest, "dataset": str(data),
              "dataset_digest": demos.digest, "episodes": demos.episodes, "samples": len(demos.images),
              "image_size": demos.image_size, **{f"data_{k}": v for k, v in demos.info.items()}}  # fmt: skip
    (out / "recipe.json").write_text(json.dumps(header, indent=2, sort_keys=True))

    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(recipe.seed)
        model = build_model(recipe, demos.image_size)
        opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        generator = torch.Generator().manual_seed(recipe.seed + 1)
        images = torch.from_numpy(demos.images)
        words = torch.from_numpy(demos.words)
        targets = torch.from_numpy(demos.targets)
        written: list[Path] = []
        started = time.monotonic()
        with open(out / "train_log.jsonl", "w") as log_file:
            for step in range(1, recipe.steps + 1):
                idx = torch.randint(0, len(images), (recipe.batch_size,), generator=generator)
                batch = _shift(images[idx], recipe.shift, generator)
                loss = torch.nn.functional.mse_loss(model(batch, words[idx]), targets[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step % 50 == 0 or step == recipe.steps:
                    row = {"step": step, "loss": round(float(loss.detach()), 6), "elapsed_s": round(time.monotonic() - started, 1)}
                    log_file.write(json.dumps(row) + "\n")
                    if log:
                        print(json.dumps(row), flush=True)
                if step % recipe.save_every == 0 or step == recipe.steps:
                    written.append(save_checkpoint(out / checkpoint_name(step), model, recipe, step, header))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return written


def save_checkpoint(path: Path, model: PixelPolicyNet, recipe: Recipe, step: int, header: dict[str, Any]) -> Path:
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "recipe": recipe.to_dict(),
        "image_size": model.image_size,
        "dataset_digest": header["dataset_digest"],
        "protocol_digest": header["data_protocol_digest"],
        "state_dict": model.state_dict(),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Recipe]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", required=True, help="a dataset folder written by harness.record")
    parser.add_argument("--out", required=True, help="the checkpoint folder (step=<n>.pt, recipe.json)")
    defaults = Recipe()
    for field in dataclasses.fields(Recipe):
        if field.name == "version":
            continue
        value = getattr(defaults, field.name)
        kind: Any = (lambda s: s.lower() in ("1", "true", "yes")) if isinstance(value, bool) else type(value)
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=value, help=f"default {value}")
    args = parser.parse_args(argv)
    recipe = Recipe(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe) if f.name != "version"})
    return args, recipe


def main(argv: Sequence[str] | None = None) -> None:
    args, recipe = parse_args(argv)
    paths = train(args.data, args.out, recipe)
    print(f"wrote {len(paths)} checkpoints into {args.out}: {', '.join(p.name for p in paths)}")


if __name__ == "__main__":
    main()
