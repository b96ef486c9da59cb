"""The compiled event loop behind :meth:`Segmenter.process_batch` (numba).

One call of :func:`run` applies events to the :class:`~segmenter.features.FeatureStore`
columns and scores them in every lens, in input order, exactly as the
per-event description in :mod:`segmenter.pipeline` says, until it meets
something only Python can do. It then *stops* and tells the caller why and
where (``io``); the caller does that piece (in :class:`~segmenter.pipeline.Segmenter`)
and calls :func:`run` again from the same position. Stops:

``NEW_ROW``
    the event's customer is unknown: allocate its row (``newrows``);
``LATE``
    the event is older than the watermark: count it and report it;
``ERASE``
    an ``erasure_request``;
``LEARN``
    a lens's sample buffer holds what fills its next micro-batch (or ends
    its warm-up), or the buffer is full: the samples go to the lens (scaler,
    river model, segment registry), whose centers may change;
``MOVE``
    a lens moves the customer (``io[4]`` the segment, ``io[5]`` the
    nearest one, ``dist[0]`` the distance; ``-1`` / NaN for none): the
    ``segment_change``, explanation and campaign triggers are built in Python;
``SHARED_SAMPLE``
    shared mode: this event's vectors go to the trainer;
``REFINE``
    the accepted-event counter reached a refinement;
``WATERMARK``
    the watermark moved far enough for the inactivity sweep or the release
    of held triggers;
``NONFINITE``
    a feature vector is not finite (the caller raises ``ValueError``).

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
from typing import Any

import numpy as np
from numba import njit

from segmenter.lenses.hysteresis import nearest_with_hysteresis

__all__ = [
    "DONE",
    "ERASE",
    "LATE",
    "LEARN",
    "MOVE",
    "NEW_ROW",
    "NONFINITE",
    "REFINE",
    "SHARED_SAMPLE",
    "STATE_FIELDS",
    "WATERMARK",
    "run",
]

DONE, NEW_ROW, LATE, ERASE, LEARN, MOVE, SHARED_SAMPLE, REFINE, WATERMARK, NONFINITE = range(10)

K_SKIP = -2
"""Event kind of an event already rejected by the caller (skipped by the loop)."""
K_ERASE = -1
"""Event kind of an ``erasure_request``."""

STATE_FIELDS = (
    "events", "duplicates", "vec_seen", "has_max", "max_t", "has_wm", "wm", "has_next", "next_check",
    "has_rel", "released_at",
)  # fmt: skip
"""Layout of the ``state`` array (int64), shared with the caller."""
(S_EVENTS, S_DUPS, S_VEC_SEEN, S_HAS_MAX, S_MAX_T, S_HAS_WM, S_WM, S_HAS_NEXT, S_NEXT, S_HAS_REL,
 S_REL) = range(len(STATE_FIELDS))  # fmt: skip

# params (int64): lateness, refine_every, shared, vector_every, engine present, release every, dedup size
P_LATENESS, P_REFINE, P_SHARED, P_VECTOR_EVERY, P_ENGINE, P_RELEASE, P_DEDUP = range(7)
# float params: decay rates (activity, frequency, spend) and the recency cap in days
FP_KA, FP_KF, FP_KS, FP_CAP = range(4)

# FeatureStore column layout (kept in step with segmenter.features)
_FREQ, _SPEND, _SESS, _PVIEW, _CART, _EMAIL, _PACT, _NPUR, _AMT, _NREF, _RAMT = range(11)
N_FEATURES = 14
"""Length of a feature vector (``len(FEATURE_NAMES)``; the tests check they agree)."""
_FIRST, _LAST, _LPUR, _SCORED = range(4)
_NO_TIME = -(2**31)
_MAX_AMOUNT = 1e12
_DAY = 86_400
_UNSET = np.iinfo(np.int64).min
# EventKind values
_OTHER, _SESSION, _PVIEW_K, _CART_K, _PURCHASE, _REFUND, _EOPEN, _ECLICK = range(8)


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


@njit(cache=True)
def _ingest(  # noqa: PLR0917 - compiled: positional only
    f: Any, t: Any, h: Any, hpos: Any, dirty: Any, row: int, new: bool, kind: int, at: int, amount: float, eh: int,
    dedup: int, fp: Any,
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
    pos: Any, io: Any, dist: Any,
    rows: Any, newrows: Any, newfirst: Any, kinds: Any, times: Any, amounts: Any, ehash: Any, srcs: Any,
    f: Any, t: Any, h: Any, hpos: Any, dirty: Any, seg: Any, dwell: Any,
    state: Any, smax: Any, sdirty: Any, prm: Any, fp: Any,
    idx: Any, dims: Any, heavy: Any, inv: Any, off: Any, centers: Any, nlive: Any, live: Any,
    min_dwell: Any, keep: Any, ready: Any,
    nobs: Any, warmup: Any, learn_every: Any, batch_size: Any, bfill: Any,
    sbuf: Any, sn: Any, scount: Any,
) -> None:  # pragma: no cover - compiled
    """Run events from position ``pos = [event, step]`` until a stop; ``io[0]`` says which (see the module)."""
    n_events = len(kinds)
    n_lenses = len(dims)
    tail = 1 + 2 * n_lenses
    vals = np.empty(N_FEATURES, np.float64)
    x = np.empty(idx.shape[1], np.float64)
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
                io[0] = ERASE
                io[1] = i
                io[2] = 0
                return
            if state[S_HAS_WM] and at < state[S_WM]:
                io[0] = LATE
                io[1] = i
                io[2] = 0
                return
            if row < 0:
                io[0] = NEW_ROW
                io[1] = i
                io[2] = 0
                return
            new = k >= 0 and newfirst[k] != 0
            if not _ingest(f, t, h, hpos, dirty, row, new, kind, at, amounts[i], ehash[i], prm[P_DEDUP], fp):
                state[S_DUPS] += 1
                i += 1
                continue
            if new:
                newfirst[k] = 0
            state[S_EVENTS] += 1
            t[row, _SCORED] = t[row, _LAST]
            step = 1
            if prm[P_SHARED]:
                state[S_VEC_SEEN] += 1
                if state[S_VEC_SEEN] % prm[P_VECTOR_EVERY] == 0:
                    io[0] = SHARED_SAMPLE
                    io[1] = i
                    io[2] = 1
                    return
        _vector(f, t, row, t[row, _LAST], fp, vals)
        while step < tail:
            li = (step - 1) // 2
            d = dims[li]
            if step % 2 == 1:  # observe
                step += 1
                if prm[P_SHARED]:
                    continue
                finite = True
                for j in range(d):
                    v = vals[idx[li, j]]
                    if not math.isfinite(v):
                        finite = False
                if not finite:
                    io[0] = NONFINITE
                    io[1] = i
                    io[2] = step - 1
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
                        io[0] = LEARN
                        io[1] = i
                        io[2] = step
                        io[3] = li
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
                for j in range(d):
                    v = vals[idx[li, j]]
                    if heavy[li, j]:
                        v = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
                    x[j] = v * inv[li, j] - off[li, j]
            moved, target, nearest, dd = nearest_with_hysteresis(x, centers[li], live[li], nl, d, cur, dw,
                                                                min_dwell[li], keep[li])
            if moved:
                io[0] = MOVE
                io[1] = i
                io[2] = step
                io[3] = li
                io[4] = target
                io[5] = nearest
                dist[0] = dd
                return
            if dw < 65535:
                dwell[row, li] = dw + 1
        if step == tail:
            step += 1
            if prm[P_REFINE] and not prm[P_SHARED] and state[S_EVENTS] % prm[P_REFINE] == 0:
                io[0] = REFINE
                io[1] = i
                io[2] = step
                return
        # the clock
        if not state[S_HAS_MAX] or at > state[S_MAX_T]:
            state[S_HAS_MAX] = 1
            state[S_MAX_T] = at
        si = srcs[i]
        i += 1
        step = 0
        if smax[si] == _UNSET or at > smax[si]:
            smax[si] = at
            sdirty[si] = 1
            low = at
            for s in range(len(smax)):
                if smax[s] != _UNSET and smax[s] < low:
                    low = smax[s]
            wm = low - prm[P_LATENESS]
            if not state[S_HAS_WM] or wm > state[S_WM]:
                state[S_HAS_WM] = 1
                state[S_WM] = wm
                if (
                    (prm[P_ENGINE] and (not state[S_HAS_REL] or wm - state[S_REL] >= prm[P_RELEASE]))
                    or not state[S_HAS_NEXT]
                    or wm >= state[S_NEXT]
                ):
                    io[0] = WATERMARK
                    io[1] = i
                    io[2] = 0
                    return
    io[0] = DONE
    io[1] = n_events
    io[2] = 0
