"""The compiled event loop behind :meth:`Segmenter.process_batch` (numba).

One call of :func:`run` applies events to the :class:`~segmenter.features.FeatureStore`
columns and scores them in every lens, in input order, exactly as the
per-event description in :mod:`segmenter.pipeline` says, until it meets
something only Python can do. It then *stops* and tells the caller why and
where (``io``, slots ``IO_*``); the caller does that piece (in :class:`~segmenter.pipeline.Segmenter`,
whose ``process_batch`` states the caller's side of the protocol) and calls :func:`run` again
from the position its handler names. The arrays come in typed groups (:class:`Events`,
:class:`StoreColumns`, :class:`ClockColumns`, :class:`LensColumns`); the store's column
layout is :mod:`segmenter.features`'s. Stops (:class:`Stop`):

``NEW_ROW``
    the event's customer has no row: allocate it (``newrows``). The caller
    allocates the rows of every customer first seen in a batch before the
    loop runs (not live until their first event, which sets ``live`` here),
    so this only stops for a customer erased and seen again in one batch;
``LATE``
    the event is older than its customer's latest applied event time minus
    the allowed lateness (never for an isolated customer, see below): count it
    and report it;
``ERASE``
    an ``erasure_request``;
``LEARN``
    a lens's sample buffer holds what fills its next micro-batch (or ends
    its warm-up), or the buffer is full: the samples go to the lens (scaler,
    river model, segment registry), whose centers may change;
``MOVE``
    the move buffer is full. A lens that moves the customer does not stop the
    loop: the move is applied to the store's lens columns here and recorded in
    the buffer (:mod:`segmenter.moves`), whose ``segment_change`` messages,
    explanations and campaign triggers Python builds after every stop, in order;
``SHARED_SAMPLE``
    shared mode: this event's vectors go to the trainer;
``REFINE``
    the accepted-event counter reached a refinement;
``WATERMARK``
    the watermark moved far enough for the inactivity sweep or the release
    of held triggers;
``NONFINITE``
    a feature vector is not finite (the caller raises ``ValueError``).

An *isolated* customer (its latest time more than ``max_future`` ahead of
its event's source's clock and latest shared time, :func:`isolated`; one
bad clock, or the first few customers after a real gap until a quorum
follows, see :mod:`segmenter.clock`) has its events applied to its own
features and scored in every lens, but takes no part in anything shared:
no observation (lens learning), no shared-mode sample, no refinement count,
and its events move neither the clock nor ``max_t``. It is not judged for
lateness (its own latest time is not trusted; the store applies an earlier
event exactly). Such events are counted in ``state[S_ISOLATED]``.

Positions are ``(event, step)``: step 0 starts an event (lateness, ingest);
``1 + 2 * lens`` observes and ``2 + 2 * lens`` assigns in that lens;
``1 + 2 * n_lenses`` checks refinement and ``2 + 2 * n_lenses`` moves the
clock. Everything the loop reads or writes lives in the arrays it is given, so
the Python side stays the owner of the state (the store's columns, and the
arrays of :mod:`segmenter.batching`).

The arithmetic is the float64-over-float32 arithmetic of the pure-Python
:meth:`FeatureStore.ingest` and :meth:`FeatureStore.vector`, so both give the
same features.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from segmenter.clock import UNSET, kth_latest, majority, prune_ahead, remember, watermark_of
from segmenter.features import (  # the store's layout (private to the store and this loop)
    _AMT,
    _CART,
    _EMAIL,
    _FIRST,
    _FREQ,
    _LAST,
    _LPUR,
    _NO_TIME,
    _NPUR,
    _NREF,
    _PACT,
    _PVIEW,
    _RAMT,
    _SCORED,
    _SESS,
    _SPEND,
    DAY,
    FEATURE_NAMES,
    MAX_AMOUNT,
    EventKind,
)
from segmenter.lenses.hysteresis import guard_s, holds_ahead, nearest_with_hysteresis, pending_since, waited
from segmenter.moves import MoveColumns, apply

__all__ = [
    "IO_EVENT",
    "IO_LENS",
    "IO_REASON",
    "IO_SIZE",
    "IO_STEP",
    "SCORED",
    "STATE_FIELDS",
    "ClockColumns",
    "Events",
    "LensColumns",
    "Stop",
    "StoreColumns",
    "feature_vector",
    "isolated",
    "run",
    "scale",
]


class Stop(IntEnum):
    """Why :func:`run` returned (``io[IO_REASON]``; see the module)."""

    DONE = 0
    NEW_ROW = 1
    LATE = 2
    ERASE = 3
    LEARN = 4
    MOVE = 5
    SHARED_SAMPLE = 6
    REFINE = 7
    WATERMARK = 8
    NONFINITE = 9


IO_REASON, IO_EVENT, IO_STEP, IO_LENS = range(4)
"""Slots of the ``io`` array (int64): the stop, its event and step, and for ``LEARN`` the lens."""
IO_SIZE = 4


class Events(NamedTuple):
    """One batch's events as columns (:class:`segmenter.batching.EventColumns`)."""

    rows: Any
    newrows: Any
    newfirst: Any
    kinds: Any
    times: Any
    amounts: Any
    ehash: Any
    chash: Any
    srcs: Any
    parts: Any


