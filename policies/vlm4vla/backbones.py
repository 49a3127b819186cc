"""Backbones: build each family's input sequence the way the paper does, splice in the action token right
after each row's last real token, and return the last layer's hidden state there.

Every backbone embeds by hand and calls only the language model (never the VLM's top-level ``forward``), so
the sequence, the mask and the positions are ours. Rows are right-padded after the action token; with causal
attention nothing a row's action token sees depends on the other rows, so a batch gives the same actions as
single calls.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

QWEN_SYSTEM = "You are a helpful assistant."
QWEN_QUESTION = "What action should the robotic arm take to {instruction}"
# The paper's Qwen processors use min_pixels = 256 * 28 * 28: a 224 image is upscaled to 448.
QWEN_MIN_PIXELS = 200704
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _pad_and_splice(rows: list[torch.Tensor], action_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Append the action token to each row (L_i, D), right-pad: (B, L, D) embeds, (B, L) mask, (B,) action index."""
    lengths = [r.shape[0] + 1 for r in rows]
    width = max(lengths)
    dim = rows[0].shape[1]
    embeds = rows[0].new_zeros((len(rows), width, dim))
    mask = torch.zeros((len(rows), width), dtype=torch.long, device=rows[0].device)
    for i, row in enumerate(rows):
        embeds[i, : row.shape[0]] = row
        embeds[i, row.shape[0]] = action_token.to(row.dtype)
        mask[i, : lengths[i]] = 1
    index = torch.tensor([n - 1 for n in lengths], device=rows[0].device)
    return embeds, mask, index


def _gather(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]


