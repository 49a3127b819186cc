"""Break the image path or the action mapping on purpose: a policy that really reads pixels must then fail.

Perturbations (names for ``perturb=[...]``):

- ``flip_ud``: the images upside down (rows reversed)
- ``rot90``: the images rotated by 90 degrees (counter-clockwise)
- ``swap_rb``: the red and blue channels swapped (RGB read as BGR)
- ``invert_gripper``: the gripper command negated (+1 open <-> -1 close)

:class:`PerturbedAgent` applies them around any agent (``_target_: policies.perturb.PerturbedAgent`` with the
wrapped agent's config under ``policy``); :class:`policies.pixel.agent.PixelAgent` takes them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from policies.base import Agent, Observation

IMAGE_PERTURBATIONS = ("flip_ud", "rot90", "swap_rb")
ACTION_PERTURBATIONS = ("invert_gripper",)
PERTURBATIONS = IMAGE_PERTURBATIONS + ACTION_PERTURBATIONS
IMAGE_KEYS = ("image", "wrist_image")


def check_perturbations(names: Sequence[str] | str | None) -> tuple[str, ...]:
    if names is None:
        return ()
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown:
        raise ValueError(f"unknown perturbation(s) {unknown}; known: {list(PERTURBATIONS)}")
    return names


def perturb_images(images: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """A batch (B, H, W, 3) with the image perturbations of ``names`` applied in order (square images keep
    their shape under ``rot90``)."""
    out = images
    for name in names:
        if name == "flip_ud":
            out = out[:, ::-1]
        elif name == "rot90":
            out = np.rot90(out, k=1, axes=(1, 2))
        elif name == "swap_rb":
            out = out[..., ::-1]
    return np.ascontiguousarray(out)


def perturb_actions(chunks: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """Action chunks (B, chunk, 7) with the action perturbations of ``names`` applied."""
    if "invert_gripper" in names:
        chunks = chunks.copy()
        chunks[..., 6] = -chunks[..., 6]
    return chunks


class PerturbedAgent(Agent):
    """Any agent (``policy``: its config, with ``_target_``) seen through the perturbations ``perturb``."""

    def __init__(self, policy: dict[str, Any], perturb: Sequence[str] = ()) -> None:
        from hydra.utils import instantiate

        self.perturb = check_perturbations(perturb)
        self.inner: Agent = instantiate(dict(policy), _convert_="all")
        self._copy_chunking()

    def _copy_chunking(self) -> None:
        self.chunk_size = self.inner.chunk_size
        self.execute_steps = self.inner.execute_steps
        self.needs_privileged = self.inner.needs_privileged

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        self.inner.configure(benchmark, protocol)
        self._copy_chunking()

    def reset(self, env_ids: Sequence[int]) -> None:
        self.inner.reset(env_ids)

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        seen = dict(obs)
        for key in IMAGE_KEYS:
            if key in seen:
                seen[key] = perturb_images(np.asarray(seen[key]), self.perturb)
        return perturb_actions(np.asarray(self.inner.act(seen, env_ids)), self.perturb)

    def episode_info(self, env_id: int) -> dict[str, Any]:
        return self.inner.episode_info(env_id)

    def load_weights(self, checkpoint: str) -> None:
        self.inner.load_weights(checkpoint)

    def close(self) -> None:
        self.inner.close()
