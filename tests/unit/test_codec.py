"""The persistence format: round trips, and every malformed record refused with StateError."""

from __future__ import annotations

import math
import pickle
import struct
import zlib
from typing import Any

import numpy as np
import orjson
import pytest

from segmenter import codec
from segmenter.errors import StateError

TREE: dict[Any, Any] = {
    "n": 3,
    "big": 2**63 - 1,
    "x": np.arange(6.0).reshape(2, 3),
    "keys": np.array([1, 2, 2**32 - 1], dtype=np.uint32),
    "flags": np.array([True, False]),
    "empty": np.zeros((0, 4), dtype=np.float32),
    "blob": b"\x00\x01raw",
    "floats": [1.5, math.inf, -math.inf],
    "nested": {"a": [None, True, "s"], 7: {"$a": 1}, None: (1, 2)},
    "$a": "a key that looks like a tag",
}


def _rebuild(header: dict[str, Any], payload: bytes = b"", fmt: int = codec.FORMAT_VERSION) -> bytes:
    head = orjson.dumps(header)
    rest = head + payload
    return struct.pack("<8sHHII", codec.MAGIC, fmt, 0, len(head), zlib.crc32(rest)) + rest


def _header(blob: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack_from("<I", blob, 12)
    return orjson.loads(blob[20 : 20 + n]), blob[20 + n :]


def test_round_trip_keeps_values_dtypes_and_shapes() -> None:
    out = codec.decode(codec.encode("t", 2, TREE), "t", 2)
    assert out["n"] == 3 and out["big"] == 2**63 - 1
    for key in ("x", "keys", "flags", "empty"):
        assert out[key].dtype == TREE[key].dtype and out[key].shape == TREE[key].shape
        assert np.array_equal(out[key], TREE[key])
    assert out["blob"] == b"\x00\x01raw"
    assert out["floats"] == [1.5, math.inf, -math.inf]
    assert out["nested"] == {"a": [None, True, "s"], 7: {"$a": 1}, None: [1, 2]}
    assert out["$a"] == "a key that looks like a tag"
    out["x"][0, 0] = 9.0  # decoded arrays are writable copies


def test_empty_arrays_of_any_width_round_trip() -> None:
    out = codec.decode(codec.encode("t", 1, {"e": np.zeros((0, 7)), "k": np.zeros(0, np.uint32)}), "t", 1)
    assert out["e"].shape == (0, 7) and out["k"].shape == (0,)


def test_a_boolean_is_not_a_version() -> None:
    header, payload = _header(codec.encode("t", 1, None))
    with pytest.raises(StateError, match="expected 't' v1"):
        codec.decode(_rebuild({**header, "v": True}, payload), "t", 1)


def test_nan_survives() -> None:
    assert math.isnan(codec.decode(codec.encode("t", 1, [math.nan]), "t", 1)[0])


def test_encode_refuses_objects() -> None:
    with pytest.raises(TypeError):
        codec.encode("t", 1, {"f": object()})
    with pytest.raises(TypeError):
        codec.encode("t", 1, np.array(["a"]))


@pytest.mark.parametrize("cut", [0, 5, 19, 20, 40, -9, -1])
def test_truncated_record(cut: int) -> None:
    blob = codec.encode("t", 1, TREE)
    with pytest.raises(StateError):
        codec.decode(blob[:cut], "t", 1)


def test_flipped_byte_fails_the_checksum() -> None:
    blob = bytearray(codec.encode("t", 1, TREE))
    blob[-3] ^= 0x40
    with pytest.raises(StateError, match="checksum"):
        codec.decode(bytes(blob), "t", 1)


def test_wrong_magic_kind_and_versions() -> None:
    blob = codec.encode("t", 1, {"a": 1})
    with pytest.raises(StateError, match="not a segmenter state record"):
        codec.decode(pickle.dumps({"a": 1}), "t", 1)
    with pytest.raises(StateError, match="expected 't' v2"):
        codec.decode(blob, "t", 2)
    with pytest.raises(StateError, match="expected 'u' v1"):
        codec.decode(blob, "u", 1)
    header, payload = _header(blob)
    with pytest.raises(StateError, match="format version 2"):
        codec.decode(_rebuild(header, payload, fmt=2), "t", 1)


def test_header_not_json_or_not_an_object() -> None:
    rest = b"{not json"
    bad = struct.pack("<8sHHII", codec.MAGIC, 1, 0, len(rest), zlib.crc32(rest)) + rest
    with pytest.raises(StateError, match="not JSON"):
        codec.decode(bad, "t", 1)
    with pytest.raises(StateError, match="expected an object"):
        codec.decode(_rebuild([1, 2]), "t", 1)  # type: ignore[arg-type]


def test_declared_header_longer_than_the_record() -> None:
    bad = struct.pack("<8sHHII", codec.MAGIC, 1, 0, 2**32 - 1, 0) + b"{}"
    with pytest.raises(StateError, match="header"):
        codec.decode(bad, "t", 1)


@pytest.mark.parametrize(
    "spec",
    [
        {"dtype": "<f8", "shape": [2**40, 2**40], "offset": 0},  # huge declared size
        {"dtype": "<f8", "shape": [10**6], "offset": 0},
        {"dtype": "<f8", "shape": [1], "offset": 10**9},
        {"dtype": "<f8", "shape": [-1], "offset": 0},
        {"dtype": "<f8", "shape": [1] * 9, "offset": 0},
        {"dtype": "<f8", "shape": "1", "offset": 0},
        {"dtype": "|O", "shape": [1], "offset": 0},  # object arrays: not allowed
        {"dtype": ">f8", "shape": [1], "offset": 0},
        {"dtype": "<U4", "shape": [1], "offset": 0},
        {"dtype": "<f8", "shape": [1], "offset": -8},
    ],
)
def test_bad_array_specs(spec: dict[str, Any]) -> None:
    header = {"kind": "t", "v": 1, "tree": {"$a": 0}, "arrays": [spec]}
    with pytest.raises(StateError):
        codec.decode(_rebuild(header, b"\x00" * 8), "t", 1)


def test_trailing_bytes_and_bad_references() -> None:
    header = {"kind": "t", "v": 1, "tree": {"$a": 0}, "arrays": [{"dtype": "<f8", "shape": [1], "offset": 0}]}
    assert codec.decode(_rebuild(header, b"\x00" * 8), "t", 1).tolist() == [0.0]
    with pytest.raises(StateError, match="after its last array"):
        codec.decode(_rebuild(header, b"\x00" * 24), "t", 1)
    for tree in ({"$a": 1}, {"$a": "0"}, {"$b": 0}, {"$f": "huge"}, {"$m": [[1]]}, {"$m": [[[1], 2]]}):
        with pytest.raises(StateError):
            codec.decode(_rebuild({**header, "tree": tree}, b"\x00" * 8), "t", 1)


def test_deep_nesting_is_refused() -> None:
    tree: Any = 1
    for _ in range(100):
        tree = [tree]
    header = {"kind": "t", "v": 1, "tree": tree, "arrays": []}
    with pytest.raises(StateError, match="deeper"):
        codec.decode(_rebuild(header), "t", 1)


def test_expect_helpers() -> None:
    assert codec.expect_int(3, "n", 0, 5) == 3
    for bad in (True, 3.0, "3", 9):
        with pytest.raises(StateError, match="n"):
            codec.expect_int(bad, "n", 0, 5)
    with pytest.raises(StateError, match="finite"):
        codec.expect_float(math.inf, "x")
    assert codec.expect_float(math.inf, "x", finite=False) == math.inf
    arr = np.zeros((2, 3))
    assert codec.expect_array(arr, "a", np.float64, (None, 3)) is arr
    with pytest.raises(StateError, match="shape"):
        codec.expect_array(arr, "a", np.float64, (None, 2))
    with pytest.raises(StateError, match="dtype"):
        codec.expect_array(arr, "a", np.float32, (None, 3))
    with pytest.raises(StateError, match="non-finite"):
        codec.expect_array(np.array([np.nan]), "a", np.float64, (1,), finite=True)
