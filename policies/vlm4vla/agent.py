"""The VLM4VLA agent: a backbone + action query + FCDecoder head behind the project's Agent interface."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.base import Agent, Observation
from policies.vlm4vla.checkpoint import chunk_of, load_into, read_checkpoint
from policies.vlm4vla.families import Family, get_family
from policies.vlm4vla.head import FCDecoder, VLM4VLAModel
from policies.vlm4vla.mapping import ActionMapper, get_mapping
from policies.vlm4vla.preprocess import centre_crop_resize

TINY = "tiny"  # model_path value that builds a tiny random-weight backbone (smoke tests, benchmarks)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def load_vlm(family: Family, model_path: str, dtype: torch.dtype, seed: int = 0) -> tuple[Any, Any, str | None]:
    """(vlm, tokenizer, local folder or None) for a base-model folder, a hub id, or ``tiny``."""
    if model_path == TINY:
        from policies.vlm4vla.tiny import tiny_model, tiny_tokenizer

        return tiny_model(family.name, seed=seed).to(dtype), tiny_tokenizer(family.name), None
    path = Path(model_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"base model folder {path} has no config.json: point policy.model_path at the Hugging Face "
                f"snapshot of {family.default_model} (the folder holding config.json and the weights)"
            )
        source = str(path)
    elif _HUB_ID.match(model_path) and not model_path.startswith(("/", ".", "~")):
        source = model_path
    else:
        raise FileNotFoundError(
            f"base model folder {path} does not exist: download {family.default_model} (e.g. "
            f"`huggingface-cli download {family.default_model} --local-dir DIR`) and set policy.model_path=DIR"
        )
    from transformers import AutoTokenizer

    try:
        vlm = family.model_class().from_pretrained(source, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise FileNotFoundError(
            f"could not load base model {source!r} ({exc}). Without network access, download "
            f"{family.default_model} elsewhere and set policy.model_path to its folder."
        ) from exc
    return vlm.eval(), tokenizer, source if path.exists() else None


class VLM4VLAAgent(Agent):
    """A VLM4VLA policy (Qwen2.5-VL, Qwen3-VL, PaliGemma 1/2 or Kosmos-2 backbone).

    The output mapping, chunk length and image preprocessing follow the benchmark given to
    :meth:`configure` (or ``benchmark`` here). ``chunk_size``/``execute_steps`` override the benchmark's
    (CALVIN 10/10, LIBERO 4/4, Bridge 4/4); ``statistics`` points at another q01/q99 JSON file.
    """

    def __init__(
        self,
        family: str,
        model_path: str = TINY,
        checkpoint: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        benchmark: str | None = None,
        chunk_size: int | None = None,
        execute_steps: int | None = None,
        statistics: str | None = None,
        trusted_checkpoint: bool = False,
        use_native_image: bool = False,
        deepstack: bool = False,
        head_width: int = 1024,
        action_scale: float = 0.65,
        seed: int = 0,
    ) -> None:
        self.family = get_family(family)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.trusted_checkpoint = trusted_checkpoint
        self.use_native_image = use_native_image
        self.statistics = statistics
        self.action_scale = action_scale
        self._chunk_override = chunk_size
        self._execute_override = execute_steps
        self._warned_native = False
        state = read_checkpoint(checkpoint, trusted_checkpoint) if checkpoint else None
        vlm, tokenizer, folder = load_vlm(self.family, model_path, self.dtype, seed)
        self.backbone = self.family.backbone()(vlm, tokenizer, folder, deepstack=deepstack)
        chunk = chunk_size or (chunk_of(state) if state is not None else None)
        # Without a checkpoint or an explicit chunk size the head is sized for the benchmark at configure().
        self._head_fixed = chunk is not None
        if chunk is None:
            chunk = get_mapping(benchmark).chunk_size if benchmark else 10
        self._seed = seed
        self._head_width = head_width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = VLM4VLAModel(vlm, self.backbone.hidden_size, chunk, head_width)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        if state is not None:
            load_into(self.model, state, self.family.name)
        self.chunk_size = chunk
        self.execute_steps = min(execute_steps or chunk, chunk)
        self.mapper: ActionMapper | None = None
        if benchmark:
            self.configure(benchmark, {})

    # ---- Agent interface -------------------------------------------------------------------------
    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        mapping = get_mapping(benchmark, execute_steps=self._execute_override, scale=self.action_scale)
        head_chunk = self.model.act_head.chunk
        if head_chunk != mapping.chunk_size and not self._head_fixed:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed)
                head = FCDecoder(self.backbone.hidden_size, mapping.chunk_size, self._head_width)
            self.model.act_head = head.to(device=self.device, dtype=self.dtype).eval()
            head_chunk = mapping.chunk_size
        if head_chunk != mapping.chunk_size and self._chunk_override is None:
            raise ValueError(
                f"the policy head predicts {head_chunk} actions per query but {benchmark} under VLM4VLA uses "
                f"{mapping.chunk_size}: use a checkpoint trained for {benchmark}, or set policy.chunk_size="
                f"{head_chunk} to run it anyway"
            )
        mapping = get_mapping(
            benchmark, chunk_size=head_chunk, execute_steps=min(self._execute_override or mapping.execute_steps, head_chunk),
            scale=self.action_scale,
        )
        self.mapper = ActionMapper(mapping, self.statistics)
        self.chunk_size = head_chunk
        self.execute_steps = mapping.execute_steps

    def reset(self, env_ids: Sequence[int]) -> None:
        if self.mapper is not None:
            self.mapper.reset(env_ids)

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if self.mapper is None:
            raise RuntimeError("call agent.configure(benchmark, protocol) before act() to choose the output mapping")
        images = self._images(obs)
        language = list(obs["language"])
        if not (len(images) == len(language) == len(env_ids)):
            raise ValueError(
                f"batch sizes differ: {len(images)} images, {len(language)} instructions, {len(env_ids)} env ids"
            )
        arm, grip = self.predict(images, language)
        return self.mapper(arm, grip, env_ids)

    def predict(self, images: np.ndarray, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Raw head outputs for preprocessed images: arm tanh (B, n, 6) and gripper logits (B, n)."""
        with torch.inference_mode():
            hidden = self.backbone.encode(images, instructions, self.model.action_token)
            arm, grip = self.model.act_head(hidden)
        return arm.float().cpu().numpy(), grip.float().cpu().numpy()

    def load_weights(self, checkpoint: str) -> None:
        state = read_checkpoint(checkpoint, self.trusted_checkpoint)
        load_into(self.model, state, self.family.name)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self.backbone = None  # type: ignore[assignment]

    # ---- helpers -----------------------------------------------------------------------------------
    def _images(self, obs: Observation) -> np.ndarray:
        assert self.mapper is not None
        key = "image"
        if self.use_native_image:
            if "image_native" in obs:
                key = "image_native"
            elif not self._warned_native:
                warnings.warn("use_native_image is set but the env gives no 'image_native'; using 'image'", stacklevel=3)
                self._warned_native = True
        images = np.asarray(obs[key])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"obs[{key!r}] must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
        if self.mapper.mapping.libero_crop:
            images = centre_crop_resize(images, 224)
        return images
