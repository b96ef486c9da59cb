"""Re-scoring many customers at given event times in one compiled pass (numba).

Time-driven work re-evaluates customers without an event of theirs: the
inactivity sweep (everyone not scored since the last interval, at the
watermark), and the re-assignment of the customers of segments a lens merged,
split or retired (cause ``model``, after a lifecycle event or a new shared
model). :func:`rescore` computes, for every row, its features at its time
(:func:`segmenter.kernel.feature_vector`), scales them per lens and applies the
one move rule (:func:`~segmenter.lenses.hysteresis.nearest_with_hysteresis`);
customers who stay get their dwell counted in place, movers have the move
applied in place, and only the moves come back to Python, in a
:class:`~segmenter.moves.MoveBuffer` in row order then lens order (the order
the per-customer loop had), to build their ``segment_change`` messages and
campaign triggers in one pass.

The decisions of one pass are independent of each other (a move changes only
its own row and lens, and the lens's membership counts, which no assignment
reads), so one pass gives the outputs of the per-customer loop it replaces.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numba import njit

from segmenter.batching import store_columns
from segmenter.clock import iso
from segmenter.features import FEATURE_NAMES
from segmenter.kernel import SCORED, LensColumns, StoreColumns, after_clock, feature_vector, scale
from segmenter.lenses.hysteresis import nearest_with_hysteresis, pending_since, waited
from segmenter.margins import NO_BUDGET, MarginColumns, Margins, budget_of, half_gap, travel, unchanged
from segmenter.moves import M_LENS, M_ROW, MoveBuffer, MoveColumns, apply

if TYPE_CHECKING:
    from segmenter.batching import LensArrays
    from segmenter.change_blocks import Output
    from segmenter.features import FeatureStore
    from segmenter.lenses.lens import Lens

__all__ = ["EmitFn", "Rescorer", "rescore"]

logger = logging.getLogger(__name__)

_N_VALUES = len(FEATURE_NAMES)
_LAST = 1
"""The time column holding the customer's latest event time."""


