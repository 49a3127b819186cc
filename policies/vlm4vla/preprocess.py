"""Per-benchmark image preprocessing before the backbone's own processor.

LIBERO: the paper rotates the 256x256 agentview render by 180 degrees, centre-crops 90% of the area and
resizes to 224. Our env already delivers the image upright, so only the crop and resize happen here.
The paper-exact path crops the native 256 image (``image_native``, opt-in); cropping the 224 ``image``
resamples twice (the difference is measured in the tests).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

CROP_AREA = 0.9


def centre_crop_resize(images: np.ndarray, out_size: int = 224, area: float = CROP_AREA) -> np.ndarray:
    """uint8 (B, H, W, 3) -> (B, out, out, 3): keep the central ``area`` fraction, bilinear resize."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
    h, w = images.shape[1:3]
    side = math.sqrt(area)
    ch, cw = round(h * side), round(w * side)
    top, left = (h - ch) // 2, (w - cw) // 2
    crops = images[:, top : top + ch, left : left + cw]
    return np.stack(
        [np.asarray(Image.fromarray(c).resize((out_size, out_size), Image.BILINEAR)) for c in crops]
    )
