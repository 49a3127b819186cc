"""Reading the paper's converted checkpoints and loading them into a :class:`VLM4VLAModel`.

A checkpoint is a ``.pt`` file: the paper's converted container (a Lightning/DeepSpeed dict whose
``state_dict`` holds the weights) or a bare state dict, fp32, keys ``model.backbone.<Hugging Face keys>``,
``model.act_head.*`` and ``model.action_token``. Loading strips ``module.`` and ``model.`` and renames
backbone keys saved by older transformers releases to the layout of transformers 5 (PaliGemma before 4.52:
``language_model.model.*``, ``vision_tower.vision_model.*``; 4.52+: ``model.vision_tower.vision_model.*``;
Qwen-VL before 4.52: ``visual.*`` and ``model.layers.*``; Qwen3-VL-MoE before 5: experts stored transposed).
Files are read with ``weights_only=True`` unless the user marks them trusted.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# (pattern, replacement) applied in order to backbone keys of each family, old layout -> transformers 5.
_LEGACY_RENAMES: dict[str, list[tuple[str, str]]] = {
    "paligemma": [
        (r"^language_model\.lm_head\.", "lm_head."),
        # SigLIP lost its ``vision_model.`` level in transformers 5 (older: vision_tower.vision_model.*)
        (r"^(?:model\.)?vision_tower\.vision_model\.", "model.vision_tower."),
        (r"^language_model\.model\.", "model.language_model."),
        (r"^vision_tower\.", "model.vision_tower."),
        (r"^multi_modal_projector\.", "model.multi_modal_projector."),
    ],
    "qwen": [
        (r"^visual\.", "model.visual."),
        (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
    ],
}
_FAMILY_RULES = {"paligemma": "paligemma", "paligemma2": "paligemma", "qwen25vl": "qwen", "qwen3vl": "qwen",
                 "qwen3vlmoe": "qwen"}
# Output-embedding weights the policy never uses (tied to the input embeddings in every base model).
_UNUSED = re.compile(r"^backbone\.(lm_head|text_model\.lm_head)\.")


class CheckpointError(ValueError):
    """The file is not a usable VLM4VLA checkpoint (the message says why and what to do)."""


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, keys normalised to ``model.``-less form (``backbone.*``, ...)."""
    return read_checkpoint_file(path, trusted)[0]


def read_checkpoint_file(path: str | Path, trusted: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(normalised state dict, the container's other entries; empty for a bare state dict)."""
    path = Path(path).expanduser()
    if not path.is_file():
        hint = ""
        if "=" in path.name and path.parent.is_dir():
            hint = " (paths holding '=' must be quoted for Hydra: 'policy.checkpoint=\"/dir/epoch=3-step=12000.pt\"')"
        raise FileNotFoundError(f"checkpoint file {path} does not exist{hint}")
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=not trusted, mmap=True)
        except RuntimeError as exc:  # files of the legacy (non-zip) format cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects that weights_only loading refuses ({str(exc).splitlines()[0]}). If you trust "
            "this file, set policy.trusted_checkpoint=true to load it with full unpickling."
        ) from exc
    except Exception as exc:  # torch raises many kinds for bytes that are not a torch file
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    container: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                container = {k: v for k, v in obj.items() if k != key}
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path} is not a VLM4VLA checkpoint: expected a state_dict of tensors (or a dict with 'state_dict')"
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        key = key.removeprefix("module.").removeprefix("model.")
        out[key] = value
    if not any(k.startswith(("backbone.", "act_head.")) for k in out):
        raise CheckpointError(f"{path} has no 'model.backbone.*' / 'model.act_head.*' keys: not a VLM4VLA checkpoint")
    return out, container


def remap_backbone_keys(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Rename backbone keys saved by transformers < 4.52 to transformers 5's layout (others untouched)."""
    rules = _LEGACY_RENAMES.get(_FAMILY_RULES.get(family, ""), [])
    out = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            sub = key[len("backbone.") :]
            for pattern, repl in rules:
                new, n = re.subn(pattern, repl, sub)
                if n:
                    sub = new
                    break
            key = "backbone." + sub
        out[key] = value
    return out


def chunk_of(state: Mapping[str, torch.Tensor]) -> int:
    """Actions per query the checkpoint's head predicts (rows of the gripper output layer)."""
    key = "act_head.gripper.mlp.6.weight"
    if key not in state:
        raise CheckpointError(f"checkpoint has no {key!r}: not an FCDecoder head")
    return int(state[key].shape[0])


def _fix_expert_layout(state: dict[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> None:
    """Qwen3-VL-MoE experts saved by transformers 4.x are the transpose of transformers 5's (fused 3-D)."""
    for key, value in list(state.items()):
        if key.endswith(("mlp.experts.gate_up_proj", "mlp.experts.down_proj")) and key in own and value.dim() == 3:
            target = own[key].shape
            if value.shape != target and value.transpose(1, 2).shape == target:
                state[key] = value.transpose(1, 2)


def _listing(keys: list[str], limit: int = 40) -> str:
    shown = ", ".join("model." + k for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_into(model: nn.Module, state: dict[str, torch.Tensor], family: str, require_backbone: bool = True) -> None:
    """Load a normalised state dict into ``model`` (a VLM4VLAModel); every weight must match by name and shape.

    ``require_backbone=False`` tolerates backbone weights the file lacks (they keep the base model's values)."""
    state = remap_backbone_keys(state, family)
    own = model.state_dict()
    _fix_expert_layout(state, own)
    if "action_token" in state and "action_token" in own and state["action_token"].numel() == own["action_token"].numel():
        state["action_token"] = state["action_token"].reshape(own["action_token"].shape)
    missing = sorted(k for k in own if k not in state and not _UNUSED.match(k))
    if not require_backbone:
        missing = [k for k in missing if not k.startswith("backbone.")]
    unexpected = sorted(k for k in state if k not in own and not _UNUSED.match(k))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint keys do not match the {family} policy: {len(missing)} missing [{_listing(missing)}]; "
            f"{len(unexpected)} unexpected [{_listing(unexpected)}]. Check that the policy config (family) is the "
            "one the checkpoint was trained with and that policy.model_path is its base model."
        )
    shapes = [f"model.{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]
    if shapes:
        raise CheckpointError(
            f"checkpoint shapes do not match the {family} policy ({len(shapes)}): {'; '.join(shapes[:20])}. Check "
            "that policy.model_path is the base model (config.json) the checkpoint was trained from."
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def paper_state_dict(model: nn.Module, family: str, legacy: bool = False) -> dict[str, torch.Tensor]:
    """``model``'s weights in the paper's checkpoint layout (``model.``-prefixed, fp32); ``legacy`` writes
    the pre-4.52 backbone key names (PaliGemma / Qwen-VL) the released checkpoints use."""
    inverse = {
        "paligemma": [(r"^lm_head\.", "language_model.lm_head."), (r"^model\.language_model\.", "language_model.model."),
                      (r"^model\.vision_tower\.", "vision_tower.vision_model."), (r"^model\.multi_modal_projector\.", "multi_modal_projector.")],
        "qwen": [(r"^model\.visual\.", "visual."), (r"^model\.language_model\.", "model.")],
    }.get(_FAMILY_RULES.get(family, ""), []) if legacy else []
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            sub = key[len("backbone.") :]
            for pattern, repl in inverse:
                new, n = re.subn(pattern, repl, sub)
                if n:
                    sub = new
                    break
            key = "backbone." + sub
        out["model." + key] = value.detach().to(torch.float32).clone()
    return out
