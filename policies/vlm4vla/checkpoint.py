"""Reading the paper's converted checkpoints and loading them into a :class:`VLM4VLAModel`.

A checkpoint is a ``.pt`` file holding a Lightning ``state_dict`` (fp32) with keys
``model.backbone.<Hugging Face keys>``, ``model.act_head.*`` and ``model.action_token``. Loading strips
``module.``, adds ``model.`` and renames backbone keys saved by older transformers releases to the layout of
transformers 5 (PaliGemma before 4.52: ``language_model.model.*``; Qwen-VL before 4.52: ``visual.*`` and
``model.layers.*``). Files are read with ``weights_only=True`` unless the user marks them trusted.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

# (pattern, replacement) applied in order to backbone keys of each family, old layout -> transformers 5.
_LEGACY_RENAMES: dict[str, list[tuple[str, str]]] = {
    "paligemma": [
        (r"^language_model\.lm_head\.", "lm_head."),
        (r"^language_model\.model\.", "model.language_model."),
        (r"^vision_tower\.", "model.vision_tower."),
        (r"^multi_modal_projector\.", "model.multi_modal_projector."),
    ],
    "qwen": [
        (r"^visual\.", "model.visual."),
        (r"^model\.(?!language_model\.|visual\.)", "model.language_model."),
    ],
}
_FAMILY_RULES = {"paligemma": "paligemma", "paligemma2": "paligemma", "qwen25vl": "qwen", "qwen3vl": "qwen"}
# Output-embedding weights the policy never uses (tied to the input embeddings in every base model).
_UNUSED = re.compile(r"^backbone\.(lm_head|text_model\.lm_head)\.")


class CheckpointError(ValueError):
    """The file is not a usable VLM4VLA checkpoint (the message says why and what to do)."""


def read_checkpoint(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file, keys normalised to ``model.``-less form (``backbone.*``, ...)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects that weights_only loading refuses ({str(exc).splitlines()[0]}). If you trust "
            "this file, set policy.trusted_checkpoint=true to load it with full unpickling."
        ) from exc
    except Exception as exc:  # torch raises many kinds for bytes that are not a torch file
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
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
    return out


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


def load_into(model: nn.Module, state: dict[str, torch.Tensor], family: str) -> None:
    """Load a normalised state dict into ``model`` (a VLM4VLAModel); every weight must match by name and shape."""
    state = remap_backbone_keys(state, family)
    own = model.state_dict()
    if "action_token" in state and "action_token" in own and state["action_token"].numel() == own["action_token"].numel():
        state["action_token"] = state["action_token"].reshape(own["action_token"].shape)
    missing = sorted(k for k in own if k not in state and not _UNUSED.match(k))
    unexpected = sorted(k for k in state if k not in own and not _UNUSED.match(k))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint keys do not match the {family} policy: {len(missing)} missing "
            f"(e.g. {['model.' + k for k in missing[:8]]}), {len(unexpected)} unexpected "
            f"(e.g. {['model.' + k for k in unexpected[:8]]}). Check that policy.model_path is the base model the "
            "checkpoint was trained from and that the family is right."
        )
    shapes = [f"model.{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in state.items() if k in own and v.shape != own[k].shape]
    if shapes:
        raise CheckpointError(f"checkpoint shapes do not match the {family} policy: {shapes[:8]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def paper_state_dict(model: nn.Module, family: str, legacy: bool = False) -> dict[str, torch.Tensor]:
    """``model``'s weights in the paper's checkpoint layout (``model.``-prefixed, fp32); ``legacy`` writes
    the pre-4.52 backbone key names (PaliGemma / Qwen-VL) the released checkpoints use."""
    inverse = {
        "paligemma": [(r"^lm_head\.", "language_model.lm_head."), (r"^model\.language_model\.", "language_model.model."),
                      (r"^model\.vision_tower\.", "vision_tower."), (r"^model\.multi_modal_projector\.", "multi_modal_projector.")],
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
