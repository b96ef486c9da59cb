r"""Text pieces and numbers for JSON written in compiled code (:mod:`segmenter.change_lines`).

:class:`Pieces` is a table of byte strings, each valid JSON text or a part of
it, held as one byte array and offsets; :class:`Numbers` is floats written by
one :func:`orjson.dumps` of all of them (``NaN`` as ``null``, as orjson writes
it), with :func:`number_spans` to find each. Compiled code then only copies
bytes, and what it writes is what orjson writes for the same values.

Examples
--------
>>> text = Pieces()
>>> first = text.strings(['a"b', "c"])
>>> blob, offsets = text.arrays()
>>> [blob[offsets[i] : offsets[i + 1]].tobytes() for i in (first, first + 1)]
[b'"a\\"b"', b'"c"']
>>> numbers = Numbers(np.array([1.5, np.nan])).array()
>>> starts = number_spans(numbers)
>>> [numbers[starts[j] : starts[j + 1] - 1].tobytes() for j in range(2)]
[b'1.5', b'null']
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
from numba import njit

__all__ = ["Numbers", "Pieces", "number_spans"]

_COMMA = ord(",")
_ESCAPED = re.compile(r'["\\\x00-\x1f]')
"""Characters JSON strings escape (orjson: the quote, the backslash and the control characters)."""


class Pieces:
    """A table of text pieces (bytes, each valid JSON text or a part of it); :meth:`add` keeps one copy of each."""

    def __init__(self) -> None:
        self._blobs: list[bytes] = []
        self._lengths: list[int] = []
        self._index: dict[bytes, int] = {}

    def add(self, piece: bytes) -> int:
        """The index of ``piece`` (added once)."""
        i = self._index.get(piece)
        if i is None:
            i = self._index[piece] = len(self._lengths)
            self._blobs.append(piece)
            self._lengths.append(len(piece))
        return i

    def extend(self, blob: bytes, lengths: list[int]) -> int:
        """Add the pieces ``blob`` holds one after another, of ``lengths`` bytes (no look-up: many distinct
        ones); returns the index of the first."""
        start = len(self._lengths)
        self._blobs.append(blob)
        self._lengths.extend(lengths)
        return start

    def strings(self, values: list[str]) -> int:
        """Add each of ``values`` as a JSON string, as :func:`orjson.dumps` writes it; the index of the first."""
        if not values:
            return len(self._lengths)
        joined = "".join(values)
        if joined.isascii() and _ESCAPED.search(joined) is None:  # each one quoted as it is: one blob
            return self.extend(('"' + '""'.join(values) + '"').encode(), [len(v) + 2 for v in values])
        pieces = [orjson.dumps(v) for v in values]
        return self.extend(b"".join(pieces), [len(p) for p in pieces])

    def arrays(self) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]:
        """All pieces as one byte array and the offsets of their starts (one more: the end)."""
        offsets = np.zeros(len(self._lengths) + 1, np.int64)
        if self._lengths:
            np.cumsum(np.array(self._lengths, np.int64), out=offsets[1:])
        return np.frombuffer(b"".join(self._blobs), np.uint8), offsets


class Numbers:
    """Floats written as JSON numbers (``NaN`` as ``null``) by one :func:`orjson.dumps` of all of them.

    orjson writes a float64 array's numbers as it writes the same Python floats (``tests/unit/test_change_blocks.py``).
    """

    def __init__(self, values: np.ndarray[Any, np.dtype[np.float64]]) -> None:
        self._text = orjson.dumps(np.ascontiguousarray(values, np.float64), option=orjson.OPT_SERIALIZE_NUMPY)

    def array(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        """The JSON array of the numbers (``[a,b,...]``) as bytes."""
        return np.frombuffer(self._text, np.uint8)


@njit(cache=True)
def number_spans(numbers: Any) -> Any:  # pragma: no cover - compiled
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
