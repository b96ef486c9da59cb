"""Hysteresis: a customer changes segment only when the new one is clearly better.

Six rules, the first five configurable per lens:

* **margin** - the nearest segment must be closer than ``(1 - margin)`` times the
  distance to the current segment (``margin=0.1``: at least 10 % closer);
* **minimum dwell** - the customer must have spent at least ``min_dwell``
  events in the current segment, or ``dwell_time_s`` seconds of event time in it,
  whichever comes first (a quiet customer, re-scored at the inactivity sweeps or
  buying rarely, would otherwise be held for weeks where the centers no longer put it),
* **and**, to move back to the segment it just left, at least ``min_dwell_s``
  seconds of event time in the current one (a customer with 50 events a day
  passes an event count in minutes); a move onwards (to a third segment, or
  from a first assignment, which is provisional) is not held by it: holding
  every move kept customers for days in segments they had already left behind;
* **return margin** - a move back to the segment the customer just left, within
  ``return_window_s`` seconds of leaving it, needs the larger ``return_margin``;
* **pending move** - a customer whose nearest segment has been another one than
  its own at every scoring for ``hold_s`` seconds of event time moves to it
  without the margin (the dwell rules still hold). The margin stops a customer
  on a boundary from flapping, but without an end it held 9-17 % of customers
  in a segment that was no longer their nearest. The start of the stretch is
  one column per customer and lens (the store's ``pend``,
  :data:`~segmenter.features.NO_PENDING`: none), kept by :func:`pending_since`;
* **clock veto** - a move the clock alone would undo is not made: with only its clock
  features run ahead by ``min_dwell_s`` (recency and tenure grown, everything else as
  now), the customer must not be farther from the target than from its own segment
  (:func:`holds_ahead`, applied after :func:`nearest_with_hysteresis` allowed a move).

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

from segmenter.features import NO_PENDING

__all__ = [
    "RULE_FIELDS",
    "FlapTracker",
    "Hysteresis",
    "distance",
    "guard_s",
    "holds_ahead",
    "nearest_with_hysteresis",
    "pending_since",
    "waited",
]

RULE_FIELDS = (
    "min_dwell", "keep", "min_dwell_s", "return_window_s", "return_keep", "hold_s", "shrink", "dwell_time_s",
)  # fmt: skip
"""Layout of a lens's move-rule parameters (float64), as :func:`nearest_with_hysteresis` reads them."""
_R_DWELL, _R_KEEP, _R_DWELL_S, _R_RETURN_S, _R_RETURN_KEEP, _R_HOLD_S, _R_SHRINK, _R_DWELL_T = range(len(RULE_FIELDS))

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
    dwell_time_s: float = math.inf
    """Event time in the current segment (seconds) after which ``min_dwell`` is met with fewer events."""
    min_dwell_s: int = 0
    """Minimum event time in the current segment before a move back to ``previous`` (seconds)."""
    return_window_s: int = 0
    """A move back to the segment just left within this long of leaving it needs ``return_margin``."""
    return_margin: float = 0.1
    hold_s: float = math.inf
    """A customer whose nearest segment has been another one for this long moves without the margin."""
    shrink: bool = False
    """The margin shrinks linearly to 0 over the ``hold_s`` of a pending move (instead of all or nothing)."""

    def decide(  # noqa: PLR0913 - the readable twin of nearest_with_hysteresis: one named argument per input
        self,
        *,
        current: int | None,
        current_live: bool,
        d_current: float | None,
        nearest: int,
        d_nearest: float,
        dwell: int,
        age: int = 2**62,
        previous: int | None = None,
        pending: int = -1,
        ahead: tuple[float, float] | None = None,
    ) -> bool:
        """True when the customer should move from ``current`` to ``nearest``.

        ``age`` is the event time (seconds) since the customer entered ``current``,
        ``previous`` the segment it left then, ``pending`` the event time since its
        nearest segment has been another one (``-1``: it is ``current``). ``ahead``:
        the distances to ``current`` and ``nearest`` with only the clock features run
        ahead by ``min_dwell_s`` (:func:`holds_ahead`; None: the same as now); a move
        the clock alone would undo (``nearest`` farther then) is not made.
        """
        if current is None or not current_live:
            return True
        clock_holds = ahead is None or ahead[1] <= ahead[0]  # the clock's veto (holds_ahead) on any move below
        if d_current is None:
            return clock_holds
        if nearest == current:
            return False
        back = nearest == previous
        if (dwell < self.min_dwell and age < self.dwell_time_s) or (back and age < self.min_dwell_s):
            return False
        returning = back and age < self.return_window_s
        keep = 1.0 - (max(self.margin, self.return_margin) if returning else self.margin)
        if self.shrink and 0 < pending < self.hold_s:
            keep = 1.0 - (1.0 - keep) * (1.0 - pending / self.hold_s)
        return clock_holds and (d_nearest < keep * d_current or pending >= self.hold_s)

    def params(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The rule as :func:`nearest_with_hysteresis` takes it (``RULE_FIELDS`` order)."""
        keep_back = 1.0 - max(self.margin, self.return_margin)
        return np.array(
            [
                self.min_dwell, 1.0 - self.margin, self.min_dwell_s, self.return_window_s, keep_back, self.hold_s,
                float(self.shrink), self.dwell_time_s,
            ]
        )  # fmt: skip


@njit(cache=True, inline="always")
def waited(pend: int, now: int) -> int:  # pragma: no cover - compiled
    """Event time from a ``pend`` start to ``now`` (``-1``: no pending move)."""
    return -1 if pend == NO_PENDING else now - pend


@njit(cache=True, inline="always")
def pending_since(pend: int, now: int, segment: int, nearest: int) -> int:  # pragma: no cover - compiled
    """The ``pend`` column after a decision at ``now`` that left the customer in ``segment``.

    The stretch starts at the first scoring whose nearest segment is another one, and ends at the first
    whose nearest is the customer's own (or when it moves: :func:`segmenter.moves.apply`).
    """
    if nearest == segment or nearest < 0:
        return NO_PENDING
    return now if pend == NO_PENDING else pend


@njit(cache=True, inline="always")
def distance(x: Any, centers: Any, c: int, d: int) -> float:  # pragma: no cover - compiled
    """The Euclidean distance from ``x[:d]`` to ``centers[c]`` (the move rule's and the re-scorer's skips')."""
    s = 0.0
    for j in range(d):
        e = x[j] - centers[c, j]
        s += e * e
    return math.sqrt(s)


@njit(cache=True, inline="always")
def nearest_with_hysteresis(  # noqa: PLR0913, PLR0917 - compiled: positional only, one per column the loops hold
    x: Any, centers: Any, live: Any, nl: int, d: int, cur: int, dw: int, age: int, prev: int, wait: int, rule: Any
) -> tuple[bool, int, int, float]:  # pragma: no cover - compiled
    """Nearest live segment with hysteresis: the move rule of every lens, in one place.

    Parameters
    ----------
    x
        The customer's scaled vector (its first ``d`` values are used).
    centers, live
        The lens's scaled live centers (``centers[c, :d]``) and their segment ids, ``nl`` of them.
    cur, dw, age, prev
        The customer's segment (``-1`` for none), the events and the event time (seconds) spent
        in it, and the segment it left to enter it (``-1``: none).
    wait
        The event time (seconds) since its nearest segment has been another one (:func:`waited`; ``-1``:
        it is its own).
    rule
        The lens's rule parameters (:data:`RULE_FIELDS`: minimum dwell in events, ``1 - margin``,
        minimum dwell in seconds, the return window in seconds, ``1 - return_margin``, the
        pending move's hold in seconds, the shrinking margin's flag and the dwell time in seconds).

    Returns
    -------
    tuple
        ``(moved, segment, nearest, distance)``: whether the customer changes segment, the segment
        it holds afterwards, the nearest live segment, and the distance to ``segment``; ``-1`` and
        NaN where there is none. A customer without a live segment goes to the nearest one at once;
        otherwise it moves only when the nearest is a different segment, it has dwelt ``min_dwell``
        events or ``dwell_time_s`` seconds (and ``min_dwell_s`` seconds when the nearest is ``prev``), and
        the nearest is closer
        than ``keep`` times its own
        (``return_keep`` when the nearest is ``prev`` and ``age`` is within the return window)
        or ``wait`` has reached the hold (:class:`Hysteresis` states the same rule for one decision).
        Ties go to the first center.
    """
    if nl == 0:
        return cur >= 0, -1, -1, np.nan
    best = 0
    d_near = np.inf
    d_cur = np.inf
    pcur = -1
    for c in range(nl):
        dc = distance(x, centers, c, d)
        if dc < d_near:
            d_near = dc
            best = c
        if live[c] == cur:
            pcur = c
            d_cur = dc
    nearest = live[best]
    if pcur < 0:
        return nearest != cur, nearest, nearest, d_near
    back = nearest == prev
    dwelt = dw >= rule[_R_DWELL] or age >= rule[_R_DWELL_T]
    if nearest != cur and dwelt and (age >= rule[_R_DWELL_S] or not back):
        keep = rule[_R_RETURN_KEEP] if back and age < rule[_R_RETURN_S] else rule[_R_KEEP]
        if rule[_R_SHRINK] > 0.0 and 0 < wait < rule[_R_HOLD_S]:
            keep = 1.0 - (1.0 - keep) * (1.0 - wait / rule[_R_HOLD_S])
        if d_near < keep * d_cur or wait >= rule[_R_HOLD_S]:
            return True, nearest, nearest, d_near
    return False, cur, nearest, d_cur


@njit(cache=True, inline="always")
def guard_s(rule: Any) -> int:  # pragma: no cover - compiled
    """The lens's move-back guard (``min_dwell_s``, seconds): how far :func:`holds_ahead`'s clock runs ahead."""
    return int(rule[_R_DWELL_S])


@njit(cache=True, inline="always")
def holds_ahead(  # noqa: PLR0913, PLR0917 - compiled: positional only
    xa: Any, centers: Any, live: Any, nl: int, d: int, cur: int, target: int
) -> bool:  # pragma: no cover - compiled
    """Whether a move ``cur -> target`` that :func:`nearest_with_hysteresis` allowed survives the clock.

    ``xa`` is the customer's scaled vector with only its clock features (``recency_days``,
    ``tenure_days``: :data:`~segmenter.features.CLOCK_FEATURES`) run ahead by the move-back guard
    (:func:`guard_s`), every decayed, ratio and lifetime feature at its value now. The move holds when
    ``target`` is no farther than ``cur`` from ``xa``: else the clock alone would take the customer back
    as soon as the guard lets it. True when ``cur`` or ``target`` is not live (a first or forced move).
    Without clock features ``xa`` is the vector the move was decided on, and every move holds.
    """
    pc = -1
    pt = -1
    for c in range(nl):
        if live[c] == cur:
            pc = c
        if live[c] == target:
            pt = c
    if pc < 0 or pt < 0:
        return True
    return distance(xa, centers, pt, d) <= distance(xa, centers, pc, d)


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
