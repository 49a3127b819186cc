"""msgpack + numpy codec spoken on the agent wire, byte-compatible with openpi's ``msgpack_numpy``.

An array travels as a map ``{__ndarray__: True, data: <raw bytes>, dtype: <numpy dtype str>, shape: [...]}`` and a
numpy scalar as ``{__npgeneric__: True, data: <python value>, dtype: ...}`` (keys as msgpack *bin*, like openpi).
Decoding is strict because the server reads untrusted bytes: only bool/int/uint/float dtypes, and the byte count
must match the shape, otherwise :class:`WireError` says what is wrong. Decoded arrays are read-only views of
the message (no copy); copy them before writing in place.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

# numpy dtype kinds allowed on the wire: no objects (pickle), no void/structured, no complex
_ALLOWED_KINDS = frozenset("biuf")
_ND, _NG = b"__ndarray__", b"__npgeneric__"


class WireError(ValueError):
    """A message that is not valid msgpack-numpy (garbage bytes, bad array header, forbidden dtype)."""


class AgentConnectionError(RuntimeError):
    """A remote policy could not be reached (after the allowed reconnects) or did not answer in time."""


class RemotePolicyError(RuntimeError):
    """A remote policy answered with an error (retrying the same request would not help)."""


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind not in _ALLOWED_KINDS:
        raise WireError(f"cannot send numpy dtype {obj.dtype}: only bool, int, uint and float arrays travel")
    if isinstance(obj, np.ndarray):
        return {_ND: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return {_NG: True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send an object of type {type(obj).__name__} over the wire")


def _field(obj: dict, name: str) -> Any:
    for key in (name.encode(), name):
        if key in obj:
            return obj[key]
    raise WireError(f"array header lacks the {name!r} field")


def _dtype(obj: dict) -> np.dtype:
    raw = _field(obj, "dtype")
    try:
        dtype = np.dtype(raw.decode() if isinstance(raw, bytes) else str(raw))
    except TypeError as exc:
        raise WireError(f"unknown numpy dtype {raw!r} in array header") from exc
    if dtype.kind not in _ALLOWED_KINDS:
        raise WireError(f"numpy dtype {dtype} is not allowed on the wire (bool, int, uint, float only)")
    return dtype


def _decode(obj: dict) -> Any:
    if obj.get(_ND) is True or obj.get("__ndarray__") is True:
        dtype = _dtype(obj)
        shape = _field(obj, "shape")
        if not isinstance(shape, list | tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise WireError(f"array shape must be a list of non-negative ints, got {shape!r}")
        data = _field(obj, "data")
        if not isinstance(data, bytes):
            raise WireError(f"array data must be bytes, got {type(data).__name__}")
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise WireError(f"array of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dtype).reshape(shape)
    if obj.get(_NG) is True or obj.get("__npgeneric__") is True:
        dtype = _dtype(obj)
        try:
            return dtype.type(_field(obj, "data"))
        except (TypeError, ValueError, OverflowError) as exc:
            raise WireError(f"bad numpy scalar of dtype {dtype}: {exc}") from exc
    return obj


def packb(obj: Any) -> bytes:
    """Encode a message (dicts, lists, str, numbers, numpy arrays and scalars)."""
    return msgpack.packb(obj, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """Decode a message; anything that is not well-formed msgpack-numpy raises :class:`WireError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WireError(f"a message must be bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=True)
    except WireError:
        raise
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError) as exc:
        raise WireError(f"not a msgpack message: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # msgpack raises a few internal types on truncated input
        raise WireError(f"not a msgpack message: {type(exc).__name__}: {exc}") from exc
