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
from policies.vlm4vla import trainconfig
from policies.vlm4vla.checkpoint import CheckpointError, load_into, read_checkpoint_file
from policies.vlm4vla.families import Family, family_of_config, get_family
from policies.vlm4vla.head import FCDecoder, HeadSpec, VLM4VLAModel
from policies.vlm4vla.mapping import ActionMapper, get_mapping, libero_crop_benchmarks
from policies.vlm4vla.preprocess import centre_crop_resize
from policies.vlm4vla.trainconfig import TrainConfig, TrainConfigError

TINY = "tiny"  # model_path value that builds a tiny random-weight backbone (smoke tests, benchmarks)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device, paper_precision: str = "float32") -> torch.dtype:
    """``auto``: the precision the policy ran in for the paper (its training config's ``trainer.precision``,
    else the family's) on CUDA; float32 on CPU, where half precision is slow and the paper never ran."""
    if dtype == "auto":
        return _DTYPES[paper_precision] if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _base_source(family: Family, model_path: str) -> tuple[str, bool]:
    """(folder or hub id, is a local folder) of the base model; clear errors for paths that are not."""
    path = Path(model_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"base model folder {path} has no config.json: point policy.model_path at the Hugging Face "
                f"snapshot of {family.default_model} (the folder holding config.json and the tokenizer files)"
            )
        return str(path), True
    if _HUB_ID.match(model_path) and not model_path.startswith(("/", ".", "~")):
        return model_path, False
    raise FileNotFoundError(
        f"base model folder {path} does not exist: download {family.default_model} (e.g. "
        f"`huggingface-cli download {family.default_model} --local-dir DIR`) and set policy.model_path=DIR"
    )


def load_vlm(
    family: Family, model_path: str, dtype: torch.dtype, seed: int = 0, weights: bool = True
) -> tuple[Any, Any, str | None]:
    """(vlm, tokenizer, local folder or None) for a base-model folder, a hub id, or ``tiny``.

    ``weights=False`` builds the VLM from the folder's config.json alone (no weight files needed): for
    checkpoints that hold every backbone weight, as the paper's do."""
    if model_path == TINY:
        from policies.vlm4vla.tiny import tiny_model, tiny_tokenizer

        return tiny_model(family.name, seed=seed).to(dtype), tiny_tokenizer(family.name), None
    source, local = _base_source(family, model_path)
    from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerFast

    try:
        config = AutoConfig.from_pretrained(source)
        found = family_of_config(config)
        if family.name not in found:
            raise TrainConfigError(
                f"policy.model_path {source} is a {config.model_type!r} model "
                f"({'a ' + '/'.join(found) + ' base model' if found else 'not a VLM4VLA backbone'}), but the "
                f"policy config is for {family.name} ({family.default_model})"
            )
        if weights:
            vlm = family.model_class().from_pretrained(source, config=config, dtype=dtype)
        else:
            from transformers.initialization import no_init_weights

            with no_init_weights():  # every weight comes from the checkpoint
                vlm = family.model_class()._from_config(config, dtype=dtype)
        if local and (Path(source) / "tokenizer.json").is_file():
            # The file verbatim, as the transformers the paper ran loaded it (transformers 5's model-specific
            # tokenizer classes rebuild their own pre-tokenisation and ignore the file's).
            tokenizer = PreTrainedTokenizerFast.from_pretrained(source)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise FileNotFoundError(
            f"could not load base model {source!r} ({exc}). Without network access, download "
            f"{family.default_model} elsewhere and set policy.model_path to its folder."
        ) from exc
    return vlm.eval(), tokenizer, source if local else None


_STEP_IN_NAME = re.compile(r"(?:^|[^a-z])step[=_-]?(\d+)(?![0-9])", re.I)
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def resolve_checkpoint(checkpoint: str, step: int | None = None) -> str:
    """A checkpoint file from ``checkpoint`` (a file, or a run folder of ``epoch=N-step=M.pt`` files, where
    ``step`` picks one and None the highest step). Naming the folder avoids Hydra's quoting of '='."""
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        if step is not None:
            raise ValueError(f"policy.checkpoint_step={step} needs policy.checkpoint to be a folder, not {path}")
        return str(path)
    steps: dict[int, list[Path]] = {}
    for file in path.iterdir():
        match = _STEP_IN_NAME.search(file.stem)
        if file.is_file() and file.suffix in _CHECKPOINT_SUFFIXES and match:
            steps.setdefault(int(match.group(1)), []).append(file)
    if not steps:
        raise FileNotFoundError(f"no checkpoint named like epoch=N-step=M.pt in {path}")
    chosen = max(steps) if step is None else step
    if chosen not in steps:
        raise FileNotFoundError(f"no checkpoint at step {step} in {path}; steps there: {sorted(steps)}")
    if len(steps[chosen]) > 1:
        raise ValueError(f"several checkpoints at step {chosen} in {path}: {sorted(f.name for f in steps[chosen])}")
    return str(steps[chosen][0])


