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
    model_types: tuple[str, ...]  # config.json "model_type" of the base model
    paper_precision: str  # trainer.precision of the paper's configs for this backbone (torch dtype name)
    text_model_types: tuple[str, ...] = ()  # text_config.model_type, where it tells families apart

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
               "Qwen25VLBackbone", "Qwen/Qwen2.5-VL-3B-Instruct", ("qwen2_5_vl",), "bfloat16"),
        Family("qwen3vl", "transformers.models.qwen3_vl.modeling_qwen3_vl:Qwen3VLForConditionalGeneration",
               "Qwen3VLBackbone", "Qwen/Qwen3-VL-2B-Instruct", ("qwen3_vl",), "bfloat16"),
        Family("qwen3vlmoe",
               "transformers.models.qwen3_vl_moe.modeling_qwen3_vl_moe:Qwen3VLMoeForConditionalGeneration",
               "Qwen3VLMoeBackbone", "Qwen/Qwen3-VL-30B-A3B-Instruct", ("qwen3_vl_moe",), "bfloat16"),
        # The paper's PaliGemma and Kosmos-2 configs train and evaluate in fp16 (trainer.precision "16").
        Family("paligemma", "transformers.models.paligemma.modeling_paligemma:PaliGemmaForConditionalGeneration",
               "PaliGemmaBackbone", "google/paligemma-3b-pt-224", ("paligemma",), "float16", ("gemma",)),
        Family("paligemma2", "transformers.models.paligemma.modeling_paligemma:PaliGemmaForConditionalGeneration",
               "PaliGemma2Backbone", "google/paligemma2-3b-pt-224", ("paligemma",), "float16", ("gemma2",)),
        Family("kosmos2", "transformers.models.kosmos2.modeling_kosmos2:Kosmos2ForConditionalGeneration",
               "Kosmos2Backbone", "microsoft/kosmos-2-patch14-224", ("kosmos-2",), "float16"),
    )
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"unknown VLM4VLA backbone family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


def family_of_config(config: Any) -> list[str]:
    """The families whose base model has this transformers config."""
    model_type = getattr(config, "model_type", None)
    text = getattr(getattr(config, "text_config", None), "model_type", None)
    return [f.name for f in FAMILIES.values()
            if model_type in f.model_types and (not f.text_model_types or text in f.text_model_types)]
