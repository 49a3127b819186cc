"""The paper's FCDecoder action head and the whole policy module (backbone + action token + head).

Parameter names follow the paper's checkpoints once prefixed with ``model.``: ``backbone.<HF keys>``,
``act_head.mlp.{0,2}``, ``act_head.{actions,gripper}.mlp.{0,2,4,6}``, ``action_token``.
"""

from __future__ import annotations

import torch
from torch import nn


class _Tower(nn.Module):
    """1024 -> 1024 -> 512 -> 256 -> out with ReLU between (and tanh at the end for the arm)."""

    def __init__(self, width: int, out: int, tanh: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Linear(width, width), nn.ReLU(),
            nn.Linear(width, width // 2), nn.ReLU(),
            nn.Linear(width // 2, width // 4), nn.ReLU(),
            nn.Linear(width // 4, out),
        ]
        if tanh:
            layers.append(nn.Tanh())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class FCDecoder(nn.Module):
    """Hidden state at the action token (B, D) -> arm (B, n, 6) in [-1, 1] and gripper logits (B, n)."""

    def __init__(self, in_features: int, chunk: int, width: int = 1024, arm_dim: int = 6) -> None:
        super().__init__()
        self.chunk = chunk
        self.arm_dim = arm_dim
        self.mlp = nn.Sequential(nn.Linear(in_features, in_features // 2), nn.ReLU(), nn.Linear(in_features // 2, width))
        self.actions = _Tower(width, chunk * arm_dim, tanh=True)
        self.gripper = _Tower(width, chunk, tanh=False)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.mlp(hidden)
        arm = self.actions(feat).view(hidden.shape[0], self.chunk, self.arm_dim)
        return arm, self.gripper(feat).view(hidden.shape[0], self.chunk)


class VLM4VLAModel(nn.Module):
    """The trainable policy: a VLM backbone, one learnable action query and the FCDecoder head."""

    def __init__(self, backbone: nn.Module, hidden_size: int, chunk: int, head_width: int = 1024) -> None:
        super().__init__()
        self.backbone = backbone
        self.action_token = nn.Parameter(torch.zeros(hidden_size))
        self.act_head = FCDecoder(hidden_size, chunk, head_width)
