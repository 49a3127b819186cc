"""Per-benchmark image preprocessing before the backbone's own processor.

LIBERO: the paper's evaluation (``--center_crop``) takes the upright 256x256 render and applies OpenVLA's
TensorFlow ``crop_and_resize``: a centre box of 90 % of the area (side ``sqrt(0.9)``, normalised box
``[off, off, off + side, off + side]`` with ``off = (1 - side) / 2``, all float32) through
``tf.image.crop_and_resize`` straight to 224x224 (bilinear, no antialiasing, sampling positions
``y1 * (H - 1) + i * (y2 - y1) * (H - 1) / 223``), then back to uint8 as ``convert_image_dtype`` does
(x 255.5, truncation). :func:`centre_crop_resize` computes the same float32 operations in the same order
in numpy, which reproduces the TensorFlow output bit for bit (no TensorFlow needed).

Our env already delivers the image upright, so only the crop and resize happen here. The paper-exact input is
the native 256 render (``image_native``); cropping the 224 ``image`` instead resamples twice.
"""

from __future__ import annotations

import numpy as np

CROP_AREA = 0.9
_F32 = np.float32


def _sample_positions(n_in: int, n_out: int, area: float) -> np.ndarray:
    """TF crop_and_resize's float32 source coordinates along one axis for the centred box of ``area``."""
    side = np.clip(np.sqrt(_F32(area)), _F32(0), _F32(1)).astype(_F32)
    lo = _F32((_F32(1) - side) / _F32(2))
    hi = _F32(lo + side)
    if n_out == 1:
        return np.array([_F32(_F32(0.5) * _F32(lo + hi) * _F32(n_in - 1))], dtype=_F32)
    step = _F32(_F32(_F32(hi - lo) * _F32(n_in - 1)) / _F32(n_out - 1))
    start = _F32(lo * _F32(n_in - 1))
    return (start + (np.arange(n_out, dtype=_F32) * step).astype(_F32)).astype(_F32)


def centre_crop_resize(images: np.ndarray, out_size: int = 224, area: float = CROP_AREA) -> np.ndarray:
    """uint8 (B, H, W, 3) -> (B, out, out, 3): the paper's TensorFlow centre crop (``area`` of the image)
    and bilinear resize, computed in numpy float32 exactly as TensorFlow's CPU kernel does."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
    h, w = images.shape[1:3]
    x = images.astype(_F32) * _F32(1.0 / 255.0)  # convert_image_dtype(uint8 -> float32)
    ys, xs = _sample_positions(h, out_size, area), _sample_positions(w, out_size, area)
    top, left = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    bottom, right = np.ceil(ys).astype(np.int64), np.ceil(xs).astype(np.int64)
    y_lerp = (ys - np.floor(ys)).astype(_F32)[None, :, None, None]
    x_lerp = (xs - np.floor(xs)).astype(_F32)[None, None, :, None]
    rows_t, rows_b = x[:, top], x[:, bottom]
    tl, tr = rows_t[:, :, left], rows_t[:, :, right]
    bl, br = rows_b[:, :, left], rows_b[:, :, right]
    upper = tl + (tr - tl) * x_lerp
    lower = bl + (br - bl) * x_lerp
    out = np.clip(upper + (lower - upper) * y_lerp, _F32(0), _F32(1))
    return (out * _F32(255.5)).astype(np.uint8)  # convert_image_dtype(float32 -> uint8, saturate): truncation
