"""``policy=openvla`` (weights through transformers' remote code) and ``policy=openvla_rest`` (OpenVLA's own
REST ``/act`` server).

OpenVLA predicts one action per query: the prompt ``In: What action should the robot take to {instruction}?
\\nOut:``, 7 greedy tokens, each token -> one of 256 bins over [-1, 1] (bin centres), un-normalised per dimension
with the dataset's 1st/99th percentiles (``unnorm_key`` picks the dataset; masked dimensions - the gripper -
stay as they are). The gripper comes out in [0, 1] with 1 = open and maps to the contract by thresholding at
0.5 (``binarize``, as OpenVLA's LIBERO and SimplerEnv evaluations do) or linearly (``zero_one``). LIBERO's
OpenVLA was fine-tuned on centre-cropped images (90% of the area), so the crop is on for LIBERO.
The unnorm key and crop per benchmark live in one place, ``conf/policy/base/openvla.yaml`` (see
:mod:`policies.tables`). The contract's rotation form is each benchmark's training-data form, so the arm
dimensions pass unchanged.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from policies.base import Agent, Observation, batch_size
from policies.gripper import map_gripper
from policies.tables import merged_table, table_entry
from policies.wire import AgentConnectionError, RemotePolicyError

log = logging.getLogger(__name__)

ACTION_DIM = 7
N_BINS = 256
GRIPPER_MODES = ("binarize", "zero_one")
#: conf/policy/<TABLE>.yaml holds the per-benchmark table of both OpenVLA agents
TABLE = "base/openvla"
# Llama-2's "empty" token: OpenVLA's predict_action appends it to the prompt before generating
EMPTY_TOKEN_ID = 29871


def build_prompt(instruction: str) -> str:
    return f"In: What action should the robot take to {instruction.lower()}?\nOut:"


def center_crop(image: np.ndarray, area: float = 0.9) -> np.ndarray:
    """Crop the centre ``area`` fraction of the image (same aspect) and resize back (bilinear)."""
    if not 0.0 < area <= 1.0:
        raise ValueError(f"crop area must be in (0, 1], got {area}")
    height, width = image.shape[:2]
    scale = float(np.sqrt(area))
    box = ((1 - scale) / 2 * width, (1 - scale) / 2 * height, (1 + scale) / 2 * width, (1 + scale) / 2 * height)
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.asarray(pil.resize((width, height), resample=Image.Resampling.BILINEAR, box=box))


def tokens_to_normalized(token_ids: np.ndarray, vocab_size: int, n_bins: int = N_BINS) -> np.ndarray:
    """OpenVLA's action de-tokeniser: token ``vocab_size - k`` is bin ``k - 1`` (clipped), valued at its centre."""
    bins = np.linspace(-1.0, 1.0, n_bins)
    centers = (bins[:-1] + bins[1:]) / 2.0
    index = np.clip(vocab_size - np.asarray(token_ids, dtype=np.int64) - 1, 0, centers.shape[0] - 1)
    return centers[index]


