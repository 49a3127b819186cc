"""The network: 4 conv layers over the image, a hashed bag of words for the instruction, an MLP to a chunk."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

ACTION_DIM = 7
WORD_BUCKETS = 64


def words_vector(instructions: Sequence[str]) -> np.ndarray:
    """(B, WORD_BUCKETS) float32 multi-hot of each instruction's lower-cased words (CRC32 buckets: the same in
    every process and on every machine)."""
    out = np.zeros((len(instructions), WORD_BUCKETS), dtype=np.float32)
    for row, text in enumerate(instructions):
        for word in str(text).lower().split():
            out[row, zlib.crc32(word.encode()) % WORD_BUCKETS] = 1.0
    return out


class PixelPolicyNet(nn.Module):
    """uint8 images (B, S, S, 3) + word vectors (B, WORD_BUCKETS) -> action chunks (B, chunk, 7).

    The image (scaled to [-1, 1]) gets two coordinate channels; conv strides 2, 2, 2, 1 (S=64: 8x8x64 features, flattened so positions stay), language embedding concatenated,
    then a 2-layer MLP. About 1.1 M parameters at S=64.
    """

    def __init__(self, image_size: int = 64, chunk: int = 8, width: int = 32, hidden: int = 256) -> None:
        super().__init__()
        self.image_size, self.chunk = image_size, chunk
        self.conv = nn.Sequential(
            nn.Conv2d(5, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=1, padding=1), nn.ReLU(),
        )  # fmt: skip
        side = -(-image_size // 8)
        self.image_fc = nn.Linear(2 * width * side * side, hidden)
        self.words = nn.Linear(WORD_BUCKETS, 64)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden + 64, hidden), nn.ReLU(), nn.Linear(hidden, chunk * ACTION_DIM))

    def forward(self, images: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        n, _, h, w = x.shape
        ys = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(n, 1, h, w)
        x = torch.cat([x, ys, xs], dim=1)  # pixel coordinates as two more channels: where things are matters
        x = self.image_fc(self.conv(x).flatten(1))
        x = torch.cat([x, torch.relu(self.words(words))], dim=1)
        return self.head(x).view(-1, self.chunk, ACTION_DIM)