@njit(cache=True)
def rescore(  # noqa: C901, PLR0912, PLR0913, PLR0917 - compiled: positional only; one loop, kept in one piece for speed
    job: Any, st: StoreColumns, ln: LensColumns, fp: Any, buf: MoveColumns, mg: MarginColumns
) -> int:  # pragma: no cover - compiled
    """Re-score ``rows[i]`` at ``at[i]`` in every lens with ``lens_on`` and ready; returns ``bad``.

    ``job`` is ``(rows, at, lens_on, mark)``; ``mark``: also record ``at[i]``
    as the row's scored time. A move is applied (the lens's model version) and
    recorded in ``buf`` (room for every row and lens); a customer who stays
    has its dwell counted. ``bad`` is the index of a row with a non-finite
    feature (the pass stops there, nothing after it done), else ``-1``.
    A row and lens within its budget (``mg``, :mod:`segmenter.margins`) is
    not evaluated: it stays, as evaluating it would decide; each evaluation
    that leaves the customer in its nearest segment notes a new budget.
    """
    rows, at, lens_on, mark = job
    f, t, seg, dwell, since, prev, mver, pend = st.f, st.t, st.seg, st.dwell, st.since, st.prev, st.mver, st.pend
    idx, dims, heavy, inv, off, centers, nlive, live, rule, ready, version = (
        ln.idx,
        ln.dims,
        ln.heavy,
        ln.inv,
        ln.off,
        ln.centers,
        ln.nlive,
        ln.live,
        ln.rule,
        ln.ready,
        ln.version,
    )
    seen, budget, mid, drift = mg
    cols = (seg, dwell, since, prev, mver, pend)
    vals = np.empty(_N_VALUES, np.float64)
    x = np.empty(idx.shape[1], np.float64)
    scratch = (np.empty(_N_VALUES, np.float64), np.empty(idx.shape[1], np.float64))
    for r in range(len(rows)):
        row = rows[r]
        tr = at[r]
        if not unchanged(seen, row, tr, t[row, SCORED], t[row, _LAST]):
            budget[row, :] = NO_BUDGET
        valued = False
        for li in range(len(dims)):
            if not lens_on[li] or not ready[li]:
                continue
            d = dims[li]
            dw = dwell[row, li]
            room = budget[row, li]
            if room > NO_BUDGET and travel(f, t, row, tr, fp, idx[li], inv[li], d) + drift[li] < room:
                if dw < 65535:  # its nearest segment is still its own: it stays (pend is NO_PENDING already)
                    dwell[row, li] = dw + 1
                continue
            if not valued:
                feature_vector(f, t, row, tr, fp, vals)
                valued = True
            for j in range(d):
                if not math.isfinite(vals[idx[li, j]]):
                    return r
            nl = nlive[li]
            if nl > 0:
                scale(vals, idx[li], heavy[li], inv[li], off[li], d, x)
            cur = seg[row, li]
            moved, target, nearest, dd = nearest_with_hysteresis(
                x, centers[li], live[li], nl, d, cur, dw, tr - since[row, li], prev[row, li],
                waited(pend[row, li], tr), rule[li]
            )  # fmt: skip
            if moved and cur >= 0:  # a move the clock alone would undo is not made
                moved, target = after_clock(
                    vals, fp, (idx[li], heavy[li], inv[li], off[li], d, centers[li], live[li], nl, rule[li]),
                    cur, target, scratch,
                )  # fmt: skip
            if moved:
                apply(cols, buf, (row, li, cur, target, -1, tr, t[row, _LAST], version[li]), dd, vals, live[li, :nl])
            else:
                pend[row, li] = pending_since(pend[row, li], tr, cur, nearest)
                if dw < 65535:
                    dwell[row, li] = dw + 1
            budget[row, li] = NO_BUDGET
            if nl > 0 and target == nearest:
                c, gap, middle = half_gap(x, centers[li], nl, d)
                if live[li, c] == nearest:
                    budget[row, li] = budget_of(gap, drift[li], travel(f, t, row, tr, fp, idx[li], inv[li], d))
                    mid[row, li] = middle
        if mark:
            t[row, SCORED] = tr
        seen[row] = t[row, SCORED]
    return -1


EmitFn = Callable[..., None]
"""The hand-over of buffered moves: ``emit(buffer, out, cause=, stamp=)``
(:meth:`segmenter.emission.MoveEmitter.emit_parts`)."""


class _Pass(NamedTuple):
    """One re-scoring pass: rows, their times, the lens (``None``: every lens), cause, stamp, mark, order.

    ``stamp`` (``None``: each move's own time) is every move's ``event_ts``; ``mark``: the rows count
    as scored at ``at`` (and are dirty); ``order`` reorders the buffered moves before they are emitted
    (``None``: as decided, in row order then lens order).
    """

    rows: np.ndarray[Any, np.dtype[np.int64]]
    at: np.ndarray[Any, np.dtype[np.int64]]
    lens: int | None
    cause: str
    stamp: int | None
    mark: bool
    order: Callable[[MoveBuffer], None] | None


