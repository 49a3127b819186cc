"""The backbone families: which transformers class, which backbone wrapper, which base model."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    model_class_path: str  # "module:Class" in transformers
    backbone_class: str  # class name in policies.vlm4vla.backbones
    default_model: str  # the paper's base model (hub id)

    def model_class(self) -> Any:
        module, _, cls = self.model_class_path.partition(":")
        return getattr(importlib.import_module(module), cls)

    def backbone(self) -> Any:
        from policies.vlm4vla import backbones

        return getattr(backbones, self.backbone_class)


FAMILIES = {
    f.name: f
    for f in (
        Family("qwen25vl", "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl:Qwen2_5_VLForConditionalGeneration",
               "Qwen25VLBackbone", "Qwen/Qwen2.5-VL-3B-Instruct"),
        Family("qwen3vl", "transformers.models.qwen3_vl.modeling_qwen3_vl:Qwen3VLForConditionalGeneration",
               "Qwen3VLBackbone", "Qwen/Qwen3-VL-2B-Instruct"),
        Family("paligemma", "transformers.models.paligemma.modeling_paligemma:PaliGemmaForConditionalGeneration",
               "PaliGemmaBackbone", "google/paligemma-3b-pt-224"),
        Family("paligemma2", "transformers.models.paligemma.modeling_paligemma:PaliGemmaForConditionalGeneration",
               "PaliGemma2Backbone", "google/paligemma2-3b-pt-224"),
        Family("kosmos2", "transformers.models.kosmos2.modeling_kosmos2:Kosmos2ForConditionalGeneration",
               "Kosmos2Backbone", "microsoft/kosmos-2-patch14-224"),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown VLM4VLA backbone family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]
