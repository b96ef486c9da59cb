"""Moves decided in compiled code, buffered for Python to turn into ``segment_change`` messages in one pass.

The event loop (:mod:`segmenter.kernel`) and the re-scorer (:mod:`segmenter.rescoring`)
apply a move to the store's lens columns themselves (segment, dwell, entry
time, previous segment, model version, no pending move) and record it here (:func:`apply`):
the row, lens, old and new segment, the event that caused it (``-1``: none),
its event time, the customer's latest event time then, the distance and every
feature of the row at that time (one :class:`Move` per row of its columns).
Python reads the buffer's columns in order to build the messages, lens
membership counts and campaign triggers, then clears it (:meth:`MoveBuffer.clear`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from segmenter.features import FEATURE_NAMES, NO_PENDING

__all__ = ["MOVE_CAPACITY", "M_LENS", "M_ROW", "Move", "MoveBuffer", "MoveColumns", "apply"]

MOVE_CAPACITY = 4096
"""Moves the event loop buffers before it stops to hand them over (``Stop.MOVES``)."""
M_ROW, M_LENS, M_FROM, M_TO, M_EVENT, M_AT, M_LAST = range(7)
"""Columns of :attr:`MoveBuffer.ints`."""
_N_INTS = 7


class MoveColumns(NamedTuple):
    """The buffer's arrays as the compiled code takes them."""

    ints: Any
    dist: Any
    vals: Any
    count: Any


class Move(NamedTuple):
    """One buffered move (``-1``: no segment, no event; ``distance`` NaN: none)."""

    row: int
    lens: int
    old: int
    new: int
    event: int
    at: int
    last: int
    distance: float


class MoveBuffer:
    """Moves recorded by compiled code since the last :meth:`clear` (see the module).

    Parameters
    ----------
    capacity
        Moves it holds.
    """

    def __init__(self, capacity: int = MOVE_CAPACITY) -> None:
        self.ints = np.empty((capacity, _N_INTS), np.int64)
        self.dist = np.empty(capacity, np.float64)
        self.vals = np.empty((capacity, len(FEATURE_NAMES)), np.float64)
        self.count = np.zeros(1, np.int64)
        self.columns = MoveColumns(self.ints, self.dist, self.vals, self.count)

    def __len__(self) -> int:
        return int(self.count[0])

    def permute(self, order: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        """Reorder the buffered moves: the ``m``-th becomes the one that was ``order[m]``."""
        n = len(self)
        self.ints[:n] = self.ints[order]
        self.dist[:n] = self.dist[order]
        self.vals[:n] = self.vals[order]

    def values(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Every feature of each buffered move's row at its time, shape ``(len(self), len(FEATURE_NAMES))``."""
        return self.vals[: len(self)]

    def clear(self) -> None:
        """Forget the buffered moves (they were handed over)."""
        self.count[0] = 0

    def parts(self, size: int) -> Iterator[MoveBuffer]:
        """The buffered moves in order as buffers of at most ``size`` moves (views into this one), then clears it.

        A mass move (a sweep's or a dead segment's re-scoring) is turned into its messages one part at a time.
        """
        n = len(self)
        for start in range(0, n, size):
            stop = min(n, start + size)
            part = MoveBuffer(0)
            part.ints, part.dist, part.vals = self.ints[start:stop], self.dist[start:stop], self.vals[start:stop]
            part.count[0] = stop - start
            part.columns = MoveColumns(part.ints, part.dist, part.vals, part.count)
            yield part
        self.clear()


@njit(cache=True, inline="always")
def _holds(live: Any, segment: int) -> bool:  # pragma: no cover - compiled
    """Whether ``segment`` is one of the lens's live segment ids ``live``."""
    for s in live:  # noqa: SIM110 - compiled: a loop, not np.any(live == segment) (no temporary array)
        if s == segment:
            return True
    return False


@njit(cache=True, inline="always")
def apply(  # noqa: PLR0913, PLR0917 - compiled: positional arguments only
    cols: Any, buf: MoveColumns, move: Any, dist: float, vals: Any, live: Any
) -> bool:  # pragma: no cover - compiled
    """Apply one move to the store's lens columns and append it to ``buf``; True when the buffer is now full.

    ``cols``: the store's ``(seg, dwell, since, prev, mver, pend)`` columns; ``move``: ``(row, lens, old, new, event,
    at, last, version)`` (as :class:`Move`, plus the lens's model version); ``vals``: every feature of the row
    at ``at``; ``live``: the lens's live segment ids. The store's side is :meth:`FeatureStore.enter`'s:
    previous segment, entry time, model version, segment, dwell 0, no pending move - except that a customer
    whose segment died under it (a ``model`` move) keeps its previous segment: the move rule's "segment just
    left" stays the customer's own last choice.
    """
    seg, dwell, since, prev, mver, pend = cols
    row, li, old, new, event, at, last, version = move
    held = seg[row, li]
    if held < 0 or _holds(live, held):
        prev[row, li] = held
    since[row, li] = at
    mver[row, li] = version
    seg[row, li] = new
    dwell[row, li] = 0
    pend[row, li] = NO_PENDING
    ints, dd, vv, count = buf
    n = count[0]
    ints[n, M_ROW] = row
    ints[n, M_LENS] = li
    ints[n, M_FROM] = old
    ints[n, M_TO] = new
    ints[n, M_EVENT] = event
    ints[n, M_AT] = at
    ints[n, M_LAST] = last
    dd[n] = dist
    for j in range(len(vals)):  # a loop, not vv[n, :] = vals: a slice copy brings its shape-error formatting code
        vv[n, j] = vals[j]
    count[0] = n + 1
    return bool(n + 1 >= len(dd))