class Rescorer:
    """Re-score these rows at time t with cause X: inactivity steps and dead-segment moves, one compiled pass each.

    Parameters
    ----------
    store, arrays, lenses
        The facade's feature store, packed lenses and lenses.
    emit
        Turns a buffer of applied moves into their messages in order (``segment_change``,
        lens membership, campaign triggers; cause ``model`` where the old segment is dead),
        each stamped ``stamp`` (``None``: its own time), and clears the buffer.
    """

    def __init__(self, store: FeatureStore, arrays: LensArrays, lenses: Sequence[Lens], emit: EmitFn) -> None:
        self._store = store
        self._arrays = arrays
        self._lenses = list(lenses)
        self._emit = emit
        self._margins = Margins(len(self._lenses))

    def forget(self) -> None:
        """Customers were loaded into the store: score everyone in full once (:meth:`Margins.forget`)."""
        self._margins.forget()

    def quiet(self, t_sweep: int, out: list[Output], before: int) -> None:
        """Re-score every customer last scored before ``before``, at ``t_sweep`` (cause ``inactivity``).

        A customer whose latest event is after ``t_sweep`` is scored at that event's time. The pass runs
        in row order; its moves come out oldest first (:meth:`FeatureStore.stale_rows`'s order: scored
        time, crc32 of the id, the id), sorting only the movers instead of every stale row.
        """
        store = self._store
        rows = np.flatnonzero(store.live & (store.t[:, SCORED] < before))
        scored = store.t[rows, SCORED].astype(np.int64)
        at = np.maximum(store.t[rows, _LAST].astype(np.int64), t_sweep)
        order = functools.partial(self._oldest_first, rows=rows, scored=scored)
        self._rescore(_Pass(rows, at, None, "inactivity", None, True, order), out)
        if len(rows):
            logger.debug("inactivity step at %s re-scored %d customers", iso(t_sweep), len(rows))

    def _oldest_first(self, buf: MoveBuffer, rows: np.ndarray[Any, np.dtype[np.int64]],
                      scored: np.ndarray[Any, np.dtype[np.int64]]) -> None:  # fmt: skip
        """Sort a sweep's moves by their row's scored time before it (``scored``, per ``rows``), crc32, id, lens."""
        store = self._store
        n = len(buf)
        if n < 2:
            return
        moved = buf.ints[:n, M_ROW]
        lens = buf.ints[:n, M_LENS]
        old = scored[np.searchsorted(rows, moved)]
        crc = store.crc[moved].astype(np.int64)
        order = np.lexsort((lens, crc, old))
        o, c, r = old[order], crc[order], moved[order]
        if ((o[1:] == o[:-1]) & (c[1:] == c[:-1]) & (r[1:] != r[:-1])).any():  # same key, two customers (rare)
            ids = [store.id_of(row) for row in moved.tolist()]
            order = np.array(sorted(range(n), key=lambda m: (old[m], crc[m], ids[m], lens[m])), np.int64)
        buf.permute(order)

    def dead_segments(self, li: int, dead: list[int], out: list[Output], *, skip: int | None,
                      stamp: int) -> None:  # fmt: skip
        """Re-assign the customers of lens ``li``'s dead segments at their scored time (cause ``model``)."""
        store = self._store
        rows = np.array([row for n in dead for row in store.rows_in_segment(li, n) if row != skip], np.int64)
        self._rescore(_Pass(rows, store.t[rows, SCORED].astype(np.int64), li, "model", stamp, False, None), out)

    def _rescore(self, job: _Pass, out: list[Output]) -> None:
        """Re-score ``rows[i]`` at ``at[i]`` in lens ``lens`` (``None``: every lens) in one compiled pass.

        Customers who stay only get their dwell counted; each move becomes a
        ``segment_change`` with cause ``cause`` (``model`` when its segment is
        dead), stamped ``stamp`` (``None``: its own time), and its triggers.

        Raises
        ------
        ValueError
            A feature value is not finite (a bug: the store clips).
        """
        rows, at, lens, cause, stamp, mark, order = job
        if not len(rows):
            return
        arrays = self._arrays
        arrays.sync(counters=False)
        store = self._store
        n_lenses = len(self._lenses)
        lens_on = np.full(n_lenses, lens is None, np.bool_)
        if lens is not None:
            lens_on[lens] = True
        buf = MoveBuffer(len(rows) * n_lenses)
        st, ln, fp = store_columns(store), arrays.columns(), store.kernel_rates()
        mg = self._margins.columns(st, ln, fp)
        bad = rescore((rows, at, lens_on, mark), st, ln, fp, buf.columns, mg)
        if mark:
            store.dirty[rows] = True
        if bad >= 0:
            vals = store.vector(int(rows[bad]), int(at[bad]))
            raise ValueError(f"customer {store.id_of(int(rows[bad]))!r}: non-finite feature value in {vals!r}")
        if order is not None:
            order(buf)
        self._emit(buf, out, cause=cause, stamp=stamp)