class StoreColumns(NamedTuple):
    """The :class:`~segmenter.features.FeatureStore` columns the loop reads and writes."""

    f: Any
    t: Any
    h: Any
    hpos: Any
    dirty: Any
    seg: Any
    dwell: Any
    since: Any
    prev: Any
    mver: Any
    part: Any
    live: Any
    pend: Any


class ClockColumns(NamedTuple):
    """The :class:`~segmenter.clock.EventClock` arrays, per source index."""

    clock: Any
    smax: Any
    idle: Any
    dirty: Any
    ktime: Any
    kkey: Any
    kcount: Any
    atime: Any
    akey: Any
    acount: Any


class LensColumns(NamedTuple):
    """The lenses packed by :class:`segmenter.batching.LensArrays` (assignment values, counters, sample buffer)."""

    idx: Any
    dims: Any
    heavy: Any
    inv: Any
    off: Any
    centers: Any
    nlive: Any
    live: Any
    rule: Any
    ready: Any
    nobs: Any
    warmup: Any
    learn_every: Any
    batch_size: Any
    version: Any
    bfill: Any
    sbuf: Any
    sn: Any
    scount: Any


@njit(cache=True, inline="always")
def _stop(io: Any, reason: int, i: int, step: int) -> None:  # pragma: no cover - compiled
    io[IO_REASON] = reason
    io[IO_EVENT] = i
    io[IO_STEP] = step


@njit(cache=True, inline="always")
def isolated(last: int, sclock: Any, smax: Any, si: int, max_future: int) -> bool:  # pragma: no cover
    """Whether a customer whose latest time is ``last`` is isolated from the shared work of source ``si``."""
    ref = max(sclock[si], smax[si])
    return bool(ref != UNSET and last > ref + max_future)


K_SKIP = -2
"""Event kind of an event already rejected by the caller (skipped by the loop)."""
K_ERASE = -1
"""Event kind of an ``erasure_request``."""

STATE_FIELDS = (
    "events", "duplicates", "vec_seen", "has_max", "max_t", "has_wm", "wm", "has_next", "next_check",
    "has_rel", "released_at", "isolated",
)  # fmt: skip
"""Layout of the ``state`` array (int64), shared with the caller."""
(S_EVENTS, S_DUPS, S_VEC_SEEN, S_HAS_MAX, S_MAX_T, S_HAS_WM, S_WM, S_HAS_NEXT, S_NEXT, S_HAS_REL,
 S_REL, S_ISOLATED) = range(len(STATE_FIELDS))  # fmt: skip

# params (int64): lateness, refine_every, shared, vector_every, engine present, release every, dedup size,
# max future, clock quorum
P_LATENESS, P_REFINE, P_SHARED, P_VECTOR_EVERY, P_ENGINE, P_RELEASE, P_DEDUP, P_FUTURE, P_QUORUM = range(9)
# float params: decay rates (activity, frequency, spend) and the recency cap in days
FP_KA, FP_KF, FP_KS, FP_CAP = range(4)

