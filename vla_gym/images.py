"""Image resizing shared by the envs: a protocol names its interpolation, this maps it to OpenCV's."""

from __future__ import annotations

import cv2
import numpy as np

INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
    "nearest": cv2.INTER_NEAREST,
}


def resize_square(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """``image`` resized to (size, size), always a fresh contiguous array (never aliases the render)."""
    if image.shape[0] == size and image.shape[1] == size:
        return np.array(image, copy=True, order="C")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; known: {sorted(INTERPOLATIONS)}")
    return cv2.resize(image, (size, size), interpolation=INTERPOLATIONS[interpolation])