class VLM4VLAAgent(Agent):
    """A VLM4VLA policy (Qwen2.5-VL, Qwen3-VL, Qwen3-VL-MoE, PaliGemma 1/2 or Kosmos-2 backbone).

    The output mapping, chunk length and image preprocessing follow the benchmark given to
    :meth:`configure` (or ``benchmark`` here). ``chunk_size``/``execute_steps`` override the benchmark's
    (CALVIN 10/10, LIBERO 4/4, Bridge 4/4); ``statistics`` points at another q01/q99 JSON file.

    With a ``checkpoint``, the training config beside it (``<date>-project.json``, see
    :mod:`policies.vlm4vla.trainconfig`) gives the chunk length, action range, head width, window and
    precision; the head is sized from the checkpoint's shapes; the backbone is built from the base model's
    config.json and every weight comes from the checkpoint (the base folder needs no weight files).
    """

    # LIBERO: the paper crops the 256x256 render (obs["image_native"]); the other benchmarks have no such image.
    # Derived from the output table, so every benchmark with the LIBERO crop gets it.
    needs_native_image = libero_crop_benchmarks()

    def __init__(
        self,
        family: str,
        model_path: str = TINY,
        checkpoint: str | None = None,
        checkpoint_step: int | None = None,
        dtype: str = "auto",
        device: str = "auto",
        benchmark: str | None = None,
        chunk_size: int | None = None,
        execute_steps: int | None = None,
        statistics: str | None = None,
        trusted_checkpoint: bool = False,
        use_native_image: bool = True,
        center_crop: bool = True,
        deepstack: bool | None = None,
        head_width: int = 1024,
        action_scale: float | None = None,
        train_config: str | None = None,
        seed: int = 0,
    ) -> None:
        self.family = get_family(family)
        self.device = resolve_device(device)
        self.trusted_checkpoint = trusted_checkpoint
        self.use_native_image = use_native_image
        self.center_crop = center_crop
        self.statistics = statistics
        self._chunk_override = chunk_size
        self._execute_override = execute_steps
        self._warned_native = False
        self._train_config_option = train_config
        if checkpoint is not None:
            checkpoint = resolve_checkpoint(str(checkpoint), checkpoint_step)
        elif checkpoint_step is not None:
            raise ValueError("policy.checkpoint_step needs policy.checkpoint (the run's checkpoint folder)")
        self.checkpoint = checkpoint
        state, container = read_checkpoint_file(checkpoint, trusted_checkpoint) if checkpoint else (None, {})
        spec = HeadSpec.from_state(state) if state is not None else None
        self.train_config = self._find_train_config(checkpoint, container, spec)
        tc = self.train_config
        if tc is not None:
            self._check_train_config(tc, spec, chunk_size, action_scale, deepstack)
        self.action_range = self._action_range(tc, action_scale)
        if deepstack is None:
            deepstack = tc.deepstack() if tc is not None and tc.deepstack() is not None else self.family.name == "qwen3vl"
        self.deepstack = bool(deepstack)
        precision = tc.precision if tc is not None and tc.precision else self.family.paper_precision
        self.dtype = resolve_dtype(dtype, self.device, precision)
        # A checkpoint holds every backbone weight (the paper's do): build from config.json, then load it.
        from_config = state is not None and model_path != TINY
        vlm, tokenizer, folder = load_vlm(self.family, model_path, self.dtype, seed, weights=not from_config)
        self.backbone = self.family.backbone()(vlm, tokenizer, folder, deepstack=self.deepstack)
        hidden = self.backbone.hidden_size
        if spec is not None and spec.in_features != hidden:
            raise CheckpointError(
                f"the checkpoint's head reads {spec.in_features}-wide hidden states but the base model at "
                f"{model_path} has width {hidden}: policy.model_path must be the base model the checkpoint was "
                "trained from"
            )
        chunk = spec.chunk if spec is not None else chunk_size
        # Without a checkpoint or an explicit chunk size the head is sized for the benchmark at configure().
        self._head_fixed = chunk is not None
        if chunk is None:
            chunk = get_mapping(benchmark).chunk_size if benchmark else 10
        self._seed = seed
        self._head_width = head_width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = VLM4VLAModel(vlm, hidden, spec or HeadSpec.default(hidden, chunk, head_width))
        self.model.to(device=self.device, dtype=self.dtype).eval()
        if state is not None:
            load_into(self.model, state, self.family.name, require_backbone=from_config)
            del state
        self.chunk_size = chunk
        self.execute_steps = min(execute_steps or chunk, chunk)
        self.mapper: ActionMapper | None = None
        if benchmark:
            self.configure(benchmark, {})

    # ---- the training config ---------------------------------------------------------------------
    def _find_train_config(self, checkpoint: str | None, container: dict[str, Any], spec: HeadSpec | None) -> TrainConfig | None:
        option = self._train_config_option
        if option is not None and str(option).lower() == "none":
            return None
        if option:
            return trainconfig.read_file(option)
        if checkpoint is None:
            return None
        return trainconfig.find(checkpoint, container, spec.chunk if spec is not None else None)

    def _check_train_config(
        self, tc: TrainConfig, spec: HeadSpec | None, chunk_size: int | None, action_scale: float | None,
        deepstack: bool | None,
    ) -> None:
        where = f"the training config {tc.source}"
        problems = []
        if self.family.name not in tc.families():
            problems.append(
                f"it trained a {tc.model!r} model ({tc.backbone_class}), but the policy config is for {self.family.name}: "
                f"choose the policy config of that backbone"
            )
        if spec is not None and tc.chunk != spec.chunk:
            problems.append(f"fwd_pred_next_n is {tc.chunk} but the checkpoint's head predicts {spec.chunk} actions")
        if chunk_size is not None and chunk_size != tc.chunk:
            problems.append(f"policy.chunk_size={chunk_size} but the policy was trained to predict {tc.chunk}")
        if spec is not None and tc.head_width is not None and tc.head_width != spec.width:
            problems.append(f"act_head.hidden_size is {tc.head_width} but the checkpoint's head has width {spec.width}")
        if tc.head_type not in (None, "FCDecoder"):
            problems.append(f"act_head.type is {tc.head_type!r}; only FCDecoder heads are supported")
        if tc.window != 1:
            problems.append(f"window_size is {tc.window}; only single-frame policies (window 1) are supported")
        if tc.use_hand_rgb:
            problems.append("use_hand_rgb is true; only the static camera is supported")
        if action_scale is not None and tc.norm_action and not (
            np.isclose(tc.norm_min, -action_scale) and np.isclose(tc.norm_max, action_scale)
        ):
            problems.append(f"norm_min/norm_max are {tc.norm_min}/{tc.norm_max} but policy.action_scale={action_scale}")
        wanted = tc.deepstack()
        if deepstack is not None and wanted is not None and deepstack != wanted:
            problems.append(
                f"its backbone class {tc.backbone_class} {'feeds' if wanted else 'does not feed'} the deepstack features "
                f"but policy.deepstack={str(deepstack).lower()}"
            )
        if problems:
            raise TrainConfigError(
                f"{where} contradicts the chosen policy: " + "; ".join(problems)
                + ". (policy.train_config=FILE names another config; policy.train_config=none ignores it.)"
            )

    @staticmethod
    def _action_range(tc: TrainConfig | None, action_scale: float | None) -> tuple[float, float]:
        if tc is not None:
            return (tc.norm_min, tc.norm_max) if tc.norm_action else (-1.0, 1.0)
        scale = 0.65 if action_scale is None else float(action_scale)
        return -scale, scale

    # ---- Agent interface -------------------------------------------------------------------------
    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        lo, hi = self.action_range
        mapping = get_mapping(benchmark, execute_steps=self._execute_override, norm_min=lo, norm_max=hi)
        head_chunk = self.model.act_head.chunk
        if head_chunk != mapping.chunk_size and not self._head_fixed:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self._seed)
                head = FCDecoder(HeadSpec.default(self.backbone.hidden_size, mapping.chunk_size, self._head_width))
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
            norm_min=lo, norm_max=hi,
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
        """Swap in another checkpoint of the same run (sweeps); its training config is checked too."""
        state, container = read_checkpoint_file(checkpoint, self.trusted_checkpoint)
        spec = HeadSpec.from_state(state)
        if spec != self.model.act_head.spec:
            raise CheckpointError(
                f"{checkpoint}: its head {spec} differs from the loaded policy's {self.model.act_head.spec}"
            )
        tc = self._find_train_config(checkpoint, container, spec)
        if tc is not None:
            self._check_train_config(tc, spec, self._chunk_override, None, None)
            if self._action_range(tc, None) != self.action_range:
                raise TrainConfigError(f"{tc.source}: norm_min/norm_max differ from the loaded policy's {self.action_range}")
        load_into(self.model, state, self.family.name)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        self.backbone = None  # type: ignore[assignment]

    # ---- helpers -----------------------------------------------------------------------------------
    def _images(self, obs: Observation) -> np.ndarray:
        assert self.mapper is not None
        crop = self.mapper.mapping.libero_crop and self.center_crop
        key = "image"
        if self.use_native_image and crop:
            if "image_native" in obs:
                key = "image_native"
            elif not self._warned_native:
                warnings.warn("use_native_image is set but the env gives no 'image_native'; using 'image'", stacklevel=3)
                self._warned_native = True
        images = np.asarray(obs[key])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"obs[{key!r}] must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
        if crop:
            images = centre_crop_resize(images, 224)
        return images