# the FeatureStore's column layout and event kinds, declared once in segmenter.features
_OTHER, _SESSION, _PVIEW_K, _CART_K = (
    int(k) for k in (EventKind.OTHER, EventKind.SESSION, EventKind.PRODUCT_VIEW, EventKind.CART_ADD)
)
_PURCHASE, _REFUND, _EOPEN, _ECLICK = (
    int(k) for k in (EventKind.PURCHASE, EventKind.REFUND, EventKind.EMAIL_OPEN, EventKind.EMAIL_CLICK)
)
_MAX_AMOUNT = MAX_AMOUNT
_DAY = DAY
N_FEATURES = len(FEATURE_NAMES)
"""Length of a feature vector."""


@njit(cache=True)
def _vector(f: Any, t: Any, row: int, at: int, fp: Any, out: Any) -> None:  # noqa: PLR0917  # pragma: no cover
    first = t[row, _FIRST]
    last = t[row, _LAST]
    lpur = t[row, _LPUR]
    dt = at - last
    if dt > 0:
        fa = math.exp(-dt * fp[FP_KA])
        freq = f[row, _FREQ] * math.exp(-dt * fp[FP_KF])
        spend = f[row, _SPEND] * math.exp(-dt * fp[FP_KS])
    else:
        fa = 1.0
        freq = np.float64(f[row, _FREQ])
        spend = np.float64(f[row, _SPEND])
    recency = (at - (first if lpur == _NO_TIME else lpur)) / _DAY
    cap = fp[FP_CAP]
    npur = np.float64(f[row, _NPUR])
    nref = np.float64(f[row, _NREF])
    cart = np.float64(f[row, _CART])
    pview = np.float64(f[row, _PVIEW])
    pact = np.float64(f[row, _PACT])
    net = np.float64(f[row, _AMT]) - np.float64(f[row, _RAMT])
    out[0] = recency if recency < cap else cap
    out[1] = (at - first) / _DAY
    out[2] = freq
    out[3] = spend if spend > 0.0 else 0.0
    out[4] = f[row, _AMT] / npur if npur > 0.0 else 0.0
    out[5] = f[row, _SESS] * fa
    out[6] = pview * fa
    out[7] = cart * fa
    out[8] = 1.0 - min(1.0, pact / cart) if cart > 0.0 else 0.0
    out[9] = min(1.0, pact / pview) if pview > 0.0 else 0.0
    out[10] = f[row, _EMAIL] * fa
    out[11] = min(1.0, nref / npur) if npur > 0.0 else (1.0 if nref > 0.0 else 0.0)
    out[12] = npur
    out[13] = net if net > 0.0 else 0.0


feature_vector = _vector


@njit(cache=True)
def clock_ahead(vals: Any, seconds: int, fp: Any, out: Any) -> None:  # pragma: no cover - compiled
    """``vals`` (a :func:`feature_vector`) into ``out`` with only the clock features ``seconds`` later.

    ``recency_days`` and ``tenure_days`` grow with time alone (recency up to its cap); every decayed,
    ratio and lifetime feature keeps its value (silence is no prediction of an active customer's rates).
    The layout is :data:`~segmenter.features.CLOCK_FEATURES`'s (the first two features).
    """
    out[:] = vals
    days = seconds / _DAY
    r = vals[0] + days
    out[0] = r if r < fp[FP_CAP] else fp[FP_CAP]
    out[1] = vals[1] + days


@njit(cache=True, inline="always")
def after_clock(vals: Any, fp: Any, lens: Any, cur: int, target: int, buf: Any) -> tuple[bool, int]:  # noqa: PLR0917  # pragma: no cover
    """``(moved, segment)`` for a move ``cur -> target`` decided on ``vals``, after the clock's veto.

    The move stands when :func:`~segmenter.lenses.hysteresis.holds_ahead` says so for ``vals`` with the
    clock run ahead by the lens's move-back guard (:func:`clock_ahead`); else the customer stays in ``cur``.
    ``lens``: ``(idx, heavy, inv, off, d, centers, live, nl, rule)``; ``buf``: ``(ahead, xa)`` scratch.
    """
    idx, heavy, inv, off, d, centers, live, nl, rule = lens
    ahead, xa = buf
    clock_ahead(vals, guard_s(rule), fp, ahead)
    scale(ahead, idx, heavy, inv, off, d, xa)
    if holds_ahead(xa, centers, live, nl, d, cur, target):
        return True, target
    return False, cur


