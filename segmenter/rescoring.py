"""Re-scoring many customers at given event times in one compiled pass (numba).

Time-driven work re-evaluates customers without an event of theirs: the
inactivity sweep (everyone not scored since the last interval, at the
watermark), and the re-assignment of the customers of segments a lens merged,
split or retired (cause ``model``, after a lifecycle event or a new shared
model). :func:`rescore` computes, for every row, its features at its time
(:func:`segmenter.kernel.feature_vector`), scales them per lens and applies the
one move rule (:func:`~segmenter.lenses.hysteresis.nearest_with_hysteresis`);
customers who stay get their dwell counted in place, and only the moves come
back to Python, in row order then lens order (the order the per-customer loop
had), to build their ``segment_change`` messages and campaign triggers.

The decisions of one pass are independent of each other (a move changes only
its own row and lens, and the lens's membership counts, which no assignment
reads), so one pass gives the outputs of the per-customer loop it replaces.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

from segmenter.features import FEATURE_NAMES
from segmenter.kernel import SCORED, feature_vector, scale
from segmenter.lenses.hysteresis import nearest_with_hysteresis

__all__ = ["MOVE_FIELDS", "rescore"]

_N_VALUES = len(FEATURE_NAMES)
MOVE_FIELDS = ("index", "lens", "segment", "nearest")
"""Columns of the ``moves`` array :func:`rescore` fills (int64; the distance goes to ``dist``)."""


@njit(cache=True)
def rescore(  # noqa: PLR0917 - compiled: positional only
    rows: Any,
    at: Any,
    lens_on: Any,
    mark: bool,
    f: Any,
    t: Any,
    seg: Any,
    dwell: Any,
    since: Any,
    prev: Any,
    fp: Any,
    idx: Any,
    dims: Any,
    heavy: Any,
    inv: Any,
    off: Any,
    centers: Any,
    nlive: Any,
    live: Any,
    rule: Any,
    ready: Any,
    moves: Any,
    dist: Any,
) -> tuple[int, int]:  # pragma: no cover - compiled
    """Re-score ``rows[i]`` at ``at[i]`` in every lens with ``lens_on`` and ready; returns ``(moves, bad)``.

    ``mark``: also record ``at[i]`` as the row's scored time. Moves fill
    ``moves[:n]`` (:data:`MOVE_FIELDS`) and ``dist[:n]``; a customer who stays
    has its dwell counted. ``bad`` is the index of a row with a non-finite
    feature (the pass stops there, nothing after it done), else ``-1``.
    """
    vals = np.empty(_N_VALUES, np.float64)
    x = np.empty(idx.shape[1], np.float64)
    n = 0
    for r in range(len(rows)):
        row = rows[r]
        tr = at[r]
        feature_vector(f, t, row, tr, fp, vals)
        for li in range(len(dims)):
            if not lens_on[li] or not ready[li]:
                continue
            d = dims[li]
            for j in range(d):
                if not math.isfinite(vals[idx[li, j]]):
                    return n, r
            nl = nlive[li]
            if nl > 0:
                scale(vals, idx[li], heavy[li], inv[li], off[li], d, x)
            cur = seg[row, li]
            dw = dwell[row, li]
            moved, target, nearest, dd = nearest_with_hysteresis(
                x, centers[li], live[li], nl, d, cur, dw, tr - since[row, li], prev[row, li], rule[li]
            )
            if moved:
                moves[n, 0] = r
                moves[n, 1] = li
                moves[n, 2] = target
                moves[n, 3] = nearest
                dist[n] = dd
                n += 1
            elif dw < 65535:
                dwell[row, li] = dw + 1
        if mark:
            t[row, SCORED] = tr
    return n, -1
