"""``policy=pixel``: the pixel policy as a harness agent (reads ``image`` and ``language`` only).

Preprocessing is the recording's: the contract image is resized to the checkpoint's image size with OpenCV's
area interpolation (``vla_gym.images.resize_square``, as ``harness.record`` stores it). The arm actions are
the network's; the gripper is the sign of its output (+1 open / -1 close). ``perturb`` breaks the image path
or the action mapping on purpose (see :mod:`policies.perturb`), for tests that a score depends on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from policies.base import Agent, Observation
from policies.perturb import check_perturbations, perturb_actions, perturb_images
from policies.pixel.model import PixelPolicyNet, words_vector
from policies.pixel.train import CHECKPOINT_FORMAT, Recipe, build_model
from tasks.protocol import digest_of
from vla_gym.images import resize_square

log = logging.getLogger(__name__)


def read_checkpoint(path: str) -> dict[str, Any]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pixel-policy checkpoint (format {CHECKPOINT_FORMAT})")
    return state


class PixelAgent(Agent):
    """The small CNN policy of :mod:`policies.pixel`; ``checkpoint`` may be left out for sweeps."""

    def __init__(
        self,
        checkpoint: str | None = None,
        chunk_size: int = 8,
        execute_steps: int = 8,
        perturb: Sequence[str] = (),
        threads: int | None = None,
    ) -> None:
        self.chunk_size = int(chunk_size)
        self.execute_steps = int(execute_steps)
        self.perturb = check_perturbations(perturb)
        self.threads = threads
        self.model: PixelPolicyNet | None = None
        self.step: int | None = None
        self.protocol_digest: str | None = None
        self._run_digest: str | None = None
        if checkpoint:
            self.load_weights(checkpoint)

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        self._run_digest = digest_of(protocol)
        self._check_protocol()

    def _check_protocol(self) -> None:
        if self._run_digest and self.protocol_digest and self._run_digest != self.protocol_digest:
            log.warning("the pixel checkpoint was trained on protocol digest %s, this run's is %s",
                        self.protocol_digest, self._run_digest)  # fmt: skip

    def load_weights(self, checkpoint: str) -> None:
        state = read_checkpoint(checkpoint)
        recipe = Recipe(**state["recipe"])
        if recipe.chunk != self.chunk_size:
            raise ValueError(f"{checkpoint} predicts chunks of {recipe.chunk}, the agent is set to {self.chunk_size}")
        model = build_model(recipe, int(state["image_size"]))
        model.load_state_dict(state["state_dict"])
        model.eval()
        self.model, self.step = model, int(state["step"])
        self.protocol_digest = state.get("protocol_digest")
        self._check_protocol()

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("PixelAgent has no weights: give checkpoint= or call load_weights()")
        size = self.model.image_size
        seen = perturb_images(np.asarray(obs["image"], dtype=np.uint8), self.perturb)  # before any preprocessing
        images = np.stack([resize_square(image, size, "area") for image in seen])
        words = words_vector(list(obs["language"]))
        threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                chunk = self.model(torch.from_numpy(images), torch.from_numpy(words)).numpy().astype(np.float32)
        finally:
            torch.set_num_threads(threads)
        chunk[..., 6] = np.where(chunk[..., 6] >= 0.0, 1.0, -1.0)
        return perturb_actions(chunk, self.perturb)
