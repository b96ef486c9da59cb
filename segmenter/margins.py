"""Which customers a re-scoring pass may skip exactly: those whose nearest segment cannot have changed.

Between two of its events a customer's features move only with time, and
only some of them: recency until its cap, tenure, and the decaying counts
(frequency, spend, sessions, product views, cart adds, email engagement);
every other feature is a ratio or total of accumulators that time does not
touch. Each moves at a bounded speed, and the heavy-tail transform (``log1p``)
and the standardisation are Lipschitz, so one lens's scaled vector ``x`` moves
between times ``t0 <= t1`` by at most ``travel(t1) - travel(t0)``
(:func:`travel`, a non-decreasing function of time per row and lens, summed
over the lens's features). Between two passes a lens's centers move by at
most the largest displacement of one center; ``drift`` sums those per lens.

A re-scoring pass that leaves a customer in its nearest segment notes, per
lens, half the gap between its distances to the nearest and the second-nearest
center (:func:`half_gap`) as a *budget*: while the vector's travel plus the
centers' drift since then stays below it, every distance moved by less than
half the gap, so the nearest segment is still the customer's own. The move
rule then keeps the customer there whatever its dwell, pending start or age
(:func:`~segmenter.lenses.hysteresis.nearest_with_hysteresis` moves nobody
whose nearest segment is its own live segment), so the pass only counts its
dwell, exactly as a full evaluation would; the outputs and the state are those
of scoring it.

A budget holds only while nothing but time changed: no event of the customer
since (the row's scored time is still the one the pass left, and later than
its latest event: an event sets the scored time to the event's latest time),
the lens's live segments, heavy-tail flags and readiness as at that pass (else
every budget of the lens is dropped), and no customer loaded since
(:meth:`Margins.forget`).

A refinement changes the lens's scaler: the scaled space becomes another one,
``z' = z * r + o`` per column (``r``: the ratio of the new ``1/std`` to the old
one, positive). Budgets are then *re-based* (:func:`rebase`), not dropped. A
pass notes beside each budget a *middle* ``e`` (the distance to the nearest
center plus the half gap): at a later time within the budget, with room ``m``
left, the customer is within ``e - m`` of its own center and beyond ``e + m``
of every other. Mapped into the new space, a distance ``D`` becomes one
between ``r_min D`` and ``r_max D``; each center is then within ``delta`` (the
largest distance between an old center mapped and its new self) of where it
lands. So the customer is within ``r_max (e - m) + delta`` of its own new
center and beyond ``r_min (e + m) - delta`` of every other: half the
difference, when positive, is its budget in the new space, from the row's last
scored time on. That keeps every skip exact (a skip happens only where a full
evaluation keeps the customer) while a refinement that barely moves anything
leaves most customers skippable.

Budgets are kept in memory only (16 bytes per customer and lens: budget and
middle; 4 per customer), never in the state: a restored core starts without
them and scores everyone once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numba import njit

from segmenter.features import (  # the store's layout (private to the store and the compiled loops)
    _CART,
    _EMAIL,
    _FIRST,
    _FREQ,
    _LAST,
    _LPUR,
    _NO_TIME,
    _PVIEW,
    _SCORED,
    _SESS,
    _SPEND,
    DAY,
    FEATURE_NAMES,
)
from segmenter.lenses.hysteresis import distance

if TYPE_CHECKING:
    from segmenter.kernel import LensColumns, StoreColumns

__all__ = ["MOTION", "NO_BUDGET", "MarginColumns", "Margins", "budget_of", "half_gap", "rebase", "travel", "unchanged"]

_STILL, _RECENCY, _DAYS, _DECAY = range(4)
_FP_KA, _FP_KF, _FP_KS, _FP_CAP = range(4)  # segmenter.kernel's float parameters (store.kernel_rates())
MOTION = {
    "recency_days": (_RECENCY, 0, 0),
    "tenure_days": (_DAYS, 0, 0),
    "frequency": (_DECAY, _FREQ, _FP_KF),
    "spend": (_DECAY, _SPEND, _FP_KS),
    "sessions": (_DECAY, _SESS, _FP_KA),
    "product_views": (_DECAY, _PVIEW, _FP_KA),
    "cart_adds": (_DECAY, _CART, _FP_KA),
    "email_engagement": (_DECAY, _EMAIL, _FP_KA),
}
"""How each feature moves between two events: ``(kind, accumulator, rate)``; a feature not named does not move.

