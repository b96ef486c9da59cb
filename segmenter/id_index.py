"""``IdIndex``: customer id -> row, in a few numpy arrays instead of a dict of strings.

A Python ``dict[str, int]`` costs about 140 bytes per customer at a million
customers (the id string, the dict entry, the row's int object, a reverse
list). Here the ids' UTF-8 bytes sit end to end in one ``uint8`` arena (each
row keeps its ``uint32`` offset and ``uint16`` length: 6 bytes), and an
open-addressing table of ``int32`` rows (linear probing, FNV-1a hashes of the
bytes, load at most one half: 8 to 16 bytes) finds a row: about 25 bytes per
customer with ids like ``c0001234`` (the arena grows by half when full). The
arena holds at most 4 GiB of ids (hundreds of millions of customers). Lookups run compiled (numba), one call for
a whole batch (:meth:`IdIndex.get_many`).

Removing an id shifts the following entries of its probe run back (no
tombstones) and zeroes its bytes in the arena (an erased id is gone at once);
the zeroed space is garbage until garbage exceeds the live bytes, when the
arena is compacted.

Examples
--------
>>> index = IdIndex()
>>> index.add("c1", 0); index.add("c2", 1)
>>> index.get("c2"), index.get("nobody"), index.id_of(0)
(1, None, 'c1')
>>> index.get_many(["c1", "c3", "c2"]).tolist()
[0, -1, 1]
>>> index.remove("c1"), index.get("c1"), len(index)
(0, None, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

__all__ = ["IdIndex"]

_EMPTY = -1
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIN_TABLE = 1024
_Arrays = tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8], npt.NDArray[np.uint32], npt.NDArray[np.uint16]]
"""The arrays the compiled helpers take as one argument ``ix``: ``(table, arena, offsets, lengths)``."""
_MAX_ARENA = 2**32
"""Arena bytes addressable by the ``uint32`` offsets."""
_FEW = 16
"""Fewer rows than this: :meth:`IdIndex.ids_of` reads them one by one."""


@njit(cache=True)
def _hash(buf: Any, start: int, end: int) -> Any:  # pragma: no cover - compiled
    h = _FNV_OFFSET
    for k in range(start, end):
        h = (h ^ np.uint64(buf[k])) * _FNV_PRIME
    return h


@njit(cache=True)
def _find(ix: Any, buf: Any, start: int, end: int) -> Any:  # pragma: no cover - compiled
    """The slot holding the id ``buf[start:end]``, or ``-(empty slot) - 1`` where it would go.

    ``ix``: the index's arrays ``(table, arena, off, ln)`` (:meth:`IdIndex._arrays`).
    """
    table, arena, off, ln = ix
    mask = len(table) - 1
    slot = np.int64(_hash(buf, start, end) & np.uint64(mask))
    n = end - start
    while True:
        r = table[slot]
        if r < 0:
            return -slot - 1
        if ln[r] == n:
            o = off[r]
            same = True
            for k in range(n):
                if arena[o + k] != buf[start + k]:
                    same = False
                    break
            if same:
                return slot
        slot = (slot + 1) & mask


@njit(cache=True)
def _get_many(ix: Any, buf: Any, ends: Any, out: Any) -> None:  # pragma: no cover - compiled
    table = ix[0]
    start = 0
    for i in range(len(ends)):
        slot = _find(ix, buf, start, ends[i])
        out[i] = table[slot] if slot >= 0 else -1
        start = ends[i]


@njit(cache=True)
def _delete(ix: Any, slot: int) -> None:  # pragma: no cover - compiled
    """Empty ``slot`` and shift later members of its probe run back (Knuth's algorithm R)."""
    table, arena, off, ln = ix
    mask = len(table) - 1
    i = slot
    table[i] = _EMPTY
    j = i
    while True:
        j = (j + 1) & mask
        r = table[j]
        if r < 0:
            return
        home = np.int64(_hash(arena, off[r], off[r] + ln[r]) & np.uint64(mask))
        # leave r where it is if its home lies cyclically in (i, j]
        if (i < j and i < home <= j) or (i > j and (home > i or home <= j)):
            continue
        table[i] = r
        table[j] = _EMPTY
        i = j


@njit(cache=True)
def _insert_many(ix: Any, buf: Any, ends: Any, rows: Any, used: int) -> int:  # pragma: no cover - compiled
    """Append the ids ``buf`` (cut at ``ends``) to the arena, mapped to ``rows``; ``-(i + 1)``: id ``i`` is held."""
    table, arena, off, ln = ix
    start = 0
    for i in range(len(ends)):
        end = ends[i]
        slot = _find(ix, buf, start, end)
        if slot >= 0:
            return -(i + 1)
        n = end - start
        r = rows[i]
        for k in range(n):
            arena[used + k] = buf[start + k]
        off[r] = used
        ln[r] = n
        used += n
        table[-slot - 1] = r
        start = end
    return used


@njit(cache=True)
def _remove_rows(ix: Any, rows: Any) -> int:  # pragma: no cover - compiled
    """Forget the ids of ``rows`` (held), zeroing their bytes; returns the bytes they leave in the arena."""
    arena, off, ln = ix[1], ix[2], ix[3]
    freed = 0
    for r in rows:
        o = off[r]
        n = ln[r]
        slot = _find(ix, arena, o, o + n)
        _delete(ix, slot)
        arena[o : o + n] = 0  # an erased id leaves no bytes behind, even before the compaction
        freed += n
        ln[r] = 0
    return freed


@njit(cache=True)
def _fill(ix: Any, rows: Any) -> None:  # pragma: no cover - compiled
    table, arena, off, ln = ix
    mask = len(table) - 1
    for r in rows:
        slot = np.int64(_hash(arena, off[r], off[r] + ln[r]) & np.uint64(mask))
        while table[slot] >= 0:
            slot = (slot + 1) & mask
        table[slot] = r


@njit(cache=True)
def _gather_keys(arena: Any, off: Any, ln: Any, rows: Any, out: Any) -> None:  # pragma: no cover - compiled
    for i in range(len(rows)):
        o = off[rows[i]]
        for k in range(ln[rows[i]]):
            out[i, k] = arena[o + k]


class IdIndex:
    """Customer id -> row number for the rows of a :class:`~segmenter.features.FeatureStore` (see the module)."""

    def __init__(self) -> None:
        self._table: npt.NDArray[np.int32] = np.full(_MIN_TABLE, _EMPTY, np.int32)
        self._arena: npt.NDArray[np.uint8] = np.zeros(4096, np.uint8)
        self._used = 0
        self._garbage = 0
        self._off: npt.NDArray[np.uint32] = np.zeros(0, np.uint32)
        self._len: npt.NDArray[np.uint16] = np.zeros(0, np.uint16)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return self._table.nbytes + self._arena.nbytes + self._off.nbytes + self._len.nbytes

    def reserve_rows(self, capacity: int) -> None:
        """Make room for row numbers below ``capacity``."""
        n = len(self._off)
        if capacity > n:
            self._off = np.concatenate([self._off, np.zeros(capacity - n, np.uint32)])
            self._len = np.concatenate([self._len, np.zeros(capacity - n, np.uint16)])

    def _arrays(self) -> _Arrays:
        """What the compiled helpers take: ``(table, arena, offsets, lengths)`` (rebuilt: growth replaces arrays)."""
        return self._table, self._arena, self._off, self._len

    def _key(self, customer_id: str) -> npt.NDArray[np.uint8]:
        return np.frombuffer(customer_id.encode(), np.uint8)

    def get(self, customer_id: str) -> int | None:
        """The id's row, or ``None``."""
        key = self._key(customer_id)
        slot = _find(self._arrays(), key, 0, len(key))
        return int(self._table[slot]) if slot >= 0 else None

    def get_many(self, ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of many ids at once (``-1``: unknown)."""
        encoded = [c.encode() for c in ids]
        buf = np.frombuffer(b"".join(encoded), np.uint8)
        ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)))
        out = np.empty(len(encoded), np.int64)
        if encoded:
            _get_many(self._arrays(), buf, ends, out)
        return out

    def id_of(self, row: int) -> str:
        """The id stored for ``row`` (the caller knows the row is live)."""
        o = int(self._off[row])
        return self._arena[o : o + int(self._len[row])].tobytes().decode()

    def ids_of(self, rows: npt.NDArray[np.int64]) -> list[str]:
        """The ids stored for many ``rows`` at once, in order (the caller knows every row is live)."""
        if len(rows) < _FEW:  # the gather's fixed cost is worth it for many rows only
            return [self.id_of(row) for row in rows.tolist()]
        lengths = self._len[rows].astype(np.int64)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        # one gather of every id's bytes, back to back
        first = self._off[rows].astype(np.int64) - starts
        picked = np.repeat(first, lengths) + np.arange(int(ends[-1]), dtype=np.int64)
        data = self._arena[picked].tobytes()
        bounds = zip(starts.tolist(), ends.tolist(), strict=True)
        if data.isascii():  # one decode, then str slices at the same offsets
            text = data.decode("ascii")
            return [text[a:b] for a, b in bounds]
        return [data[a:b].decode() for a, b in bounds]

    def order_of(self, rows: npt.NDArray[np.int64], extra: Sequence[str] = ()) -> npt.NDArray[np.int64]:
        """The order that sorts the ids of ``rows`` followed by ``extra`` as ``sorted`` sorts the strings.

        Indexes into ``rows`` then ``extra`` (``len(rows) + i`` for ``extra[i]``). No string is made per row: the
        ids' UTF-8 bytes (whose order is the code points' order) are gathered into one fixed-width bytes array
        (NUL-padded, so that an id and itself followed by NULs tie; the shorter goes first, as in ``sorted``).
        """
        encoded = [c.encode() for c in extra]
        lengths = np.concatenate([self._len[rows].astype(np.int64), np.fromiter(map(len, encoded), np.int64)])
        width = max(1, int(lengths.max(initial=0)))
        keys = np.zeros((len(lengths), width), np.uint8)
        if len(rows):
            _gather_keys(self._arena, self._off, self._len, rows, keys)
        for i, e in enumerate(encoded, len(rows)):
            keys[i, : len(e)] = np.frombuffer(e, np.uint8)
        order: npt.NDArray[np.int64] = np.lexsort((lengths, keys.view(f"S{width}").ravel()))
        return order

    def add(self, customer_id: str, row: int) -> None:
        """Map a new id to ``row`` (row arrays grow as needed; :meth:`reserve_rows` avoids repeated growth).

        Raises
        ------
        KeyError
            The id is already present.
        """
        key = self._key(customer_id)
        n = len(key)
        if row >= len(self._off):
            self.reserve_rows(max(row + 1, 2 * len(self._off)))
        if (self._count + 1) * 2 > len(self._table):
            self._rehash(len(self._table) * 2)
        slot = _find(self._arrays(), key, 0, n)
        if slot >= 0:
            raise KeyError(f"customer {customer_id!r} is already indexed")
        self._make_room(n)
        self._arena[self._used : self._used + n] = key
        self._off[row] = self._used
        self._len[row] = n
        self._used += n
        self._table[-slot - 1] = row
        self._count += 1

    def add_many(self, ids: Sequence[str], rows: npt.NDArray[np.int64]) -> None:
        """Map new, distinct ids to ``rows`` in one compiled call (:meth:`add` for many).

        Raises
        ------
        KeyError
            An id is already present (or given twice); ids before it were added.
        """
        if not len(ids):
            return
        encoded = [c.encode() for c in ids]
        buf = np.frombuffer(b"".join(encoded), np.uint8)
        ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)))
        top = int(rows.max()) + 1
        if top > len(self._off):
            self.reserve_rows(max(top, 2 * len(self._off)))
        size = len(self._table)
        while (self._count + len(ids)) * 2 > size:
            size *= 2
        if size != len(self._table):
            self._rehash(size)
        self._make_room(len(buf))
        used = _insert_many(self._arrays(), buf, ends, rows, self._used)
        if used < 0:
            done = -used - 1
            self._count += done
            self._used = int(self._off[rows[done - 1]] + self._len[rows[done - 1]]) if done else self._used
            raise KeyError(f"customer {ids[done]!r} is already indexed")
        self._used = used
        self._count += len(ids)

    def _make_room(self, n: int) -> None:
        """Grow the arena (by half) so that ``n`` more bytes fit.

        Raises
        ------
        MemoryError
            The ids would take more than the 4 GiB the offsets address.
        """
        need = self._used + n
        if need <= len(self._arena):
            return
        if need > _MAX_ARENA:
            raise MemoryError(f"customer ids beyond {_MAX_ARENA} bytes: run more instances (partitions) instead")
        grown = np.zeros(min(_MAX_ARENA, max(len(self._arena) * 3 // 2, need)), np.uint8)
        grown[: self._used] = self._arena[: self._used]
        self._arena = grown

    def remove_rows(self, rows: npt.NDArray[np.int64]) -> None:
        """Forget the ids of many held rows in one compiled call."""
        if not len(rows):
            return
        self._garbage += int(_remove_rows(self._arrays(), rows))
        self._count -= len(rows)
        if self._garbage > max(self._used - self._garbage, 1 << 16):
            self._compact()

    def remove(self, customer_id: str) -> int | None:
        """Forget an id; returns its row (``None``: unknown)."""
        row = self.get(customer_id)
        if row is not None:
            self.remove_rows(np.array([row], np.int64))
        return row

    def clear(self) -> None:
        """Forget every id (rows stay reserved)."""
        self._table = np.full(_MIN_TABLE, _EMPTY, np.int32)
        self._used = self._garbage = self._count = 0
        self._len[:] = 0

    def _live_rows(self) -> npt.NDArray[np.int64]:
        rows = self._table[self._table >= 0].astype(np.int64)
        rows.sort()
        return rows

    def _rehash(self, size: int) -> None:
        rows = self._live_rows()
        self._table = np.full(size, _EMPTY, np.int32)
        _fill(self._arrays(), rows)

    def _compact(self) -> None:
        rows = self._live_rows()
        arena = np.zeros(max(4096, (self._used - self._garbage) * 3 // 2), np.uint8)
        used = 0
        for r in rows.tolist():
            o, n = int(self._off[r]), int(self._len[r])
            arena[used : used + n] = self._arena[o : o + n]
            self._off[r] = used
            used += n
        self._arena, self._used, self._garbage = arena, used, 0
