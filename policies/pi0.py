"""``policy=pi0``: transformers' native ``PI0ForConditionalGeneration`` as an agent (no LeRobot, no openpi).

Inputs are built by hand (PI0's image processor needs torchvision): every camera the benchmark maps is
resized to the vision tower's size and scaled to [-1, 1]; the prompt is ``<image>`` x tokens-per-image x cameras,
then ``<bos>`` + instruction + ``"\\n"`` (as ``PI0Processor`` writes it); the state is normalised with the
dataset mean/std and zero-padded to ``max_state_dim``. The sampled chunk is un-normalised with the action
mean/std and its gripper mapped to the contract (+1 open).

Normalisation statistics come from ``stats`` (a mapping or a JSON file with ``state_mean``, ``state_std``,
``actions_mean``, ``actions_std``) or from ``processor_config.json`` next to the weights; ``normalize: false``
passes states and actions through unchanged.

Flow-matching noise is drawn per env from a generator seeded with ``seed`` and the episode's first
observation, so an episode's actions do not depend on which env slot ran it or on the batch around it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from policies.base import Agent, Observation, batch_size
from policies.gripper import check_gripper_mapping, map_gripper
from policies.tables import merged_table, table_entry

_STATS_KEYS = ("state_mean", "state_std", "actions_mean", "actions_std")
#: conf/policy/<TABLE>.yaml holds the per-benchmark table (cameras, state, gripper, execute_steps)
TABLE = "pi0"


def load_stats(stats: Mapping[str, Any] | str | None, weights: str | None) -> dict[str, np.ndarray] | None:
    """Normalisation statistics from a mapping, a JSON file, or the weights' ``processor_config.json``."""
    source = "stats"
    if isinstance(stats, str):
        source = stats
        stats = json.loads(Path(stats).read_text())
    elif stats is None and weights is not None and (Path(weights) / "processor_config.json").is_file():
        source = str(Path(weights) / "processor_config.json")
        found = json.loads((Path(weights) / "processor_config.json").read_text())
        stats = found if all(found.get(k) is not None for k in _STATS_KEYS) else None
    if stats is None:
        return None
    missing = [k for k in _STATS_KEYS if stats.get(k) is None]
    if missing:
        raise KeyError(f"normalisation statistics in {source} lack {missing}")
    out = {k: np.asarray(stats[k], dtype=np.float32) for k in _STATS_KEYS}
    for kind in ("state", "actions"):
        if out[f"{kind}_mean"].shape != out[f"{kind}_std"].shape or out[f"{kind}_mean"].ndim != 1:
            raise ValueError(f"{kind}_mean and {kind}_std in {source} must be 1-d and of the same length")
    return out


