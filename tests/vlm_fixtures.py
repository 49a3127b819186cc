"""Test helpers for the VLM4VLA policies: tiny random agents (cached per family) and test images."""

from __future__ import annotations

import functools

import numpy as np

FAMILY_NAMES = ("qwen25vl", "qwen3vl", "qwen3vlmoe", "paligemma", "paligemma2", "kosmos2")
INSTRUCTIONS = [
    "put both the alphabet soup and the tomato sauce in the basket",
    "open the drawer",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "go",
]


def images(batch: int, seed: int = 0, size: int = 224) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


@functools.cache
def tiny_agent(family: str, benchmark: str = "calvin", seed: int = 0):
    """A tiny random-weight agent on CPU fp32 (cached: build once per test session)."""
    from policies.vlm4vla import VLM4VLAAgent

    agent = VLM4VLAAgent(family, model_path="tiny", device="cpu", dtype="float32", benchmark=benchmark, seed=seed)
    # A zero action query (the paper's init) makes every row look alike; a random one exercises more.
    import torch

    with torch.no_grad():
        agent.model.action_token.normal_(generator=torch.Generator().manual_seed(seed))
    return agent
