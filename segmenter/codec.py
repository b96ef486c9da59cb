"""The persistence format: versioned, schema-checked and code-free.

Everything that leaves the process as bytes (model state, snapshots, views,
vectors, trainer state) is one *record* of this format::

    magic      8 bytes   b"\\x89SEGST\\r\\n"
    format     u16 LE    FORMAT_VERSION
    reserved   u16 LE    0
    header     u32 LE    length of the JSON header in bytes
    crc32      u32 LE    zlib.crc32 of everything after these 20 bytes
    header     JSON      {"kind": str, "v": int, "tree": ..., "arrays": [{"dtype", "shape", "offset"}, ...]}
    payload    bytes     the arrays' raw little-endian bytes, each at its offset (8-byte aligned)

``tree`` is plain JSON (objects, arrays, strings, numbers, booleans, null)
with four tagged one-key objects: ``{"$a": i}`` (numpy array ``i``),
``{"$b": i}`` (bytes, array ``i`` as ``|u1``), ``{"$f": "nan"|"inf"|"-inf"}``
(a non-finite float) and ``{"$m": [[key, value], ...]}`` (a mapping whose keys
are not all strings, or that could be mistaken for a tag). Decoding never
builds anything but ``None``, ``bool``, ``int``, ``float``, ``str``, ``list``,
``dict``, ``bytes`` and numpy arrays of the dtypes in :data:`DTYPES`; it checks
the magic, the format version, the checksum, the sizes, every array's dtype,
shape and bounds, the record's kind and version, and raises :class:`StateError`
with the reason. The ``expect_*`` helpers check the decoded tree's fields.

Examples
--------
>>> import numpy as np
>>> blob = encode("example", 1, {"n": 3, "x": np.arange(3.0), 7: None})
>>> tree = decode(blob, "example", 1)
>>> tree["n"], tree["x"].tolist(), tree[7]
(3, [0.0, 1.0, 2.0], None)
>>> decode(blob, "other", 1)
Traceback (most recent call last):
...
segmenter.errors.StateError: record is a 'example' v1, expected 'other' v1
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from segmenter.errors import StateError

__all__ = [
    "DTYPES",
    "FORMAT_VERSION",
    "MAGIC",
    "StateError",
    "decode",
    "encode",
    "expect_array",
    "expect_dict",
    "expect_float",
    "expect_int",
    "expect_list",
    "expect_str",
    "is_record",
]

MAGIC = b"\x89SEGST\r\n"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sHHII")
DTYPES = frozenset({"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"})
"""Array dtypes a record may hold (little-endian, numeric)."""
_MAX_NDIM = 8
_MAX_DIM = 2**40
_MAX_DEPTH = 64
_ALIGN = 8
_TAGS = frozenset({"$a", "$b", "$f", "$m"})
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_INT64 = (-(2**63), 2**64 - 1)


def is_record(data: bytes) -> bool:
    """True when ``data`` starts with this format's magic (whatever follows)."""
    return data[: len(MAGIC)] == MAGIC