def unnormalize(normalized: np.ndarray, q01: Sequence[float], q99: Sequence[float], mask: Sequence[bool] | None) -> np.ndarray:
    """``0.5 (a + 1) (q99 - q01) + q01`` where ``mask`` is true; unchanged elsewhere."""
    low, high = np.asarray(q01, dtype=np.float64), np.asarray(q99, dtype=np.float64)
    keep = np.ones_like(low, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    return np.where(keep, 0.5 * (np.asarray(normalized) + 1.0) * (high - low) + low, normalized)


def gripper_to_contract(actions: np.ndarray, mode: str) -> np.ndarray:
    """Map OpenVLA's gripper ([0, 1], 1 = open) to the contract's +1 open / -1 close."""
    if mode == "binarize":
        out = np.array(actions, dtype=np.float32, copy=True)
        out[..., 6] = np.where(out[..., 6] > 0.5, 1.0, -1.0)
        return out
    if mode == "zero_one":
        return map_gripper(actions, "zero_one")
    raise ValueError(f"gripper must be one of {GRIPPER_MODES}, got {mode!r}")


class _OpenVLABase(Agent):
    """What both OpenVLA agents share: per-benchmark unnorm key, crop and gripper mapping; one action a query.

    ``benchmarks``: entries merged over the table of ``conf/policy/base/openvla.yaml``, each
    ``{unnorm_key: <dataset key or None>, center_crop: <bool>}``."""

    chunk_size = 1
    execute_steps = 1

    def __init__(
        self,
        benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
        crop_area: float = 0.9,
        gripper: str = "binarize",
    ) -> None:
        if gripper not in GRIPPER_MODES:
            raise ValueError(f"gripper must be one of {GRIPPER_MODES}, got {gripper!r}")
        self.benchmarks = merged_table(TABLE, benchmarks)
        self.crop_area = float(crop_area)
        self.gripper = gripper
        self.benchmark: str | None = None
        self.unnorm_key: str | None = None
        self.crop = False

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        entry = table_entry(self.benchmarks, benchmark, "OpenVLA", TABLE)
        key = entry.get("unnorm_key")
        if key is None:
            raise KeyError(
                f"no OpenVLA unnorm_key for {benchmark!r}: set policy.benchmarks.{benchmark}.unnorm_key=<dataset key "
                f"of the checkpoint's statistics> (conf/policy/{TABLE}.yaml names none for it)"
            )
        crop = entry.get("center_crop")
        if not isinstance(crop, bool):
            # no silent default: a LIBERO fine-tune run uncropped still runs, just worse
            raise ValueError(
                f"policy.benchmarks.{benchmark}.center_crop must be true or false, got {crop!r} (true for "
                f"checkpoints fine-tuned with random-crop augmentation, as OpenVLA's LIBERO ones)"
            )
        self.benchmark, self.unnorm_key, self.crop = benchmark, str(key), crop

    def _image(self, obs: Observation, row: int) -> np.ndarray:
        image = np.asarray(obs["image"][row])
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"'image' rows must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return center_crop(image, self.crop_area) if self.crop else image

    def _predict(self, image: np.ndarray, instruction: str) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if self.benchmark is None:
            raise RuntimeError("call configure(benchmark, protocol) before act()")
        rows = []
        for row in range(batch_size(obs)):
            action = np.asarray(self._predict(self._image(obs, row), str(obs["language"][row])), dtype=np.float64)
            if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
                raise RemotePolicyError(f"OpenVLA returned {action.shape} {action.tolist()}; expected 7 finite values")
            rows.append(action)
        return gripper_to_contract(np.stack(rows)[:, None, :], self.gripper)


class OpenVLAAgent(_OpenVLABase):
    """OpenVLA weights run in-process (``AutoModelForVision2Seq`` + ``AutoProcessor``, ``trust_remote_code``)."""

    def __init__(
        self,
        weights: str,
        device: str = "cpu",
        dtype: str = "bfloat16",
        attn_implementation: str | None = None,
        norm_stats: str | None = None,
        **kwargs: Any,
    ) -> None:
        import torch
        import transformers

        super().__init__(**kwargs)
        if not Path(weights).is_dir():
            raise FileNotFoundError(f"OpenVLA weights folder {weights} does not exist (give policy.weights=<folder>)")
        auto = getattr(transformers, "AutoModelForVision2Seq", None) or transformers.AutoModelForImageTextToText
        processor = transformers.AutoProcessor.from_pretrained(weights, trust_remote_code=True)
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        model = auto.from_pretrained(
            weights, dtype=getattr(torch, dtype), low_cpu_mem_usage=True, trust_remote_code=True, **extra
        ).to(device)
        stats_file = Path(norm_stats) if norm_stats else Path(weights) / "dataset_statistics.json"
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else getattr(model, "norm_stats", None)
        self._setup(model.eval(), processor, stats, device, getattr(torch, dtype))

    @classmethod
    def from_components(cls, model: Any, processor: Any, norm_stats: Mapping[str, Any], **kwargs: Any) -> OpenVLAAgent:
        """Build from an already loaded model and processor (another loader, or stand-ins in tests)."""
        import torch

        agent = cls.__new__(cls)
        _OpenVLABase.__init__(agent, **kwargs)
        agent._setup(model, processor, norm_stats, "cpu", torch.float32)
        return agent

    def _setup(self, model: Any, processor: Any, norm_stats: Mapping[str, Any] | None, device: Any, dtype: Any) -> None:
        if not norm_stats:
            raise ValueError("OpenVLA needs its dataset statistics (norm_stats): none in the model or policy.norm_stats")
        self.model, self.processor, self.norm_stats = model, processor, dict(norm_stats)
        self.device, self.dtype = device, dtype
        config = model.config
        text = getattr(config, "text_config", None)
        self.vocab_size = int(text.vocab_size) - int(getattr(config, "pad_to_multiple_of", 0))
        self.n_bins = int(getattr(config, "n_action_bins", N_BINS))

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        super().configure(benchmark, protocol)
        if self.unnorm_key not in self.norm_stats:
            raise KeyError(
                f"unnorm_key {self.unnorm_key!r} is not in this checkpoint's statistics {sorted(self.norm_stats)}: "
                f"set policy.benchmarks.{benchmark}.unnorm_key to the key this checkpoint was fine-tuned under"
            )
        stats = self.norm_stats[self.unnorm_key]["action"]
        self._q01, self._q99, self._mask = stats["q01"], stats["q99"], stats.get("mask")

    def _predict(self, image: np.ndarray, instruction: str) -> np.ndarray:
        import torch

        inputs = self.processor(build_prompt(instruction), Image.fromarray(image).convert("RGB"))
        inputs = {k: (v.to(self.device, self.dtype) if torch.is_floating_point(v) else v.to(self.device))
                  for k, v in dict(inputs).items()}
        input_ids = inputs.pop("input_ids")
        if not torch.all(input_ids[:, -1] == EMPTY_TOKEN_ID):
            empty = torch.full((input_ids.shape[0], 1), EMPTY_TOKEN_ID, dtype=input_ids.dtype, device=input_ids.device)
            input_ids = torch.cat([input_ids, empty], dim=1)
            if "attention_mask" in inputs:
                inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(empty)], dim=1)
        with torch.no_grad():
            generated = self.model.generate(input_ids=input_ids, max_new_tokens=ACTION_DIM, do_sample=False, **inputs)
        tokens = generated[0, -ACTION_DIM:].cpu().numpy()
        normalized = tokens_to_normalized(tokens, self.vocab_size, self.n_bins)
        return unnormalize(normalized, self._q01, self._q99, self._mask)


