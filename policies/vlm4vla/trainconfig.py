"""The training config the paper copies next to its converted checkpoints, and what evaluation takes from it.

A training run's folder holds ``epoch=N-step=M.pt`` files beside one ``<date>-project.json`` (the config the
run was trained with). The paper's evaluation reads the model type, the chunk length (``fwd_pred_next_n``),
``norm_min``/``norm_max``, the head width (``act_head.hidden_size``), the window and the precision from it.
The converted container also carries it under ``hyper_parameters["configs"]``; a bare state dict does not.

Lookup for a checkpoint file: ``<date>-project.json`` beside it when there is exactly one; otherwise the JSON
files beside it that are training configs and agree with the checkpoint's head (its chunk length); otherwise
the container's copy. Several candidates that disagree on a value evaluation uses are refused (name the one
to use with ``policy.train_config=FILE``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# The paper's backbone classes / model names -> our families (PaliGemma 2 runs with the PaliGemma class and
# configs, so "paligemma" admits both; the base model's config tells them apart).
_MODEL_NAMES: dict[str, tuple[str, ...]] = {
    "qwen25vl": ("qwen25vl",),
    "qwen3vl": ("qwen3vl",),
    "qwen3vlmoe": ("qwen3vlmoe",),
    "paligemma": ("paligemma", "paligemma2"),
    "paligemma2": ("paligemma2",),
    "kosmos": ("kosmos2",),
    "kosmos2": ("kosmos2",),
}
_CLASS_NAMES = {
    "roboqwen25vl": "qwen25vl", "roboqwen3vl_int": "qwen3vl", "roboqwen3vl": "qwen3vl",
    "roboqwen3vlmoe": "qwen3vlmoe", "robopaligemma": "paligemma", "robokosmos": "kosmos",
}
_PRECISIONS = {
    "32": "float32", "32-true": "float32", "fp32": "float32", "float32": "float32",
    "16": "float16", "16-mixed": "float16", "16-true": "float16", "fp16": "float16", "float16": "float16",
    "bf16": "bfloat16", "bf16-mixed": "bfloat16", "bf16-true": "bfloat16", "bfloat16": "bfloat16",
}


class TrainConfigError(ValueError):
    """The training config is unreadable, ambiguous, or contradicts the chosen policy (message says what)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What evaluation takes from a VLM4VLA training config."""

    source: str  # file path, or "<checkpoint>:hyper_parameters"
    model: str  # the config's model name, normalised (qwen25vl, qwen3vl, qwen3vlmoe, paligemma, kosmos)
    backbone_class: str | None  # robovlm_name, e.g. RoboQwen3VL_int
    chunk: int  # fwd_pred_next_n
    head_width: int | None  # act_head.hidden_size
    head_type: str | None
    window: int
    norm_action: bool
    norm_min: float
    norm_max: float
    precision: str | None  # torch dtype name (float32 / bfloat16 / float16) of trainer.precision
    use_hand_rgb: bool

    def families(self) -> tuple[str, ...]:
        """Our families this config's model can be."""
        return _MODEL_NAMES.get(self.model, ())

    def deepstack(self) -> bool | None:
        """Whether the paper's Qwen3-VL class of this config feeds the deepstack features (None: not Qwen3-VL)."""
        name = (self.backbone_class or "").lower()
        if name == "roboqwen3vl_int":
            return True
        if name in ("roboqwen3vl", "roboqwen3vlmoe"):
            return False
        return None


def _norm_model(data: Mapping[str, Any]) -> str:
    for value in (data.get("model"), (data.get("vlm") or {}).get("name"), (data.get("tokenizer") or {}).get("tokenizer_type")):
        if isinstance(value, str) and value:
            key = value.lower().replace("-", "").replace("_", "")
            if key in _MODEL_NAMES:
                return key
    cls = str(data.get("robovlm_name") or "").lower()
    return _CLASS_NAMES.get(cls, str(data.get("model") or cls or "unknown"))


def is_training_config(data: Any) -> bool:
    return isinstance(data, Mapping) and "fwd_pred_next_n" in data and isinstance(data.get("act_head"), Mapping)


def parse(data: Mapping[str, Any], source: str) -> TrainConfig:
    """A :class:`TrainConfig` from the paper's JSON structure."""
    if not is_training_config(data):
        raise TrainConfigError(f"{source} is not a VLM4VLA training config (no 'fwd_pred_next_n' / 'act_head')")
    head = data.get("act_head") or {}
    trainer = data.get("trainer") or {}
    setup = data.get("train_setup") or {}
    raw_precision = trainer.get("precision", setup.get("precision"))
    precision = None
    if raw_precision is not None:
        precision = _PRECISIONS.get(str(raw_precision).lower())
        if precision is None:
            raise TrainConfigError(f"{source}: unknown trainer.precision {raw_precision!r}")
    return TrainConfig(
        source=source,
        model=_norm_model(data),
        backbone_class=data.get("robovlm_name"),
        chunk=int(data["fwd_pred_next_n"]),
        head_width=int(head["hidden_size"]) if head.get("hidden_size") is not None else None,
        head_type=head.get("type"),
        window=int(data.get("window_size", 1) or 1),
        norm_action=bool(data.get("norm_action", True)),
        norm_min=float(data.get("norm_min", -1.0)),
        norm_max=float(data.get("norm_max", 1.0)),
        precision=precision,
        use_hand_rgb=bool(data.get("use_hand_rgb", False)),
    )


def read_file(path: str | Path) -> TrainConfig:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"training config {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{path} is not valid JSON ({exc})") from exc
    return parse(data, str(path))


def _key(cfg: TrainConfig) -> tuple[Any, ...]:
    return (cfg.model, cfg.backbone_class, cfg.chunk, cfg.head_width, cfg.window, cfg.norm_action, cfg.norm_min,
            cfg.norm_max, cfg.precision, cfg.use_hand_rgb)


def find(checkpoint: str | Path, container: Mapping[str, Any] | None, chunk: int | None) -> TrainConfig | None:
    """The training config of ``checkpoint`` (see the module doc), or None when there is none."""
    folder = Path(checkpoint).expanduser().absolute().parent  # not resolve(): a linked file keeps its folder
    projects = sorted(folder.glob("*project.json"))
    if len(projects) == 1:
        return read_file(projects[0])
    candidates: list[TrainConfig] = []
    for path in projects or sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if is_training_config(data):
            candidates.append(parse(data, str(path)))
    if chunk is not None and len(candidates) > 1:
        matching = [c for c in candidates if c.chunk == chunk]
        candidates = matching or candidates
    if candidates:
        if len({_key(c) for c in candidates}) > 1:
            raise TrainConfigError(
                f"{len(candidates)} training configs beside {Path(checkpoint).name} disagree "
                f"({', '.join(Path(c.source).name for c in candidates)}): set policy.train_config=FILE to the one "
                "the checkpoint was trained with (or policy.train_config=none to use none)"
            )
        return candidates[0]
    hparams = (container or {}).get("hyper_parameters")
    if isinstance(hparams, Mapping) and is_training_config(hparams.get("configs")):
        return parse(hparams["configs"], f"{checkpoint}:hyper_parameters")
    return None


def dtype_of(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