# ---------------------------------------------------------------------- encode
class _Encoder:
    def __init__(self) -> None:
        self.arrays: list[np.ndarray[Any, Any]] = []

    def array(self, arr: np.ndarray[Any, Any]) -> int:
        dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dt.str not in DTYPES:
            raise TypeError(f"dtype {arr.dtype} cannot be stored; use one of {sorted(DTYPES)}")
        self.arrays.append(np.ascontiguousarray(arr, dtype=dt))
        return len(self.arrays) - 1

    def tree(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError(f"state nests deeper than {_MAX_DEPTH} levels")
        if isinstance(value, list | tuple):
            return [self.tree(v, depth + 1) for v in value]
        if isinstance(value, Mapping):
            if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
                return {k: self.tree(v, depth + 1) for k, v in value.items()}
            return {"$m": [[self.tree(k, depth + 1), self.tree(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, np.ndarray):
            return {"$a": self.array(value)}
        if isinstance(value, bytes | bytearray | memoryview):
            return {"$b": self.array(np.frombuffer(bytes(value), dtype=np.uint8))}
        return _encode_scalar(value)


def _encode_scalar(value: Any) -> Any:
    """A scalar of a tree as JSON (non-finite floats tagged); numpy scalars become Python ones."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        v = int(value)
        if not _INT64[0] <= v <= _INT64[1]:
            raise ValueError(f"integer {v} does not fit 64 bits")
        return v
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else {"$f": "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")}
    raise TypeError(f"{type(value).__name__} cannot be stored (plain data and numpy arrays only)")


def encode(kind: str, version: int, tree: Any) -> bytes:
    """One record of ``kind`` at ``version`` holding ``tree`` (plain data and numpy arrays).

    Raises
    ------
    TypeError, ValueError
        ``tree`` holds something that is not plain data (a bug of the caller).
    """
    enc = _Encoder()
    body = enc.tree(tree)
    specs = []
    offset = 0
    for arr in enc.arrays:
        specs.append({"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset})
        offset += -(-arr.nbytes // _ALIGN) * _ALIGN
    header = orjson.dumps({"kind": kind, "v": version, "tree": body, "arrays": specs})
    payload = bytearray(offset)
    for arr, spec in zip(enc.arrays, specs, strict=True):
        start = spec["offset"]
        payload[start : start + arr.nbytes] = arr.tobytes()
    rest = header + bytes(payload)
    return _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header), zlib.crc32(rest)) + rest


# ---------------------------------------------------------------------- decode
def _read_preamble(data: bytes) -> tuple[int, int]:
    if len(data) < _PREAMBLE.size:
        raise StateError(f"record is {len(data)} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
    magic, fmt, _, header_len, crc = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise StateError(f"not a segmenter state record (starts with {bytes(data[:8])!r}, expected {MAGIC!r})")
    if fmt != FORMAT_VERSION:
        raise StateError(f"state format version {fmt}, this build reads version {FORMAT_VERSION}")
    if header_len > len(data) - _PREAMBLE.size:
        raise StateError(f"record declares a {header_len}-byte header but holds {len(data) - _PREAMBLE.size} bytes")
    if zlib.crc32(memoryview(data)[_PREAMBLE.size :]) != crc:
        raise StateError("record checksum mismatch (truncated or corrupt)")
    return _PREAMBLE.size, header_len


def _arrays(specs: Any, payload: memoryview) -> list[np.ndarray[Any, Any]]:
    if not isinstance(specs, list):
        raise StateError("record header: 'arrays' must be a list")
    out = []
    end = 0
    for i, raw in enumerate(specs):
        what = f"array {i}"
        spec = expect_dict(raw, what)
        dtype = spec.get("dtype")
        if dtype not in DTYPES:
            raise StateError(f"{what}: dtype {dtype!r} is not allowed (allowed: {', '.join(sorted(DTYPES))})")
        shape = expect_list(spec.get("shape"), f"{what} shape")
        if len(shape) > _MAX_NDIM:
            raise StateError(f"{what}: {len(shape)} dimensions, at most {_MAX_NDIM}")
        dims = [expect_int(d, f"{what} shape", 0, _MAX_DIM) for d in shape]
        offset = expect_int(spec.get("offset"), f"{what} offset", end, len(payload))
        dt = np.dtype(dtype)
        nbytes = math.prod(dims) * dt.itemsize
        if offset + nbytes > len(payload):
            raise StateError(f"{what}: declares {nbytes} bytes at offset {offset}, the payload holds {len(payload)}")
        count = math.prod(dims)
        arr = np.frombuffer(payload, dtype=dt, count=count, offset=offset).reshape(dims).copy()
        out.append(arr)
        end = offset + nbytes
    if len(payload) - end >= _ALIGN:
        raise StateError(f"record holds {len(payload) - end} bytes after its last array")
    return out


class _Decoder:
    def __init__(self, arrays: list[np.ndarray[Any, Any]]) -> None:
        self.arrays = arrays

    def _index(self, i: Any) -> np.ndarray[Any, Any]:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.arrays):
            raise StateError(f"record refers to array {i!r}, it holds {len(self.arrays)}")
        return self.arrays[i]

    def _bytes(self, i: Any) -> bytes:
        arr = self._index(i)
        if arr.dtype != np.uint8 or arr.ndim != 1:
            raise StateError("record: a bytes value must be a 1-d |u1 array")
        return arr.tobytes()

    def _mapping(self, arg: Any, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for pair in expect_list(arg, "record mapping"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise StateError("record: a mapping entry must be a [key, value] pair")
            key = self.tree(pair[0], depth + 1)
            if not (key is None or isinstance(key, bool | int | float | str)):
                raise StateError(f"record: mapping key of type {type(key).__name__}")
            out[key] = self.tree(pair[1], depth + 1)
        return out

    def _tagged(self, tag: str, arg: Any, depth: int) -> Any:
        """The value of a one-key tagged object (``tag`` in ``_TAGS``)."""
        if tag == "$a":
            return self._index(arg)
        if tag == "$b":
            return self._bytes(arg)
        if tag == "$f":
            if arg not in _NONFINITE:
                raise StateError(f"record: unknown non-finite float {arg!r}")
            return _NONFINITE[arg]
        return self._mapping(arg, depth)

    def tree(self, value: Any, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise StateError(f"record nests deeper than {_MAX_DEPTH} levels")
        if isinstance(value, list):
            return [self.tree(v, depth + 1) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((tag, arg),) = value.items()
            if tag in _TAGS:
                return self._tagged(tag, arg, depth)
        return {k: self.tree(v, depth + 1) for k, v in value.items()}


def decode(data: bytes, kind: str, version: int) -> Any:
    """The tree of a record written by :func:`encode` with the same ``kind`` and ``version``.

    Raises
    ------
    StateError
        Not a record, another format or record version, another kind, a bad
        checksum, sizes that do not add up, a dtype not in :data:`DTYPES`, or
        a header that is not a valid JSON object.
    """
    start, header_len = _read_preamble(data)
    view = memoryview(data)
    try:
        header = orjson.loads(view[start : start + header_len])
    except orjson.JSONDecodeError as exc:
        raise StateError(f"record header is not JSON: {exc}") from None
    header = expect_dict(header, "record header")
    if header.get("kind") != kind or type(header.get("v")) is not int or header.get("v") != version:
        raise StateError(f"record is a {header.get('kind')!r} v{header.get('v')!r}, expected {kind!r} v{version}")
    arrays = _arrays(header.get("arrays"), view[start + header_len :])
    return _Decoder(arrays).tree(header.get("tree"))


# ---------------------------------------------------------------------- schema checks
def expect_dict(value: Any, what: str) -> dict[Any, Any]:
    """``value`` if it is a mapping, else StateError naming ``what``."""
    if not isinstance(value, dict):
        raise StateError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def expect_list(value: Any, what: str) -> list[Any]:
    """``value`` if it is a list, else StateError naming ``what``."""
    if not isinstance(value, list):
        raise StateError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def expect_str(value: Any, what: str) -> str:
    """``value`` if it is a string, else StateError naming ``what``."""
    if not isinstance(value, str):
        raise StateError(f"{what}: expected a string, got {type(value).__name__}")
    return value


def expect_int(value: Any, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` if it is an integer in ``[lo, hi]``, else StateError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{what}: expected an integer, got {value!r:.40}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise StateError(f"{what}: {value} is outside [{lo}, {hi}]")
    return value


def expect_float(value: Any, what: str, *, finite: bool = True) -> float:
    """``value`` as a float if it is a number (finite unless ``finite=False``), else StateError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"{what}: expected a number, got {value!r:.40}")
    f = float(value)
    if finite and not math.isfinite(f):
        raise StateError(f"{what}: expected a finite number, got {f}")
    return f


def expect_array(
    value: Any, what: str, dtype: type[Any] | np.dtype[Any], shape: tuple[int | None, ...], *, finite: bool = False
) -> np.ndarray[Any, Any]:
    """``value`` if it is an array of ``dtype`` and ``shape`` (``None``: any length), else StateError."""
    if not isinstance(value, np.ndarray):
        raise StateError(f"{what}: expected an array, got {type(value).__name__}")
    if value.dtype != np.dtype(dtype):
        raise StateError(f"{what}: dtype {value.dtype}, expected {np.dtype(dtype)}")
    if value.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, value.shape, strict=True)):
        raise StateError(f"{what}: shape {value.shape}, expected {shape}")
    if finite and value.dtype.kind == "f" and not np.isfinite(value).all():
        raise StateError(f"{what}: holds non-finite values")
    return value
