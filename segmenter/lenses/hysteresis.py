"""Hysteresis: a customer changes segment only when the new one is clearly better.

Two rules, both configurable per lens:

* **margin** - the nearest segment must be closer than ``(1 - margin)`` times the
  distance to the current segment (``margin=0.1``: at least 10 % closer);
* **minimum dwell** - the customer must have spent at least ``min_dwell``
  events in the current segment.

A customer without a current segment, or whose segment is no longer live
(merged or retired), goes to the nearest segment at once.

:func:`nearest_with_hysteresis` is the rule as the product runs it (compiled):
the nearest live segment and the decision in one pass over the centers. The
event loop (:mod:`segmenter.kernel`) and :meth:`Lens.assign
<segmenter.lenses.lens.Lens.assign>` (inactivity sweeps, reassignment after a
merge or retirement) both call it. :class:`Hysteresis` states the same rule
for one decision, readably; a property test holds the two together.

:class:`FlapTracker` measures how often customers flap (A -> B -> A within a
short window), for tests, benchmarks and metrics.

Examples
--------
>>> h = Hysteresis(margin=0.1, min_dwell=2)
>>> h.decide(current=1, current_live=True, d_current=1.0, nearest=2, d_nearest=0.95, dwell=5)
False
>>> h.decide(current=1, current_live=True, d_current=1.0, nearest=2, d_nearest=0.5, dwell=5)
True
>>> h.decide(current=1, current_live=True, d_current=1.0, nearest=2, d_nearest=0.5, dwell=1)
False
>>> t = FlapTracker(window=3)
>>> [t.record("c", s) for s in (1, 2, 1, 1, 3)]
[False, False, True, False, False]
>>> t.moves, t.flaps, round(t.rate, 3)
(3, 1, 0.333)
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

__all__ = ["FlapTracker", "Hysteresis", "nearest_with_hysteresis"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hysteresis:
    """The move rule.

    Parameters
    ----------
    margin
        Relative distance margin in ``[0, 1)``.
    min_dwell
        Minimum events in the current segment before a move.
    """

    margin: float = 0.1
    min_dwell: int = 2

    def decide(
        self,
        *,
        current: int | None,
        current_live: bool,
        d_current: float | None,
        nearest: int,
        d_nearest: float,
        dwell: int,
    ) -> bool:
        """True when the customer should move from ``current`` to ``nearest``."""
        if current is None or not current_live or d_current is None:
            return True
        if nearest == current:
            return False
        if dwell < self.min_dwell:
            return False
        return d_nearest < (1.0 - self.margin) * d_current


@njit(cache=True, inline="always")
def nearest_with_hysteresis(  # noqa: PLR0917 - compiled: positional only
    x: Any, centers: Any, live: Any, nl: int, d: int, cur: int, dw: int, min_dwell: int, keep: float
) -> tuple[bool, int, int, float]:  # pragma: no cover - compiled
    """Nearest live segment with hysteresis: the move rule of every lens, in one place.

    Parameters
    ----------
    x
        The customer's scaled vector (its first ``d`` values are used).
    centers, live
        The lens's scaled live centers (``centers[c, :d]``) and their segment ids, ``nl`` of them.
    cur, dw
        The customer's segment (``-1`` for none) and the events spent in it.
    min_dwell, keep
        The lens's minimum dwell and ``1 - margin``.

    Returns
    -------
    tuple
        ``(moved, segment, nearest, distance)``: whether the customer changes segment, the segment
        it holds afterwards, the nearest live segment, and the distance to ``segment``; ``-1`` and
        NaN where there is none. A customer without a live segment goes to the nearest one at once;
        otherwise it moves only when the nearest is a different segment, it has dwelt ``min_dwell``
        events, and the nearest is closer than ``keep`` times its own (:class:`Hysteresis`
        states the same rule for one decision).
        Ties go to the first center.
    """
    if nl == 0:
        return cur >= 0, -1, -1, np.nan
    best = 0
    d_near = np.inf
    d_cur = np.inf
    pcur = -1
    for c in range(nl):
        s = 0.0
        for j in range(d):
            e = x[j] - centers[c, j]
            s += e * e
        dc = math.sqrt(s)
        if dc < d_near:
            d_near = dc
            best = c
        if live[c] == cur:
            pcur = c
            d_cur = dc
    nearest = live[best]
    if pcur < 0:
        return nearest != cur, nearest, nearest, d_near
    if nearest != cur and dw >= min_dwell and d_near < keep * d_cur:
        return True, nearest, nearest, d_near
    return False, cur, nearest, d_cur


class FlapTracker:
    """Counts moves and flaps (returning to a segment left within ``window`` moves).

    Parameters
    ----------
    window
        How many recent segments per customer are remembered.
    """

    def __init__(self, window: int = 3) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self.window = window
        self.moves = 0
        self.flaps = 0
        self._recent: dict[str, deque[int | None]] = {}

    def record(self, customer: str, segment: int | None) -> bool:
        """Record the customer's segment after an assignment; True when this move is a flap."""
        recent = self._recent.get(customer)
        if recent is None:
            self._recent[customer] = deque([segment], maxlen=self.window)
            return False
        if recent[-1] == segment:
            return False
        self.moves += 1
        flap = segment in recent
        if flap:
            self.flaps += 1
        recent.append(segment)
        return flap

    @property
    def rate(self) -> float:
        """Flaps per move (0.0 without moves)."""
        return self.flaps / self.moves if self.moves else 0.0
