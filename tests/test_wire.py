"""The msgpack-numpy codec: byte-compatible with openpi's, strict on untrusted input."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from openpi_client import msgpack_numpy as openpi_codec

from policies import wire

pytestmark = pytest.mark.timeout(60)


def _message() -> dict:
    rng = np.random.default_rng(0)
    return {
        "observation/image": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8),
        "observation/state": rng.normal(size=8).astype(np.float32),
        "prompt": "put the bowl on the plate",
        "flags": np.array([True, False]),
        "count": np.int64(3),
        "nested": {"ids": [np.int16(-2), 5]},
    }


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert a[key].dtype == b[key].dtype and np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_bytes_identical_to_openpi_and_both_directions_decode() -> None:
    msg = _message()
    ours = wire.packb(msg)
    assert ours == openpi_codec.packb(msg)
    _assert_same(wire.unpackb(openpi_codec.packb(msg)), msg)
    _assert_same(openpi_codec.unpackb(ours), msg)
    assert type(wire.unpackb(ours)["count"]) is np.int64


def test_non_contiguous_and_empty_arrays_round_trip() -> None:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    for arr in (base[:, ::2], base.T, np.zeros((0, 7), np.float32)):
        out = wire.unpackb(wire.packb({"a": arr}))["a"]
        assert out.shape == arr.shape and np.array_equal(out, arr)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"\xc1\xff\x00", "not a msgpack"),
        (b"\x93\x01", "not a msgpack"),  # truncated array
        (msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 5, b"dtype": "<f4", b"shape": [2]}), "needs 8 bytes"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}), "not allowed"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "nonsense", b"shape": [0]}), "dtype"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "<f4", b"shape": [-1]}), "shape"),
        (msgpack.packb({b"__ndarray__": True, b"dtype": "<f4", b"shape": [1]}), "lacks the 'data'"),
        (msgpack.packb({1: 2}), "not a msgpack"),  # int map keys
    ],
)
def test_garbage_raises_wire_error(data: bytes, match: str) -> None:
    with pytest.raises(wire.WireError, match=match):
        wire.unpackb(data)


def test_refuses_to_send_objects() -> None:
    with pytest.raises(wire.WireError, match="object"):
        wire.packb({"a": np.array([{}, 1], dtype=object)})
    with pytest.raises(TypeError, match="set"):
        wire.packb({"a": {1, 2}})