def _normalise(images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, size, size); bicubic resize (PIL) only if needed."""
    if images.shape[1:3] != (size, size):
        from PIL import Image

        images = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images])
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device=device, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return ((x - m) / s).to(dtype)


class Backbone:
    """Wraps a Hugging Face VLM. ``encode`` returns the hidden state at the action token, (B, D)."""

    family: str = ""

    def __init__(self, vlm: nn.Module, tokenizer: Any, model_path: str | None = None, **options: Any) -> None:
        self.vlm = vlm
        self.tokenizer = tokenizer
        self.options = options

    @property
    def hidden_size(self) -> int:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.vlm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vlm.parameters()).dtype

    def encode(self, images: np.ndarray, instructions: Sequence[str], action_token: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _ids(self, text: str, special: bool = False) -> torch.Tensor:
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        return torch.tensor(ids, dtype=torch.long, device=self.device)


class QwenBackbone(Backbone):
    """Qwen2.5-VL and Qwen3-VL: chat prompt with image pads, processor upscaling 224 -> 448."""

    default_mean: tuple[float, ...] = CLIP_MEAN
    default_std: tuple[float, ...] = CLIP_STD

    def __init__(self, vlm: nn.Module, tokenizer: Any, model_path: str | None = None, **options: Any) -> None:
        super().__init__(vlm, tokenizer, model_path, **options)
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

        vcfg = vlm.config.vision_config
        kwargs: dict[str, Any] = {
            "patch_size": vcfg.patch_size, "merge_size": vcfg.spatial_merge_size,
            "temporal_patch_size": vcfg.temporal_patch_size,
            "image_mean": list(self.default_mean), "image_std": list(self.default_std),
        }
        saved = Path(model_path) / "preprocessor_config.json" if model_path else None
        if saved is not None and saved.is_file():
            data = json.loads(saved.read_text())
            kwargs.update({k: data[k] for k in ("image_mean", "image_std") if k in data})
        kwargs["size"] = {"shortest_edge": QWEN_MIN_PIXELS, "longest_edge": 16384 * 28 * 28}
        self.processor = Qwen2VLImageProcessorPil(**kwargs)
        self.image_token_id = vlm.config.image_token_id
        merge = vcfg.spatial_merge_size
        self._merge_unit = merge * merge

    @property
    def hidden_size(self) -> int:
        return self.vlm.config.text_config.hidden_size

    def _prompt(self, n_image_tokens: int, instruction: str) -> str:
        return (
            f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>"
            + "<|image_pad|>" * n_image_tokens
            + "<|vision_end|>" + QWEN_QUESTION.format(instruction=instruction) + "<|im_end|>\n<|im_start|>assistant\n"
        )

    def _vision(self, pixel_values: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.vlm.model.visual(pixel_values.to(self.dtype), grid_thw=grid, return_dict=True)
        return out.pooler_output, list(getattr(out, "deepstack_features", None) or [])

    def _positions(self, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, images: np.ndarray, instructions: Sequence[str], action_token: torch.Tensor) -> torch.Tensor:
        batch = self.processor(images=list(images), return_tensors="pt")
        grid = batch["image_grid_thw"].to(self.device)
        feats, deepstack = self._vision(batch["pixel_values"].to(self.device), grid)
        counts = (grid.prod(-1) // self._merge_unit).tolist()
        embed = self.vlm.model.language_model.embed_tokens
        rows, visual_rows = [], []
        start = 0
        for n, text in zip(counts, instructions, strict=True):
            ids = self._ids(self._prompt(n, text))
            row = embed(ids)
            is_image = ids == self.image_token_id
            row = row.masked_scatter(is_image[:, None], feats[start : start + n].to(row.dtype))
            rows.append(row)
            visual_rows.append(is_image)
            start += n
        embeds, mask, index = _pad_and_splice(rows, action_token)
        kwargs: dict[str, Any] = {}
        if deepstack and self.options.get("deepstack", self.family == "qwen3vl"):
            visual = torch.zeros_like(mask, dtype=torch.bool)
            for i, v in enumerate(visual_rows):
                visual[i, : v.shape[0]] = v
            kwargs = {"visual_pos_masks": visual, "deepstack_visual_embeds": deepstack}
        out = self.vlm.model.language_model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=self._positions(mask), use_cache=False, **kwargs
        )
        return _gather(out.last_hidden_state, index)


class Qwen25VLBackbone(QwenBackbone):
    family = "qwen25vl"

    def _positions(self, mask: torch.Tensor) -> torch.Tensor:
        # The paper: cumsum(mask) - 1, the same index on all three rotary axes.
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return pos.unsqueeze(0).expand(3, -1, -1)


class Qwen3VLBackbone(QwenBackbone):
    family = "qwen3vl"
    default_mean = (0.5, 0.5, 0.5)
    default_std = (0.5, 0.5, 0.5)

    def _positions(self, mask: torch.Tensor) -> torch.Tensor:
        # The paper: arange, the same index on all three rotary axes.
        pos = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
        return pos.unsqueeze(0).expand(3, -1, -1)


class Qwen3VLMoeBackbone(Qwen3VLBackbone):
    """Qwen3-VL-30B-A3B (mixture of experts): the paper's ``RoboQwen3VLMOE`` is the Qwen3-VL sequence, arange
    positions, and passes no deepstack features to the text model (its deepstack lines are commented out)."""

    family = "qwen3vlmoe"


class PaliGemmaBackbone(Backbone):
    """PaliGemma 1 and 2: image features first, then ``<bos>{instruction}\\n``; causal attention."""

    family = "paligemma"

    def __init__(self, vlm: nn.Module, tokenizer: Any, model_path: str | None = None, **options: Any) -> None:
        super().__init__(vlm, tokenizer, model_path, **options)
        # transformers 5 defaults PaliGemma's text model to bidirectional attention, which lets tokens see
        # the future; the paper's training was causal.
        lm = vlm.model.language_model
        lm.config.use_bidirectional_attention = False
        for module in lm.modules():
            if hasattr(module, "is_causal"):
                module.is_causal = True
        self.image_size = vlm.config.vision_config.image_size
        self.mean = options.get("image_mean") or (0.5, 0.5, 0.5)
        self.std = options.get("image_std") or (0.5, 0.5, 0.5)

    @property
    def hidden_size(self) -> int:
        return self.vlm.config.text_config.hidden_size

    def encode(self, images: np.ndarray, instructions: Sequence[str], action_token: torch.Tensor) -> torch.Tensor:
        model = self.vlm.model
        pixels = _normalise(images, self.image_size, self.mean, self.std, self.device, self.dtype)
        feats = model.multi_modal_projector(model.vision_tower(pixels).last_hidden_state)
        # The paper's (transformers < 4.52) scaling: divide by sqrt of the top-level hidden size, and Gemma
        # multiplied every input embedding by sqrt(text hidden); transformers 5 does that only inside the
        # token lookup, so image features and the action token get it by hand.
        normaliser = torch.tensor(self.hidden_size**0.5, dtype=feats.dtype, device=feats.device)
        feats = feats / (self.vlm.config.hidden_size**0.5) * normaliser
        embed = model.language_model.embed_tokens
        bos = self.tokenizer.bos_token_id
        rows = []
        for i, text in enumerate(instructions):
            ids = torch.cat([torch.tensor([bos], device=self.device), self._ids(f"{text}\n")])
            rows.append(torch.cat([feats[i], embed(ids)]))
        embeds, mask, index = _pad_and_splice(rows, action_token * normaliser.to(action_token.dtype))
        out = model.language_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return _gather(out.last_hidden_state, index)


class PaliGemma2Backbone(PaliGemmaBackbone):
    family = "paligemma2"


class Kosmos2Backbone(Backbone):
    """Kosmos-2: 64 image features, then ``<s><image><image_pad></image><p>{instruction}\\n</p>``."""

    family = "kosmos2"

    def __init__(self, vlm: nn.Module, tokenizer: Any, model_path: str | None = None, **options: Any) -> None:
        super().__init__(vlm, tokenizer, model_path, **options)
        self.image_size = vlm.config.vision_config.image_size
        self.mean = options.get("image_mean") or CLIP_MEAN
        self.std = options.get("image_std") or CLIP_STD

    @property
    def hidden_size(self) -> int:
        return self.vlm.config.text_config.embed_dim

    def encode(self, images: np.ndarray, instructions: Sequence[str], action_token: torch.Tensor) -> torch.Tensor:
        pixels = _normalise(images, self.image_size, self.mean, self.std, self.device, self.dtype)
        vision = self.vlm.vision_model(pixel_values=pixels, return_dict=True)
        # As the paper: the whole last hidden state through post_layernorm, L2-normalised, then projected.
        feats = nn.functional.normalize(self.vlm.vision_model.model.post_layernorm(vision.last_hidden_state), dim=-1)
        feats = self.vlm.image_to_text_projection(feats)[0]
        text_model = self.vlm.text_model.model
        embed = text_model.embed_tokens
        rows = []
        for i, text in enumerate(instructions):
            ids = self._ids(f"<s><image><image_pad></image><p>{text}\n</p>", special=True)
            rows.append(torch.cat([feats[i], embed(ids)]))
        embeds, mask, index = _pad_and_splice(rows, action_token)
        # The text transformer scales inputs_embeds and adds positions itself (Kosmos-2's top-level forward
        # insists on pixel_values, so it is bypassed).
        out = text_model(inputs_embeds=embeds, attention_mask=mask, use_cache=False)
        return _gather(out.last_hidden_state, index)


def image_token_count(backbone: Backbone) -> int:
    """Image features per image (for reporting)."""
    if isinstance(backbone, QwenBackbone):
        side = math.isqrt(QWEN_MIN_PIXELS) // backbone.vlm.config.vision_config.patch_size
        return side * side // backbone._merge_unit
    return -1
