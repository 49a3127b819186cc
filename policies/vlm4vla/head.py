"""The paper's FCDecoder action head and the whole policy module (backbone + action token + head).

Parameter names follow the paper's checkpoints once prefixed with ``model.``: ``backbone.<HF keys>``,
``act_head.mlp.{0,2}``, ``act_head.{actions,gripper}.mlp.{0,2,4,6}``, ``action_token``.

The head: Linear(D -> D/2), ReLU, Linear(D/2 -> W) with W = ``act_head.hidden_size``, then two towers
W -> 1024 -> 512 -> 256 -> out (ReLU between; tanh at the end of the arm tower). The paper's code has the
tower widths as constants (its W is 1024 too); here every width is a parameter, read from a checkpoint's
shapes (:meth:`HeadSpec.from_state`) so heads of any width load.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    """The widths of an FCDecoder: input D, its first hidden layer, W, the towers' hidden widths, chunk."""

    in_features: int
    mlp_hidden: int
    width: int
    tower: tuple[int, int, int]
    chunk: int
    arm_dim: int = 6

    @classmethod
    def default(cls, in_features: int, chunk: int, width: int = 1024) -> HeadSpec:
        tower = (1024, 512, 256) if width == 1024 else (width, width // 2, width // 4)
        return cls(in_features, in_features // 2, width, tower, chunk)

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], prefix: str = "act_head.") -> HeadSpec:
        """The spec of the head whose weights are in ``state`` (keys ``act_head.*``)."""
        def shape(name: str) -> tuple[int, ...]:
            key = f"{prefix}{name}.weight"
            if key not in state:
                from policies.vlm4vla.checkpoint import CheckpointError

                raise CheckpointError(f"checkpoint has no 'model.{key}': not an FCDecoder head")
            return tuple(state[key].shape)

        hid, d = shape("mlp.0")
        width, _ = shape("mlp.2")
        a, _ = shape("actions.mlp.0")
        b, _ = shape("actions.mlp.2")
        c, _ = shape("actions.mlp.4")
        arm_out, _ = shape("actions.mlp.6")
        chunk, _ = shape("gripper.mlp.6")
        if arm_out % chunk:
            from policies.vlm4vla.checkpoint import CheckpointError

            raise CheckpointError(f"head shapes disagree: arm output {arm_out} is not a multiple of the chunk {chunk}")
        return cls(d, hid, width, (a, b, c), chunk, arm_out // chunk)


class _Tower(nn.Module):
    """W -> a -> b -> c -> out with ReLU between (and tanh at the end for the arm)."""

    def __init__(self, width: int, tower: tuple[int, int, int], out: int, tanh: bool) -> None:
        super().__init__()
        a, b, c = tower
        layers: list[nn.Module] = [
            nn.Linear(width, a), nn.ReLU(),
            nn.Linear(a, b), nn.ReLU(),
            nn.Linear(b, c), nn.ReLU(),
            nn.Linear(c, out),
        ]
        if tanh:
            layers.append(nn.Tanh())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FCDecoder(nn.Module):
    """Hidden state at the action token (B, D) -> arm (B, n, 6) in [-1, 1] and gripper logits (B, n)."""

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        self.spec = spec
        self.chunk = spec.chunk
        self.arm_dim = spec.arm_dim
        self.mlp = nn.Sequential(
            nn.Linear(spec.in_features, spec.mlp_hidden), nn.ReLU(), nn.Linear(spec.mlp_hidden, spec.width)
        )
        self.actions = _Tower(spec.width, spec.tower, spec.chunk * spec.arm_dim, tanh=True)
        self.gripper = _Tower(spec.width, spec.tower, spec.chunk, tanh=False)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.mlp(hidden)
        arm = self.actions(feat).view(hidden.shape[0], self.chunk, self.arm_dim)
        return arm, self.gripper(feat).view(hidden.shape[0], self.chunk)


class VLM4VLAModel(nn.Module):
    """The trainable policy: a VLM backbone, one learnable action query and the FCDecoder head."""

    def __init__(self, backbone: nn.Module, hidden_size: int, head: HeadSpec) -> None:
        super().__init__()
        self.backbone = backbone
        self.action_token = nn.Parameter(torch.zeros(hidden_size))
        self.act_head = FCDecoder(head)
