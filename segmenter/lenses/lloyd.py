"""Batch k-means pieces: k-means++ seeding (numpy) and Lloyd iterations (compiled, numba).

Used by :meth:`~segmenter.lenses.lens.Lens.refine` (centroid refinement on all
current customers, seeded from the segment centers), by the lens's
first refresh (on the warm-up buffer) and by the CluStream adapter (its offline
macro-clustering over micro-clusters). Deterministic: randomness only comes
from the ``numpy.random.Generator`` passed in.

Examples
--------
>>> import numpy as np
>>> points = np.array([[0.0, 0.0], [0.2, 0.0], [5.0, 5.0], [5.2, 5.0]])
>>> centers = kmeans_plus_plus(points, 2, np.random.default_rng(0))
>>> centers, labels = lloyd(points, centers, iterations=10)
>>> sorted(np.round(centers, 2).tolist())
[[0.1, 0.0], [5.1, 5.0]]
>>> bool(labels[0] != labels[2])
True
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from numba import njit

__all__ = ["REFINE_TOL", "batch_kmeans", "kmeans_plus_plus", "lloyd", "lloyd_sse", "nearest", "sse", "trimmed_lloyd"]

logger = logging.getLogger(__name__)

BATCH_ITERATIONS = 100
"""Lloyd iterations per start of :func:`batch_kmeans` (it stops earlier once the centers settle)."""
REFINE_TOL = 1e-4
"""A refinement's Lloyd steps (warm-started from the live segments, on z-scored rows) stop once one step moves
the centers by at most this much in all (sum of squared moves; scikit-learn's ``tol`` on unit variance)."""


@njit(cache=True)
def _nearest(points: Any, centers: Any, labels: Any, d2: Any) -> None:  # pragma: no cover - compiled
    n, d = points.shape
    k = centers.shape[0]
    for i in range(n):
        best = 0
        best_d = math.inf
        for c in range(k):
            s = 0.0
            for j in range(d):
                diff = points[i, j] - centers[c, j]
                s += diff * diff
            if s < best_d:
                best_d = s
                best = c
        labels[i] = best
        d2[i] = best_d


def nearest(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``centers`` for every row of ``points``, and the squared distance to it.

    Compiled, one pass over the rows (no ``(n, k, d)`` temporary: a million rows cost a few milliseconds).
    """
    pts = np.ascontiguousarray(points, dtype=np.float64)
    cs = np.ascontiguousarray(centers, dtype=np.float64)
    labels = np.zeros(len(pts), np.int64)
    d2 = np.zeros(len(pts), np.float64)
    if len(pts) and len(cs):
        _nearest(pts, cs, labels, d2)
    return labels, d2


def sse(points: np.ndarray, centers: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Sum of (weighted) squared distances of ``points`` to their nearest center."""
    _, d2 = nearest(points, centers)
    return float(d2.sum() if weights is None else (d2 * weights).sum())


def kmeans_plus_plus(
    points: np.ndarray, k: int, rng: np.random.Generator, weights: np.ndarray | None = None, trials: int = 1
) -> np.ndarray:
    """k-means++ seeding: ``k`` rows of ``points`` (fewer if ``points`` has fewer distinct rows).

    ``trials > 1`` is the greedy variant (scikit-learn's): each step draws
    ``trials`` candidates and keeps the one that lowers the potential most.
    """
    n = len(points)
    if n == 0:
        return np.zeros((0, points.shape[1]))
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    first = int(rng.choice(n, p=w / w.sum()))
    chosen = [first]
    closer = _Closer(points)
    d2 = closer(first, None)
    for _ in range(1, k):
        p = d2 * w
        total = float(p.sum())
        if total <= 0.0:
            break
        if trials <= 1:
            idx = int(rng.choice(n, p=p / total))
            chosen.append(idx)
            d2 = closer(idx, d2)
            continue
        cand = rng.choice(n, size=trials, p=p / total)
        best: tuple[float, int, np.ndarray] | None = None
        for idx in cand.tolist():
            nd2 = closer(int(idx), d2)
            pot = float((nd2 * w).sum())
            if best is None or pot < best[0]:
                best = (pot, int(idx), nd2)
        assert best is not None
        chosen.append(best[1])
        d2 = best[2]
    return points[chosen].copy()


class _Closer:
    """k-means++'s distance update: each point's squared distance to row ``idx``, or to its nearest so far if nearer.

    Compiled (:func:`_closer`) for float64 rows of fewer than 8 columns, where numpy's row sum adds the squares one
    after another as the loop does (same numbers bit for bit); numpy otherwise (it sums 8 or more pairwise).
    """

    def __init__(self, points: np.ndarray) -> None:
        self._compiled = points.dtype == np.float64 and points.shape[1] < 8
        self._points = np.ascontiguousarray(points) if self._compiled else points

    def __call__(self, idx: int, d2: np.ndarray | None) -> np.ndarray:
        pts = self._points
        if not self._compiled:
            new: np.ndarray = ((pts - pts[idx]) ** 2).sum(axis=1)
            return new if d2 is None else np.minimum(d2, new)
        out = np.empty(len(pts), np.float64)
        _closer(pts, idx, np.full(len(pts), np.inf) if d2 is None else d2, out)
        return out


@njit(cache=True)
def _closer(points: Any, idx: int, d2: Any, out: Any) -> None:  # pragma: no cover - compiled
    n, d = points.shape
    for i in range(n):
        s = 0.0
        for j in range(d):
            diff = points[i, j] - points[idx, j]
            s += diff * diff
        out[i] = s if s < d2[i] else d2[i]


def batch_kmeans(
    points: np.ndarray,
    k: int,
    rng: np.random.Generator,
    *,
    n_init: int = 10,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Batch k-means, the yardstick: best of ``n_init`` greedy k-means++ starts, each refined by Lloyd.

    At most :data:`BATCH_ITERATIONS` Lloyd iterations per start.

    Returns
    -------
    centers, labels, inertia
        The run with the lowest (weighted) sum of squared distances.
    """
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    trials = 2 + int(math.log(max(k, 1)))
    for _ in range(max(1, n_init)):
        seeds = kmeans_plus_plus(points, k, rng, weights, trials=trials)
        centers, labels, inertia = lloyd_sse(points, seeds, BATCH_ITERATIONS, weights)
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia)
    assert best is not None
    return best


def lloyd(  # noqa: PLR0913 - the points, the start and four settings with defaults (tol by keyword)
    points: np.ndarray,
    centers: np.ndarray,
    iterations: int,
    weights: np.ndarray | None = None,
    reseed_empty: bool = True,
    *,
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations from centers ``centers``; returns the new centers and the final labels.

    At most ``iterations`` steps; it stops earlier once the centers settle
    (they move less than ``1e-9``, or the sum of their squared moves in one
    step is at most ``tol``) or no assignment changes (the next step
    would leave the centers where they are). An empty center is moved to the
    point farthest from its nearest center (first such point; deterministic)
    when ``reseed_empty``; otherwise it stays. Compiled (:func:`_lloyd_steps`):
    the same sums in the same order as numpy's ``bincount``, so the same
    centers bit for bit.
    """
    centers, labels, _ = lloyd_sse(points, centers, iterations, weights, reseed_empty, tol=tol)
    return centers, labels


def lloyd_sse(  # noqa: PLR0913 - the arguments of lloyd
    points: np.ndarray,
    centers: np.ndarray,
    iterations: int,
    weights: np.ndarray | None = None,
    reseed_empty: bool = True,
    *,
    tol: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`lloyd`, and the (weighted) SSE of ``points`` at the centers it returns.

    The SSE comes from the last assignment pass of the iterations, which is at the returned centers:
    the same number as :func:`sse` on them, bit for bit, without another pass over the points.
    """
    centers = np.array(centers, dtype=np.float64, copy=True)
    if not len(points) or not len(centers):
        return centers, np.zeros(len(points), dtype=np.int64), 0.0
    pts = np.ascontiguousarray(points, dtype=np.float64)
    w = np.ones(len(pts)) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    labels = np.zeros(len(pts), np.int64)
    d2 = np.zeros(len(pts), np.float64)
    _lloyd_steps(pts, w, centers, int(iterations), bool(reseed_empty), float(tol), labels, d2)
    return centers, labels, float(d2.sum() if weights is None else (d2 * weights).sum())


@njit(cache=True)
def _lloyd_steps(  # noqa: PLR0913, PLR0917 - compiled: positional only  # pragma: no cover - compiled
    points: Any, w: Any, centers: Any, iterations: int, reseed_empty: bool, tol: float, labels: Any, d2: Any
) -> int:
    """:func:`lloyd`'s loop, in place on ``centers``, ``labels`` and ``d2``.

    Returns the steps a loop without the early stop would have taken (one more than computed when the
    assignments stopped changing).
    """
    k = centers.shape[0]
    _nearest(points, centers, labels, d2)
    previous = labels.copy()
    mass = np.zeros(k, np.float64)
    new = np.empty_like(centers)
    for step in range(iterations):
        _mass(labels, w, mass)
        if reseed_empty and _reseed(points, centers, labels, d2, mass):
            _mass(labels, w, mass)
        _weighted_means(points, labels, w, centers, mass, new)
        done = True
        shift2 = 0.0
        for c in range(k):
            for j in range(centers.shape[1]):
                diff = new[c, j] - centers[c, j]
                shift2 += diff * diff
                if not abs(diff) <= 1e-9:
                    done = False
        done = done or shift2 <= tol
        _copy_rows(new, centers)  # loops, not slice copies: those bring numba's shape-error formatting code
        for i in range(len(labels)):
            previous[i] = labels[i]
        _nearest(points, centers, labels, d2)
        if done:
            return step + 1
        # the same labels again: the next step's means equal these centers exactly (it would stop there)
        if _same(previous, labels) and (not reseed_empty or (mass > 0.0).all()):
            return min(step + 2, iterations)
    return iterations


@njit(cache=True)
def _copy_rows(src: Any, dst: Any) -> None:  # pragma: no cover - compiled
    """``dst[:] = src`` for two matrices of one shape."""
    for c in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[c, j] = src[c, j]


@njit(cache=True)
def _same(a: Any, b: Any) -> bool:  # pragma: no cover - compiled
    return bool((a == b).all())


@njit(cache=True)
def _mass(labels: Any, w: Any, mass: Any) -> None:  # pragma: no cover - compiled
    mass[:] = 0.0
    for i in range(len(labels)):
        mass[labels[i]] += w[i]


@njit(cache=True)
def _reseed(points: Any, centers: Any, labels: Any, d2: Any, mass: Any) -> bool:  # pragma: no cover - compiled
    """Each empty center (in order) to the point farthest from its nearest center, not taken, at a distance."""
    taken = np.zeros(len(points), np.bool_)
    moved = False
    for c in range(centers.shape[0]):
        if mass[c] > 0.0:
            continue
        idx = -1
        far = 0.0
        for i in range(len(points)):
            if d2[i] > far and not taken[i]:
                far = d2[i]
                idx = i
        if idx < 0:
            break
        taken[idx] = True
        for j in range(centers.shape[1]):
            centers[c, j] = points[idx, j]
        _nearest(points, centers, labels, d2)
        moved = True
    return moved


@njit(cache=True)
def _weighted_means(  # noqa: PLR0913, PLR0917 - compiled: positional only  # pragma: no cover - compiled
    points: Any, labels: Any, w: Any, centers: Any, mass: Any, out: Any
) -> None:
    """The Lloyd update into ``out``: each center with mass at the weighted mean of its points; the others stay.

    Sums accumulate row by row, as numpy's ``bincount(labels, weights=points[:, j] * w)`` does.
    """
    k, d = centers.shape
    sums = np.zeros((k, d), np.float64)
    for i in range(len(labels)):
        c = labels[i]
        for j in range(d):
            sums[c, j] += points[i, j] * w[i]
    for c in range(k):
        for j in range(d):
            out[c, j] = sums[c, j] / mass[c] if mass[c] > 0.0 else centers[c, j]


def _means(points: np.ndarray, labels: np.ndarray, w: np.ndarray, centers: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The Lloyd update: each center with mass moves to the weighted mean of its points; the others stay."""
    out = np.empty((len(centers), points.shape[1]), np.float64)
    _weighted_means(np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(labels, dtype=np.int64),
                    np.ascontiguousarray(w, dtype=np.float64), np.ascontiguousarray(centers, dtype=np.float64),
                    np.ascontiguousarray(mass, dtype=np.float64), out)  # fmt: skip
    return out


def trimmed_lloyd(
    points: np.ndarray, centers: np.ndarray, radius: float, iterations: int, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted Lloyd steps in which a point farther than ``radius`` from its nearest center pulls nothing.

    A center with no point within ``radius`` stays where it is. Returns the
    centers, the weight each one holds, and the mask of points outside every
    center's radius (at the final centers).
    """
    centers = np.array(centers, dtype=np.float64, copy=True)
    k = len(centers)
    r2 = radius * radius
    labels, d2 = nearest(points, centers)
    for _ in range(iterations):
        inside = d2 <= r2
        lab, w = labels[inside], weights[inside]
        new = _means(points[inside], lab, w, centers, np.bincount(lab, weights=w, minlength=k))
        done = bool(np.allclose(new, centers, rtol=0.0, atol=1e-9))
        centers = new
        labels, d2 = nearest(points, centers)
        if done:
            break
    inside = d2 <= r2
    return centers, np.bincount(labels[inside], weights=weights[inside], minlength=k), ~inside