@njit(cache=True, inline="always")
def scale(vals: Any, idx: Any, heavy: Any, inv: Any, off: Any, d: int, x: Any) -> None:  # noqa: PLR0917  # pragma: no cover
    """One lens's scaled vector into ``x[:d]``: its features of ``vals``, log1p where heavy-tailed, standardised."""
    for j in range(d):
        v = vals[idx[j]]
        if heavy[j]:
            v = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
        x[j] = v * inv[j] - off[j]


"""Every feature of ``row`` at time ``at`` into ``out`` (:meth:`FeatureStore.vector`, compiled)."""
SCORED = _SCORED
"""The time column holding when a row was last scored."""


@njit(cache=True)
def _ingest(  # noqa: PLR0917 - compiled: positional only
    f: Any,
    t: Any,
    h: Any,
    hpos: Any,
    dirty: Any,
    row: int,
    new: bool,
    kind: int,
    at: int,
    amount: float,
    eh: int,
    dedup: int,
    fp: Any,
) -> bool:  # pragma: no cover - compiled
    """:meth:`FeatureStore.ingest` for a known row; False on a duplicate event id."""
    if dedup:
        if not new:
            for j in range(dedup):
                if h[row, j] == eh:
                    return False
        pos = hpos[row]
        h[row, pos] = eh
        hpos[row] = (pos + 1) % dedup
    if new:
        t[row, _FIRST] = at
        t[row, _LAST] = at
        t[row, _LPUR] = _NO_TIME
        t[row, _SCORED] = at
        last = at
    else:
        last = t[row, _LAST]
        t[row, _FIRST] = min(t[row, _FIRST], at)
    dirty[row] = True
    back = 0
    if at > last:
        dt = at - last
        fa = math.exp(-dt * fp[FP_KA])
        f[row, _FREQ] = f[row, _FREQ] * math.exp(-dt * fp[FP_KF])
        f[row, _SPEND] = f[row, _SPEND] * math.exp(-dt * fp[FP_KS])
        f[row, _SESS] = f[row, _SESS] * fa
        f[row, _PVIEW] = f[row, _PVIEW] * fa
        f[row, _CART] = f[row, _CART] * fa
        f[row, _EMAIL] = f[row, _EMAIL] * fa
        f[row, _PACT] = f[row, _PACT] * fa
        t[row, _LAST] = at
    else:
        back = last - at
    if kind == _OTHER:
        return True
    wa = math.exp(-back * fp[FP_KA]) if back else 1.0
    if kind == _PURCHASE:
        amt = min(amount, _MAX_AMOUNT)
        if back:
            f[row, _FREQ] = f[row, _FREQ] + math.exp(-back * fp[FP_KF])
            f[row, _SPEND] = f[row, _SPEND] + amt * math.exp(-back * fp[FP_KS])
        else:
            f[row, _FREQ] = f[row, _FREQ] + 1.0
            f[row, _SPEND] = f[row, _SPEND] + amt
        f[row, _PACT] = f[row, _PACT] + wa
        f[row, _NPUR] = f[row, _NPUR] + 1.0
        f[row, _AMT] = f[row, _AMT] + amt
        t[row, _LPUR] = max(t[row, _LPUR], at)
    elif kind == _SESSION:
        f[row, _SESS] = f[row, _SESS] + wa
    elif kind == _PVIEW_K:
        f[row, _PVIEW] = f[row, _PVIEW] + wa
    elif kind == _CART_K:
        f[row, _CART] = f[row, _CART] + wa
    elif kind == _EOPEN:
        f[row, _EMAIL] = f[row, _EMAIL] + wa
    elif kind == _ECLICK:
        f[row, _EMAIL] = f[row, _EMAIL] + 2.0 * wa
    elif kind == _REFUND:
        amt = min(amount, _MAX_AMOUNT)
        f[row, _SPEND] = f[row, _SPEND] - (amt * math.exp(-back * fp[FP_KS]) if back else amt)
        f[row, _NREF] = f[row, _NREF] + 1.0
        f[row, _RAMT] = f[row, _RAMT] + amt
    return True


