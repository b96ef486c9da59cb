"""A population's per-feature mean and standard deviation, and its rows standardised, in one compiled pass.

What :meth:`~segmenter.lenses.scaling.ScalerSnapshot.of_population` and
:meth:`~segmenter.lenses.scaling.ScalerSnapshot.scale_matrix` computed with numpy
(``mean(axis=0)``, ``std(axis=0)``, ``(t - mean) / std``), bit for bit, without
numpy's temporaries: each one a matrix as large as the refinement's rows, mapped
and unmapped by the allocator (:mod:`segmenter.malloc_tuning`), about half the
refinement's cost on a 20,000-customer replay.

Bit for bit, because numpy's column sums depend on the layout: a column that is
contiguous in memory (a Fortran-ordered matrix, the pipeline's column selection)
is summed pairwise (numpy's ``pairwise_sum``, 8 partial sums in blocks of up to 128
rows); the columns of a C-ordered matrix are summed row after row. :func:`standardise`
sums each column the way numpy would for the layout it is given.

Examples
--------
>>> import numpy as np
>>> t = np.asfortranarray(np.random.default_rng(0).lognormal(0.0, 2.0, (1000, 3)))
>>> mean, std, scaled = standardise(t, 1e-4)
>>> bool((mean == t.mean(axis=0)).all() and (std == t.std(axis=0)).all())
True
>>> bool((scaled == (t - mean) / std).all()), scaled.flags.f_contiguous
(True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["standardise"]

_BLOCK = 128
"""numpy's ``PW_BLOCKSIZE``: a pairwise sum of at most this many values is 8 running sums, then the rest."""
_STACK = 128
"""Room for the open ranges of :func:`_pairwise`: each halves its parent, fewer than 64 deep for any length."""


def standardise(transformed: np.ndarray, min_std: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and population std of each column of ``transformed`` ``(n >= 1, d)``, and the rows standardised.

    A std at most ``min_std`` becomes 1.0. The scaled rows have the layout of ``transformed`` (numpy's
    ``order="K"``); a matrix that is neither C- nor Fortran-contiguous is copied in that order first, which
    is the order numpy's reductions walk it in.
    """
    t = transformed
    if not (t.flags.c_contiguous or t.flags.f_contiguous) or t.dtype != np.float64:
        t = np.array(t, dtype=np.float64, order="K")
    stats = np.empty((2, t.shape[1]), np.float64)
    scaled = np.empty_like(t)
    _standardise(t, bool(t.flags.f_contiguous), float(min_std), stats, scaled)
    return stats[0], stats[1], scaled


@njit(cache=True)
def _standardise(t: Any, pairwise: bool, min_std: float, stats: Any, out: Any) -> None:  # pragma: no cover - compiled
    """:func:`standardise` into ``stats`` (mean, std) and ``out``; ``pairwise``: the columns are contiguous."""
    n, d = t.shape
    column = np.empty(n, np.float64)
    for j in range(d):
        for i in range(n):
            column[i] = t[i, j]
        mean = _sum(column, pairwise) / n
        for i in range(n):
            diff = column[i] - mean
            column[i] = diff * diff
        std = np.sqrt(_sum(column, pairwise) / n)
        std = std if std > min_std else 1.0
        stats[0, j] = mean
        stats[1, j] = std
        for i in range(n):
            out[i, j] = (t[i, j] - mean) / std


@njit(cache=True)
def _sum(values: Any, pairwise: bool) -> float:  # pragma: no cover - compiled
    """numpy's sum of ``values``: pairwise (a contiguous reduction) or one after another (a strided one)."""
    if pairwise:
        return _pairwise(values)
    total = 0.0
    for v in values:
        total += v
    return total


@njit(cache=True)
def _pairwise(values: Any) -> float:  # pragma: no cover - compiled
    """numpy's ``pairwise_sum`` (numpy/_core/src/umath/loops_utils.h.src), its recursion unrolled onto a stack.

    A range of more than :data:`_BLOCK` values is the sum of its halves (the first one a multiple of 8 long),
    each summed first; numba's cache does not load recursive functions reliably (a crash on the second run).
    """
    lo = np.zeros(_STACK, np.int64)  # the ranges still open, with how far each is (0: none, 1: first half done)
    size = np.zeros(_STACK, np.int64)
    stage = np.zeros(_STACK, np.int64)
    sums = np.zeros(_STACK, np.float64)  # the finished ranges' sums, waiting for their sibling
    size[0] = len(values)
    top, done = 0, 0
    while top >= 0:
        first, n = lo[top], size[top]
        half = n // 2 - (n // 2) % 8
        if n <= _BLOCK or stage[top] == 2:
            if n <= _BLOCK:
                sums[done] = _block(values, first, n)
                done += 1
            else:
                done -= 1
                sums[done - 1] += sums[done]
            top -= 1
            continue
        stage[top] += 1
        top += 1
        lo[top] = first if stage[top - 1] == 1 else first + half
        size[top] = half if stage[top - 1] == 1 else n - half
        stage[top] = 0
    return float(sums[0])


@njit(cache=True)
def _block(values: Any, lo: int, n: int) -> float:  # pragma: no cover - compiled
    """numpy's pairwise sum of at most :data:`_BLOCK` values: 8 running sums, combined in pairs, then the rest."""
    if n < 8:
        total = 0.0
        for i in range(lo, lo + n):
            total += values[i]
        return total
    r = values[lo : lo + 8].copy()
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += values[lo + i + j]
        i += 8
    total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for k in range(lo + i, lo + n):
        total += values[k]
    return float(total)
