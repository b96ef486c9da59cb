"""JSON lines assembled from pieces in one compiled pass: the byte writer of :mod:`segmenter.change_blocks`.

A line is a row of *ops*, each naming a piece of text or a number: ``op >= 0``
is text piece ``op`` of a :class:`Pieces` table, ``op <= -2`` is number
``-2 - op`` of a :class:`Numbers` list, ``-1`` writes nothing. Every piece is
already JSON (orjson wrote it), and the numbers are written by one
:func:`orjson.dumps` of all of them, so the bytes are exactly those orjson
writes for the same values one message at a time (``NaN`` becomes ``null``,
as orjson writes it). :func:`assemble` only copies bytes.

Examples
--------
>>> text = Pieces()
>>> ops = np.array([[text.add(b'{"x":'), -2, text.add(b"}\\n")], [text.add(b'{"x":'), -3, text.add(b"}\\n")]])
>>> assemble(ops, text, Numbers(np.array([1.5, np.nan])))
b'{"x":1.5}\\n{"x":null}\\n'
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
from numba import njit

__all__ = ["NOTHING", "Numbers", "Pieces", "assemble", "number_op"]

NOTHING = -1
"""The op that writes nothing (a slot a shorter line leaves empty)."""
_COMMA = ord(",")
_ESCAPED = re.compile(r'["\\\x00-\x1f]')
"""Characters JSON strings escape (orjson: the quote, the backslash and the control characters)."""


def number_op(index: Any) -> Any:
    """The op that writes number ``index`` (an int or an int array) of a :class:`Numbers` list."""
    return -2 - index


class Pieces:
    """A table of text pieces (bytes, each valid JSON text or a part of it); :meth:`add` keeps one copy of each."""

    def __init__(self) -> None:
        self._blobs: list[bytes] = []
        self._lengths: list[Any] = []
        self._count = 0
        self._index: dict[bytes, int] = {}

    def add(self, piece: bytes) -> int:
        """The index of ``piece`` (added once)."""
        i = self._index.get(piece)
        if i is None:
            i = self._index[piece] = self.extend(piece, [len(piece)])
        return i

    def extend(self, blob: bytes, lengths: Any) -> int:
        """Add the pieces ``blob`` holds one after another, of ``lengths`` bytes (no look-up: many distinct
        ones); returns the index of the first."""
        start = self._count
        self._blobs.append(blob)
        self._lengths.append(np.asarray(lengths, np.int64))
        self._count += len(self._lengths[-1])
        return start

    def strings(self, values: list[str]) -> int:
        """Add each of ``values`` as a JSON string, as :func:`orjson.dumps` writes it; the index of the first."""
        if not values:
            return self._count
        joined = "".join(values)
        if joined.isascii() and _ESCAPED.search(joined) is None:  # each one quoted as it is: one blob
            return self.extend(('"' + '""'.join(values) + '"').encode(), np.fromiter(map(len, values), np.int64,
                                                                                     len(values)) + 2)  # fmt: skip
        pieces = [orjson.dumps(v) for v in values]
        return self.extend(b"".join(pieces), [len(p) for p in pieces])

    def arrays(self) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]:
        """All pieces as one byte array and the offsets of their starts (one more: the end)."""
        offsets = np.zeros(self._count + 1, np.int64)
        if self._count:
            np.cumsum(np.concatenate(self._lengths), out=offsets[1:])
        return np.frombuffer(b"".join(self._blobs), np.uint8), offsets


class Numbers:
    """Floats written as JSON numbers (``NaN`` as ``null``) by one :func:`orjson.dumps` of all of them.

    orjson writes a float64 array's numbers as it writes the same Python floats (``tests/unit/test_line_writer.py``).
    """

    def __init__(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        self._text = orjson.dumps(np.ascontiguousarray(values, np.float64), option=orjson.OPT_SERIALIZE_NUMPY)

    def array(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """The JSON array of the numbers (``[a,b,...]``) as bytes."""
        return np.frombuffer(self._text, np.uint8)


def assemble(ops: np.ndarray[Any, np.dtype[np.int64]], text: Pieces, numbers: Numbers) -> bytes:
    """Every row of ``ops`` written out (see the module), rows one after another."""
    blob, offsets = text.arrays()
    return _assemble(np.ascontiguousarray(ops, np.int64), blob, offsets, numbers.array()).tobytes()  # type: ignore[no-any-return]


@njit(cache=True)
def _number_spans(numbers: Any) -> Any:  # pragma: no cover - compiled
    """Start of each number of a JSON array of numbers (no number holds a comma), and one more: number ``j`` is
    ``numbers[starts[j]:starts[j + 1] - 1]``."""
    count = 0
    for i in range(len(numbers)):
        count += numbers[i] == _COMMA
    starts = np.empty(count + 2, np.int64)
    starts[0] = 1  # after "["
    k = 1
    for i in range(len(numbers)):
        if numbers[i] == _COMMA:
            starts[k] = i + 1
            k += 1
    starts[k] = len(numbers)  # as if a comma stood after the closing "]": the last number ends before it
    return starts


@njit(cache=True, inline="always")
def _span(op: int, offsets: Any, starts: Any) -> tuple[int, int]:  # pragma: no cover - compiled
    """Where op ``op`` (>= 0: text, <= -2: a number) reads its bytes; ``(0, 0)`` for -1."""
    if op >= 0:
        return offsets[op], offsets[op + 1]
    if op <= -2:
        return starts[-2 - op], starts[-1 - op] - 1
    return 0, 0


@njit(cache=True)
def _assemble(ops: Any, text: Any, offsets: Any, numbers: Any) -> Any:  # pragma: no cover - compiled
    starts = _number_spans(numbers)
    total = 0
    for m in range(ops.shape[0]):
        for k in range(ops.shape[1]):
            a, b = _span(ops[m, k], offsets, starts)
            total += b - a
    out = np.empty(total, np.uint8)
    w = 0
    for m in range(ops.shape[0]):
        for k in range(ops.shape[1]):
            op = ops[m, k]
            a, b = _span(op, offsets, starts)
            src = text if op >= 0 else numbers
            for i in range(a, b):  # short pieces: a loop beats a slice copy
                out[w] = src[i]
                w += 1
    return out