Recency grows a day per day until the cap, tenure a day per day, a decaying count
``c * exp(-k * dt)`` by at most ``|c| * k`` per second (``c``: its accumulator, ``k``: its decay rate).
"""
_KIND = np.array([MOTION.get(name, (_STILL, 0, 0))[0] for name in FEATURE_NAMES], np.int64)
_COLUMN = np.array([MOTION.get(name, (_STILL, 0, 0))[1] for name in FEATURE_NAMES], np.int64)
_RATE = np.array([MOTION.get(name, (_STILL, 0, 0))[2] for name in FEATURE_NAMES], np.int64)
_DAY_S = float(DAY)
_SLACK = 1e-9
"""Relative room a budget leaves for rounding (distances, travel and drift are float64 sums of a few terms)."""
NO_BUDGET = -np.inf
_NO_SEEN = np.iinfo(np.int32).min


class MarginColumns(NamedTuple):
    """The budgets as the compiled pass takes them (see the module).

    ``seen[row]``: the row's scored time as the last pass left it; ``budget[row, lens]``: the
    lens's budget (:data:`NO_BUDGET`: none), as ``half gap + drift + travel`` at that pass;
    ``mid[row, lens]``: its middle (distance to the nearest center plus the half gap, see the
    module); ``drift[lens]``: the lens's centers' summed displacement over passes.
    """

    seen: Any
    budget: Any
    mid: Any
    drift: Any


@njit(cache=True, inline="always")
def travel(f: Any, t: Any, row: int, at: int, fp: Any, idx: Any, inv: Any, d: int) -> float:  # noqa: PLR0913, PLR0917  # pragma: no cover
    """How far the row's scaled vector in one lens (features ``idx[:d]``, ``1/std`` ``inv``) has moved by ``at``.

    Non-decreasing in ``at``; between two times after the row's latest event, the vector moves by at most
    the difference (a sum over the features of ``|inv| *`` the feature's bound, :data:`MOTION`).
    """
    s = 0.0
    for j in range(d):
        k = idx[j]
        kind = _KIND[k]
        if kind == _RECENCY:
            first = t[row, _FIRST]
            lpur = t[row, _LPUR]
            ref = first if lpur == _NO_TIME else lpur
            s += abs(inv[j]) * min(float(at), ref + fp[_FP_CAP] * _DAY_S) / _DAY_S
        elif kind == _DAYS:
            s += abs(inv[j]) * at / _DAY_S
        elif kind == _DECAY:
            s += abs(inv[j]) * abs(np.float64(f[row, _COLUMN[k]])) * fp[_RATE[k]] * at
    return s


@njit(cache=True, inline="always")
def half_gap(x: Any, centers: Any, nl: int, d: int) -> tuple[int, float, float]:  # pragma: no cover - compiled
    """``(c, g, e)``: the nearest of the ``nl`` centers to ``x[:d]`` (ties: the first), half the gap to the next
    and the middle ``e`` (the distance to the nearest plus ``g``).

    ``g`` is infinite with one center.
    """
    best = 0
    d1 = np.inf
    d2 = np.inf
    for c in range(nl):
        dc = distance(x, centers, c, d)
        if dc < d1:
            d2 = d1
            d1 = dc
            best = c
        elif dc < d2:
            d2 = dc
    if nl < 2:
        return best, np.inf, np.inf
    g = 0.5 * (d2 - d1) - _SLACK * (1.0 + d2)
    return best, g, d1 + g


@njit(cache=True, inline="always")
def budget_of(gap: float, drift: float, moved: float) -> float:  # pragma: no cover - compiled
    """The budget a pass notes: half the gap ``gap`` (:func:`half_gap`) plus the lens's ``drift`` and the row's
    ``travel`` then, less room for rounding (:data:`NO_BUDGET`: none)."""
    if math.isinf(gap):
        return np.inf
    room = gap - _SLACK * (abs(drift) + abs(moved))
    return room + drift + moved if room > 0.0 else NO_BUDGET


@njit(cache=True, inline="always")
def unchanged(seen: Any, row: int, at: int, scored: int, last: int) -> bool:  # pragma: no cover - compiled
    """Whether the row changed only with time since the last pass, which it is re-scored after (at ``at``).

    ``scored``, ``last``: its scored and latest event times now.
    """
    s = seen[row]
    return bool(s == scored and s > last and at >= s)


@njit(cache=True)
def rebase(  # noqa: PLR0913, PLR0917 - compiled: positional only
    f: Any, t: Any, seg: Any, mg: MarginColumns, li: int, fp: Any, idx: Any, inv: Any, change: Any, centers: Any
) -> None:  # pragma: no cover - compiled
    """Re-base lens ``li``'s budgets into a new scaled space (see the module); drops those it cannot keep.

    ``inv`` holds the old and the new ``1/std`` (rows 0 and 1), ``change`` the ratios' least and largest
    (``r_min``, ``r_max``), ``centers`` the live segments and each one's ``delta`` (how far its new center is
    from its old one mapped); ``mg.drift[li]`` is still the old space's. A budget is kept only for a row
    unchanged since its last pass (:func:`unchanged` at its scored time), anchored there; the customer's own
    center counts with its own ``delta``, every other with the largest of theirs.
    """
    seen, budget, mid, drift = mg
    r_min, r_max = change[0], change[1]
    live, delta = centers
    first, second = -1, -1  # the centers of the largest and second largest delta
    for c in range(len(delta)):
        if first < 0 or delta[c] > delta[first]:
            first, second = c, first
        elif second < 0 or delta[c] > delta[second]:
            second = c
    d = len(idx)
    for row in range(min(len(seen), len(t))):
        b = budget[row, li]
        if b == NO_BUDGET or math.isinf(b):  # none, or one live center (still its own)
            continue
        s = seen[row]
        own = -1
        for c in range(len(live)):
            if live[c] == seg[row, li]:
                own = c
        if own < 0 or not unchanged(seen, row, s, t[row, _SCORED], t[row, _LAST]):
            budget[row, li] = NO_BUDGET
            continue
        m = b - travel(f, t, row, s, fp, idx, inv[0], d) - drift[li]
        e = mid[row, li]
        far = r_min * (e + m) - delta[second if own == first else first]
        near = r_max * (e - m) + delta[own]
        g = 0.5 * (far - near) - _SLACK * (1.0 + abs(far) + abs(near))
        if m <= 0.0 or g <= 0.0:
            budget[row, li] = NO_BUDGET
            continue
        mid[row, li] = near + g
        budget[row, li] = g + travel(f, t, row, s, fp, idx, inv[1], d)


class Margins:
    """The budgets of one store's customers and its lenses' drift (see the module).

    Parameters
    ----------
    n_lenses
        Lenses of the core.
    """

    def __init__(self, n_lenses: int) -> None:
        self._n = n_lenses
        self._seen = np.full(0, _NO_SEEN, np.int32)
        self._budget = np.full((0, max(1, n_lenses)), NO_BUDGET, np.float64)
        self._mid = np.zeros((0, max(1, n_lenses)), np.float64)
        self._drift = np.zeros(max(1, n_lenses), np.float64)
        self._last: list[tuple[Any, ...] | None] = [None] * n_lenses
        self._stale = False

    def forget(self) -> None:
        """Drop every budget before the next pass (customers were loaded: their rows changed under them)."""
        self._stale = True

    def columns(self, st: StoreColumns, ln: LensColumns, fp: Any) -> MarginColumns:
        """The budgets for a pass over the store ``st`` (decay rates ``fp``) with the lenses ``ln`` as they are now.

        Adds each lens's center displacement since the last pass to its drift, re-bases its budgets where its
        scaler changed (:func:`rebase`), or drops them where its live segments, heavy-tail flags or readiness
        changed.
        """
        rows = len(st.f)
        if self._stale or len(self._seen) < rows:
            self._grow(rows)
        for li in range(self._n):
            self._follow(li, st, ln, fp)
        return self._columns()

    def _columns(self) -> MarginColumns:
        return MarginColumns(self._seen, self._budget, self._mid, self._drift)

    def _grow(self, rows: int) -> None:
        n = max(rows, len(self._seen))
        seen = np.full(n, _NO_SEEN, np.int32)
        budget = np.full((n, self._budget.shape[1]), NO_BUDGET, np.float64)
        mid = np.zeros((n, self._budget.shape[1]), np.float64)
        if not self._stale:
            seen[: len(self._seen)] = self._seen
            budget[: len(self._budget)] = self._budget
            mid[: len(self._mid)] = self._mid
        self._seen, self._budget, self._mid, self._stale = seen, budget, mid, False

    def _follow(self, li: int, st: StoreColumns, ln: LensColumns, fp: Any) -> None:
        """Lens ``li``'s drift since the last pass, its budgets re-based into a new space, or a fresh start."""
        nl, d = int(ln.nlive[li]), int(ln.dims[li])
        now = (bool(ln.ready[li]), ln.live[li, :nl].copy(), ln.heavy[li, :d].copy(), ln.inv[li, :d].copy(),
               ln.off[li, :d].copy(), ln.centers[li, :nl, :d].copy())  # fmt: skip
        last = self._last[li]
        self._last[li] = now
        if last is None or not nl or last[0] != now[0] or not (_equal(last[1], now[1]) and _equal(last[2], now[2])):
            self._drop(li)
            if last is not None and nl:  # a new space all the same: load the compiled re-basing (over no rows)
                self._rebase(li, st._replace(t=st.t[:0]), fp, np.ascontiguousarray(ln.idx[li, :d]), (now, now))
        elif _equal(last[3], now[3]) and _equal(last[4], now[4]):
            self._drift[li] += float(np.sqrt(((now[5] - last[5]) ** 2).sum(axis=1)).max())
        else:
            self._rebase(li, st, fp, np.ascontiguousarray(ln.idx[li, :d]), (last, now))

    def _rebase(self, li: int, st: StoreColumns, fp: Any, idx: Any, spaces: tuple[tuple[Any, ...], ...]) -> None:
        """Lens ``li`` (features ``idx``)'s budgets into its new scaled space (:func:`rebase`), from the last pass's
        (``spaces``: then and now, as :meth:`_follow` keeps them); its drift starts again there."""
        last, now = spaces
        inv = np.stack([last[3], now[3]])
        r = inv[1] / inv[0]
        if not (np.isfinite(r).all() and (r > 0.0).all()):
            self._drop(li)
            return
        # the old centers in the new space, and how far each one's new self is from there
        delta = np.sqrt(((last[5] * r + (last[4] * r - now[4]) - now[5]) ** 2).sum(axis=1))
        change = np.array([r.min(), r.max()], np.float64)
        rebase(st.f, st.t, st.seg, self._columns(), li, fp, idx, inv, change, (last[1].astype(np.int64), delta))
        self._drift[li] = 0.0

    def _drop(self, li: int) -> None:
        self._budget[:, li] = NO_BUDGET
        self._drift[li] = 0.0


def _equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))