def encode_json_numpy(array: np.ndarray) -> dict[str, Any]:
    """json-numpy's encoding of an array (what OpenVLA's ``deploy.py`` server reads)."""
    array = np.ascontiguousarray(array)
    return {
        "__numpy__": base64.b64encode(array.tobytes()).decode("ascii"),
        "dtype": np.lib.format.dtype_to_descr(array.dtype),
        "shape": list(array.shape),
    }


def decode_json_numpy(value: Any) -> np.ndarray:
    """An array from json-numpy's encoding (possibly double-encoded as a JSON string) or a plain list."""
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict) and "__numpy__" in value:
        dtype = np.lib.format.descr_to_dtype(value["dtype"])
        if dtype.kind not in "biuf":
            raise RemotePolicyError(f"OpenVLA server sent dtype {dtype}; expected numbers")
        data = np.frombuffer(base64.b64decode(value["__numpy__"]), dtype=dtype)
        return data.reshape(value["shape"])
    if isinstance(value, list):
        return np.asarray(value, dtype=np.float64)
    raise RemotePolicyError(f"OpenVLA server sent {str(value)[:200]!r}; expected an action array")


class OpenVLARestAgent(_OpenVLABase):
    """Client for OpenVLA's REST server (``vla-scripts/deploy.py``): POST ``/act`` per observation."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000/act",
        timeout_s: float = 30.0,
        max_retries: int = 2,
        retry_backoff_s: float = 0.5,
        double_encode: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if timeout_s <= 0 or max_retries < 0:
            raise ValueError("timeout_s must be > 0 and max_retries >= 0")
        self.url, self.timeout_s = url, float(timeout_s)
        self.max_retries, self.retry_backoff_s = int(max_retries), float(retry_backoff_s)
        self.double_encode = bool(double_encode)
        self.stats = {"requests": 0, "retries": 0, "failures": 0}

    def _predict(self, image: np.ndarray, instruction: str) -> np.ndarray:
        payload: dict[str, Any] = {"image": encode_json_numpy(image), "instruction": instruction,
                                   "unnorm_key": self.unnorm_key}
        if self.double_encode:  # deploy.py's mode for clients without json-numpy
            payload = {"encoded": json.dumps(payload)}
        body = json.dumps(payload).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        last: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
                time.sleep(self.retry_backoff_s * attempt)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    reply = json.loads(response.read())
                break
            except urllib.error.HTTPError as exc:  # the server answered: retrying will not help
                raise RemotePolicyError(f"OpenVLA server {self.url} answered HTTP {exc.code}: {exc.reason}") from exc
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                last = exc
                log.warning("OpenVLA server %s: %s (attempt %d)", self.url, exc, attempt + 1)
        else:
            self.stats["failures"] += 1
            raise AgentConnectionError(
                f"OpenVLA server {self.url} unreachable or not answering after {self.max_retries} retries: {last}"
            ) from last
        self.stats["requests"] += 1
        if reply == "error":
            raise RemotePolicyError(f"OpenVLA server {self.url} failed on this request (see its log)")
        return decode_json_numpy(reply).reshape(-1)