@njit(cache=True)
def run(  # noqa: PLR0917 - compiled: positional only; one loop, kept in one piece for speed
    pos: Any,
    io: Any,
    ev: Events,
    st: StoreColumns,
    clk: ClockColumns,
    ln: LensColumns,
    mv: MoveColumns,
    state: Any,
    prm: Any,
    fp: Any,
) -> None:  # pragma: no cover - compiled
    """Run events from position ``pos = [event, step]`` until a stop; ``io[IO_REASON]`` says which (see the module)."""
    rows, newrows, newfirst, kinds, times, amounts, ehash, chash, srcs, parts = ev
    f, t, h, hpos, dirty, seg, dwell, since, prev, mver, part, live_row, pend = st
    sclock, smax, sidle, sdirty, ktime, kkey, kcount, atime, akey, acount = clk
    (idx, dims, heavy, inv, off, centers, nlive, live, rule, ready, nobs, warmup, learn_every, batch_size, version,
     bfill, sbuf, sn, scount) = ln  # fmt: skip
    cols = (seg, dwell, since, prev, mver, pend)
    n_events = len(kinds)
    n_lenses = len(dims)
    tail = 1 + 2 * n_lenses
    vals = np.empty(N_FEATURES, np.float64)
    x = np.empty(idx.shape[1], np.float64)
    scratch = (np.empty(N_FEATURES, np.float64), np.empty(idx.shape[1], np.float64))
    i = pos[0]
    step = pos[1]
    while i < n_events:
        kind = kinds[i]
        if kind == K_SKIP:
            i += 1
            step = 0
            continue
        at = times[i]
        row = rows[i]
        k = -1
        if row < 0:
            k = -row - 2
            row = newrows[k]
        if step == 0:
            if kind == K_ERASE:
                _stop(io, Stop.ERASE, i, 0)
                return
            si = srcs[i]
            ahead = max(sclock[si], smax[si])
            if ahead != UNSET and at > ahead + prm[P_FUTURE]:
                prune_ahead(atime, akey, acount, si, ahead + prm[P_FUTURE])
                remember(atime, akey, acount, si, chash[i], at)
                q = majority(kcount, si, prm[P_QUORUM])
                if acount[si] >= q:  # a quorum of customers is ahead: the source's time really jumped
                    jump = kth_latest(atime, acount, si, q)
                    if jump > sclock[si]:
                        sclock[si] = jump
                        sdirty[si] = 1
                    acount[si] = 0
            if row < 0:
                _stop(io, Stop.NEW_ROW, i, 0)
                return
            new = k >= 0 and newfirst[k] != 0
            if (
                not new
                and at < t[row, _LAST] - prm[P_LATENESS]
                and not isolated(t[row, _LAST], sclock, smax, si, prm[P_FUTURE])
            ):
                _stop(io, Stop.LATE, i, 0)
                return
            if not _ingest(f, t, h, hpos, dirty, row, new, kind, at, amounts[i], ehash[i], prm[P_DEDUP], fp):
                state[S_DUPS] += 1
                i += 1
                continue
            if new:
                newfirst[k] = 0
                live_row[row] = True
            part[row] = parts[i]
            state[S_EVENTS] += 1
            t[row, _SCORED] = t[row, _LAST]
            step = 1
            if isolated(t[row, _LAST], sclock, smax, si, prm[P_FUTURE]):
                state[S_ISOLATED] += 1
            elif prm[P_SHARED]:
                state[S_VEC_SEEN] += 1
                if state[S_VEC_SEEN] % prm[P_VECTOR_EVERY] == 0:
                    _stop(io, Stop.SHARED_SAMPLE, i, 1)
                    return
        si = srcs[i]
        alone = isolated(t[row, _LAST], sclock, smax, si, prm[P_FUTURE])
        if step < tail:
            _vector(f, t, row, t[row, _LAST], fp, vals)
        while step < tail:
            li = (step - 1) // 2
            d = dims[li]
            if step % 2 == 1:  # observe
                step += 1
                if prm[P_SHARED] or alone:
                    continue
                finite = True
                for j in range(d):
                    v = vals[idx[li, j]]
                    if not math.isfinite(v):
                        finite = False
                if not finite:
                    _stop(io, Stop.NONFINITE, i, step - 1)
                    return
                nobs[li] += 1
                n = nobs[li]
                if n <= warmup[li] or not ready[li] or n % learn_every[li] == 0:
                    c = scount[li]
                    for j in range(d):
                        sbuf[li, c, j] = vals[idx[li, j]]
                    sn[li, c] = n
                    scount[li] = c + 1
                    full = n == warmup[li]
                    if n > warmup[li]:
                        bfill[li] += 1
                        full = bfill[li] >= batch_size[li]
                    if full or c + 1 >= sbuf.shape[1]:
                        _stop(io, Stop.LEARN, i, step)
                        io[IO_LENS] = li
                        return
                continue
            # assign
            step += 1
            if not ready[li]:
                continue
            cur = seg[row, li]
            dw = dwell[row, li]
            nl = nlive[li]
            if nl > 0:
                scale(vals, idx[li], heavy[li], inv[li], off[li], d, x)
            now = t[row, _LAST]
            moved, target, nearest, dd = nearest_with_hysteresis(
                x,
                centers[li],
                live[li],
                nl,
                d,
                cur,
                dw,
                now - since[row, li],
                prev[row, li],
                waited(pend[row, li], now),
                rule[li],
            )
            if moved and cur >= 0:  # a move the clock alone would undo is not made
                lens = (idx[li], heavy[li], inv[li], off[li], d, centers[li], live[li], nl, rule[li])
                moved, target = after_clock(vals, fp, lens, cur, target, scratch)
            if moved:
                full = apply(cols, mv, (row, li, cur, target, i, now, now, version[li]), dd, vals, live[li, :nl])
                # the move dates from its cause event (its segment_change's event_ts), which is older than `now`
                # when the event came late or was redelivered beyond the dedup window
                since[row, li] = at
                if full:
                    _stop(io, Stop.MOVE, i, step)
                    return
                continue
            pend[row, li] = pending_since(pend[row, li], now, cur, nearest)
            if dw < 65535:
                dwell[row, li] = dw + 1
        if step == tail:
            step += 1
            shared_events = state[S_EVENTS] - state[S_ISOLATED]
            if prm[P_REFINE] and not prm[P_SHARED] and not alone and shared_events % prm[P_REFINE] == 0:
                _stop(io, Stop.REFINE, i, step)
                return
        # the clock (an isolated customer's events do not move it)
        i += 1
        step = 0
        sidle[si] = 0
        if not alone:
            if not state[S_HAS_MAX] or at > state[S_MAX_T]:
                state[S_HAS_MAX] = 1
                state[S_MAX_T] = at
            remember(ktime, kkey, kcount, si, chash[i - 1], at)
            if smax[si] == UNSET or at > smax[si]:
                smax[si] = at
            cand = kth_latest(ktime, kcount, si, majority(kcount, si, prm[P_QUORUM]))
            if sclock[si] == UNSET or cand > sclock[si]:
                sclock[si] = cand
                sdirty[si] = 1
        defined, wm = watermark_of(sclock, sidle, prm[P_LATENESS])
        if defined and (not state[S_HAS_WM] or wm > state[S_WM]):
            state[S_HAS_WM] = 1
            state[S_WM] = wm
            if (
                (prm[P_ENGINE] and (not state[S_HAS_REL] or wm - state[S_REL] >= prm[P_RELEASE]))
                or not state[S_HAS_NEXT]
                or wm >= state[S_NEXT]
            ):
                _stop(io, Stop.WATERMARK, i, 0)
                return
    _stop(io, Stop.DONE, n_events, 0)
