"""VLM4VLA policies: a pretrained VLM backbone, one learned action query and an MLP head (FCDecoder)."""

from policies.vlm4vla.agent import VLM4VLAAgent
from policies.vlm4vla.families import FAMILIES

__all__ = ["FAMILIES", "VLM4VLAAgent"]
