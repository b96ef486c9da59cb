"""The binary changelog record of a customer (version 2), built for many customers at once from the columns.

A version-1 record (written before this one; restore still reads it) is a JSON object: ``"f"`` (the
accumulators), ``"t"`` (times), ``"h"`` (event ids), ``"s"`` (per lens), ``"v"`` and ``"e"``; building one cost
about 8 us of Python per customer, the largest part of a commit. A version-2
record holds the same values as the columns hold them, little-endian, so a commit's records are one
structured-array copy of the dirty rows and a slice per customer. Layout::

    0x02                                   version (a version-1 record starts with "{")
    u1 accumulators, u1 times, u1 ring slots, u1 lenses
    i8 base epoch                          the stored times are int32 seconds since it
    per lens: u1 length, the UTF-8 name    (a restore places the lenses by name, as version 1)
    f4 x accumulators, i4 x times, u4 x ring slots, u1 ring position,
    per lens: i2 segment, u2 dwell, i4 since, i2 previous, i4 model version, i4 pending since
    the trigger state as JSON, to the end (nothing: none)

:func:`decode` turns one back into the version-1 object (the same values, ``None`` where version 1 has
``None``), so restore checks and loads both versions by one path
(:meth:`~segmenter.features.FeatureStore.load_record`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from segmenter.errors import StateError
from segmenter.features import _LPUR, _NO_TIME, _NT, BASE_EPOCH, NO_PENDING, FeatureStore

__all__ = ["VERSION", "decode", "encode_rows"]

VERSION = 2
_HEAD = struct.Struct("<BBBBBq")
_LENS_FIELDS = (("seg", "<i2"), ("dwell", "<u2"), ("since", "<i4"), ("prev", "<i2"), ("mver", "<i4"), ("pend", "<i4"))


def _body(nf: int, nt: int, slots: int, lenses: int) -> np.dtype[np.void]:
    """The fixed part of a record after its names: one packed row of the columns."""
    fields: list[tuple[str, str, tuple[int, ...]]] = [
        ("f", "<f4", (nf,)),
        ("t", "<i4", (nt,)),
        ("h", "<u4", (slots,)),
        ("hpos", "<u1", ()),
    ]
    fields += [(name, kind, (lenses,)) for name, kind in _LENS_FIELDS]
    return np.dtype(fields)


def _prefix(store: FeatureStore, lens_names: Sequence[str]) -> bytes:
    names = [name.encode() for name in lens_names]
    if any(len(name) > 255 for name in names) or len(names) > 255 or store.dedup_size > 255:
        raise ValueError("a binary customer record holds at most 255 lenses, ring slots and name bytes")
    head = _HEAD.pack(VERSION, store.f.shape[1], _NT, store.dedup_size, len(names), BASE_EPOCH)
    return head + b"".join(bytes((len(name),)) + name for name in names)


def _rings(store: FeatureStore, rows: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8]]:
    """The remembered event ids of ``rows`` as a restore places them: oldest first from slot 0, empty slots
    last, the next slot to write after them; so a restored customer writes the record it was restored from."""
    slots = store.dedup_size
    if not slots:
        return np.zeros((len(rows), 0), np.uint32), np.zeros(len(rows), np.uint8)
    roll = (np.arange(slots) + store.hpos[rows].astype(np.intp)[:, None]) % slots
    ring = np.take_along_axis(store.h[rows, :slots], roll, axis=1)
    empty = ring == 0
    ring = np.take_along_axis(ring, np.argsort(empty, axis=1, kind="stable"), axis=1)
    return ring, ((slots - empty.sum(axis=1)) % slots).astype(np.uint8)


def encode_rows(
    store: FeatureStore,
    rows: npt.NDArray[np.int64],
    lens_names: Sequence[str],
    triggers: Callable[[int], dict[str, Any] | None] | None = None,
) -> list[bytes]:
    """The version-2 records of ``rows``, in order; ``triggers(i)``: the trigger state of the ``i``-th row."""
    lenses = len(lens_names)
    slots = store.dedup_size
    body = np.empty(len(rows), _body(store.f.shape[1], _NT, slots, lenses))
    body["f"] = store.f[rows]
    body["t"] = store.t[rows, :_NT]
    body["h"], body["hpos"] = _rings(store, rows)
    for name, _ in _LENS_FIELDS:
        body[name] = getattr(store, name)[rows, :lenses]
    prefix = _prefix(store, lens_names)
    raw = memoryview(body.tobytes())
    width = body.dtype.itemsize
    if triggers is None:
        return [prefix + raw[at : at + width] for at in range(0, len(raw), width)]
    out = []
    dumps = orjson.dumps
    for i, at in enumerate(range(0, len(raw), width)):
        state = triggers(i)
        out.append(prefix + raw[at : at + width] + (b"" if state is None else dumps(state)))
    return out


def decode(customer_id: str, record: bytes) -> dict[str, Any]:
    """The version-1 object (``f``, ``t``, ``h``, ``s``, ``v``: 2, ``e``) of a version-2 record.

    Raises
    ------
    StateError
        The record is cut short or its trigger state is not JSON.
    """
    what = f"customer {customer_id!r}"
    try:
        _, nf, nt, slots, lenses, base = _HEAD.unpack_from(record)
        at = _HEAD.size
        names = []
        for _ in range(lenses):
            size = record[at]
            names.append(record[at + 1 : at + 1 + size].decode())
            at += 1 + size
        body = np.frombuffer(record, _body(nf, nt, slots, lenses), count=1, offset=at)[0]
        tail = record[at + body.dtype.itemsize :]
        triggers = orjson.loads(tail) if tail else None
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise StateError(f"{what}: malformed binary record: {exc}") from None
    times = [int(x) + base for x in body["t"].tolist()]
    if nt > _LPUR and body["t"][_LPUR] == _NO_TIME:
        times[_LPUR] = None
    ring = body["h"].tolist()
    pos = int(body["hpos"]) if slots else 0
    lens = [body[name].tolist() for name, _ in _LENS_FIELDS]
    segs = {}
    for i, name in enumerate(names):
        seg, dwell, since, prev, mver, pend = (column[i] for column in lens)
        segs[name] = [seg, dwell, since + base, prev, mver, None if pend == NO_PENDING else pend + base]
    return {
        "f": body["f"].tolist(),
        "t": times,
        "h": [x for x in ring[pos:] + ring[:pos] if x],  # oldest first (as written: from slot 0)
        "s": segs,
        "v": VERSION,
        "e": triggers,
    }