class PI0Agent(Agent):
    """pi0 through transformers. ``weights``: a folder saved with ``save_pretrained`` (config + safetensors).

    ``benchmarks``: entries merged over the table of ``conf/policy/pi0.yaml``; ``execute_steps`` overrides the
    table's on every benchmark."""

    def __init__(
        self,
        weights: str,
        tokenizer: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        stats: Mapping[str, Any] | str | None = None,
        normalize: bool = True,
        num_steps: int | None = None,
        action_dim: int = 7,
        seed: int = 0,
        benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
        execute_steps: int | None = None,
    ) -> None:
        from transformers import AutoTokenizer

        self.weights, self.device = str(weights), torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.num_steps, self.action_dim, self.seed = num_steps, int(action_dim), int(seed)
        # entries given here are merged over conf/policy/pi0.yaml's table, the one copy of the defaults
        self.benchmarks = merged_table(TABLE, benchmarks)
        self._execute_override = execute_steps
        self.model = self._load_model(self.weights)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or self.weights)
        self.stats = load_stats(stats, self.weights) if normalize else None
        if normalize and self.stats is None:
            raise ValueError(
                f"no normalisation statistics for {self.weights}: pass policy.stats (a JSON file or a mapping with "
                f"{list(_STATS_KEYS)}), add processor_config.json to the weights, or set policy.normalize=false"
            )
        self._check_model()
        self.chunk_size = int(self.model.config.chunk_size)
        self._cfg: dict[str, Any] | None = None
        self._generators: dict[int, torch.Generator] = {}

    # ---- model ----

    def _load_model(self, path: str) -> Any:
        from transformers import PI0ForConditionalGeneration

        if not Path(path).is_dir():
            raise FileNotFoundError(f"pi0 weights folder {path} does not exist (give policy.weights=<folder>)")
        model = PI0ForConditionalGeneration.from_pretrained(path, dtype=self.dtype)
        return model.to(self.device).eval()

    def _check_model(self) -> None:
        config = self.model.config
        vision = config.vlm_config.vision_config
        self.image_size = int(vision.image_size)
        self.tokens_per_image = (vision.image_size // vision.patch_size) ** 2
        self.image_token_id = int(config.vlm_config.image_token_id)
        if self.action_dim > config.max_action_dim:
            raise ValueError(f"action_dim {self.action_dim} exceeds the model's max_action_dim {config.max_action_dim}")
        if self.tokenizer.bos_token_id is None:
            raise ValueError(f"the tokenizer of {self.weights} has no bos token; PI0 prompts start with one")

    def load_weights(self, checkpoint: str) -> None:
        self.model = self._load_model(checkpoint)
        self.weights = str(checkpoint)
        self._check_model()

    # ---- agent interface ----

    def configure(self, benchmark: str, protocol: dict[str, Any]) -> None:
        cfg = table_entry(self.benchmarks, benchmark, "pi0", TABLE)
        cameras = list(cfg.get("cameras") or [])
        if not cameras or "image" not in cameras:
            raise ValueError(f"policy.benchmarks.{benchmark}.cameras must list 'image' (and optionally 'wrist_image')")
        # the gripper sign has no safe default: a wrong one runs, closing where it should open
        check_gripper_mapping(cfg.get("gripper"), f"policy.benchmarks.{benchmark}.gripper")
        execute = self._execute_override or cfg.get("execute_steps")
        if execute is None:
            raise ValueError(
                f"how many actions of each chunk to execute on {benchmark}? set policy.benchmarks.{benchmark}."
                f"execute_steps (or policy.execute_steps for every benchmark)"
            )
        self._cfg = {**cfg, "cameras": cameras, "name": benchmark}
        self.execute_steps = min(int(execute), self.chunk_size)

    def reset(self, env_ids: Sequence[int]) -> None:
        for env_id in env_ids:
            self._generators.pop(int(env_id), None)

    def _generator(self, env_id: int, obs: Observation, row: int) -> torch.Generator:
        if env_id not in self._generators:
            digest = hashlib.sha256(str(self.seed).encode())
            digest.update(np.ascontiguousarray(obs["image"][row]).tobytes())
            digest.update(str(obs["language"][row]).encode())
            self._generators[env_id] = torch.Generator().manual_seed(int.from_bytes(digest.digest()[:8], "little"))
        return self._generators[env_id]

    def pixel_values(self, obs: Observation) -> torch.Tensor:
        """(B, cameras, 3, S, S) in [-1, 1] for the configured cameras (what PI0's image processor produces)."""
        assert self._cfg is not None
        views = []
        for key in self._cfg["cameras"]:
            if key not in obs:
                raise KeyError(
                    f"pi0 for {self._cfg['name']} needs {key!r} in the observation; build the env with that camera "
                    f"or set policy.benchmarks.{self._cfg['name']}.cameras"
                )
            # decoded wire messages are read-only views: torch wants writable memory
            image = torch.from_numpy(np.require(obs[key], requirements=["C", "W"]))
            if image.dtype != torch.uint8 or image.ndim != 4 or image.shape[-1] != 3:
                raise ValueError(f"{key!r} must be uint8 (B, H, W, 3), got {image.dtype} {tuple(image.shape)}")
            x = image.permute(0, 3, 1, 2).float()
            if x.shape[-2:] != (self.image_size, self.image_size):
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic", antialias=True)
                x = x.clamp(0.0, 255.0)
            views.append(x / 127.5 - 1.0)
        return torch.stack(views, dim=1)

    def prompt_ids(self, instructions: Sequence[str], cameras: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded token ids and attention mask: image tokens, <bos>, the instruction, a newline."""
        prefix = [self.image_token_id] * (self.tokens_per_image * cameras) + [int(self.tokenizer.bos_token_id)]
        rows = []
        for text in instructions:
            clean = str(text).strip().replace("_", " ").replace("\n", " ")
            rows.append(prefix + list(self.tokenizer(clean + "\n", add_special_tokens=False)["input_ids"]))
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), length), int(pad), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids, mask

    def state(self, obs: Observation, batch: int) -> torch.Tensor:
        assert self._cfg is not None
        max_dim = int(self.model.config.max_state_dim)
        if not self._cfg.get("state", False):
            return torch.zeros((batch, max_dim))
        if "proprio" not in obs:
            raise KeyError(
                f"pi0 for {self._cfg['name']} feeds the robot state: build the env with proprio=true "
                f"or set policy.benchmarks.{self._cfg['name']}.state=false"
            )
        proprio = np.array(obs["proprio"], dtype=np.float32).reshape(batch, -1)
        dim = proprio.shape[1]
        if dim > max_dim:
            raise ValueError(f"proprio has {dim} dims but the model takes at most {max_dim}")
        if self.stats is not None:
            mean, std = self.stats["state_mean"], self.stats["state_std"]
            if len(mean) < dim:
                raise ValueError(f"state statistics have {len(mean)} dims, proprio has {dim}")
            proprio = (proprio - mean[:dim]) / (std[:dim] + 1e-8)
        return F.pad(torch.from_numpy(proprio), (0, max_dim - dim))

    def unnormalize(self, actions: np.ndarray) -> np.ndarray:
        """Invert PI0Processor's ``(x - mean) / (std + 1e-8)`` on the first ``action_dim`` dims."""
        out = np.asarray(actions, dtype=np.float32)[..., : self.action_dim]
        if self.stats is None:
            return out.copy()
        mean, std = self.stats["actions_mean"], self.stats["actions_std"]
        if len(mean) < self.action_dim:
            raise ValueError(f"action statistics have {len(mean)} dims, fewer than action_dim {self.action_dim}")
        return out * (std[: self.action_dim] + 1e-8) + mean[: self.action_dim]

    @torch.no_grad()
    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        if self._cfg is None:
            raise RuntimeError("call configure(benchmark, protocol) before act()")
        batch = batch_size(obs)
        pixel_values = self.pixel_values(obs)
        cameras = pixel_values.shape[1]
        input_ids, attention_mask = self.prompt_ids(obs["language"], cameras)
        config = self.model.config
        noise = torch.stack([
            torch.randn((config.chunk_size, config.max_action_dim), generator=self._generator(int(e), obs, row))
            for row, e in enumerate(env_ids)
        ])
        device, dtype = self.device, self.dtype
        out = self.model.sample_actions(
            state=self.state(obs, batch).to(device, dtype),
            input_ids=input_ids.to(device),
            pixel_values=pixel_values.to(device, dtype),
            noise=noise.to(device, dtype),
            attention_mask=attention_mask.to(device),
            pixel_attention_mask=torch.ones((batch, cameras), dtype=torch.bool, device=device),
            num_steps=self.num_steps,
        )
        actions = self.unnormalize(out.float().cpu().numpy())
        return map_gripper(actions, self._cfg["gripper"])
