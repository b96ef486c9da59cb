"""Batch k-means pieces (numpy only): k-means++ seeding and Lloyd iterations.

Used by :meth:`~segmenter.lenses.lens.Lens.refine` (centroid refinement on a
sample of current customers, seeded from the segment centers), by the lens's
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

__all__ = ["batch_kmeans", "kmeans_plus_plus", "lloyd", "nearest", "sse", "trimmed_lloyd"]

logger = logging.getLogger(__name__)

BATCH_ITERATIONS = 100
"""Lloyd iterations per start of :func:`batch_kmeans` (it stops earlier once the centers settle)."""


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
    d2 = ((points - points[first]) ** 2).sum(axis=1)
    for _ in range(1, k):
        p = d2 * w
        total = float(p.sum())
        if total <= 0.0:
            break
        if trials <= 1:
            idx = int(rng.choice(n, p=p / total))
            chosen.append(idx)
            d2 = np.minimum(d2, ((points - points[idx]) ** 2).sum(axis=1))
            continue
        cand = rng.choice(n, size=trials, p=p / total)
        best: tuple[float, int, np.ndarray] | None = None
        for idx in cand.tolist():
            nd2 = np.minimum(d2, ((points - points[idx]) ** 2).sum(axis=1))
            pot = float((nd2 * w).sum())
            if best is None or pot < best[0]:
                best = (pot, int(idx), nd2)
        assert best is not None
        chosen.append(best[1])
        d2 = best[2]
    return points[chosen].copy()


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
        centers, labels = lloyd(points, seeds, BATCH_ITERATIONS, weights)
        inertia = sse(points, centers, weights)
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia)
    assert best is not None
    return best


def lloyd(
    points: np.ndarray,
    centers: np.ndarray,
    iterations: int,
    weights: np.ndarray | None = None,
    reseed_empty: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd iterations from centers ``centers``; returns the new centers and the final labels.

    An empty center is moved to the point farthest from its nearest center
    (first such point; deterministic) when ``reseed_empty``; otherwise it stays.
    """
    centers = np.array(centers, dtype=np.float64, copy=True)
    if not len(points) or not len(centers):
        return centers, np.zeros(len(points), dtype=np.int64)
    w = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    labels, d2 = nearest(points, centers)
    for _ in range(iterations):
        mass = np.bincount(labels, weights=w, minlength=len(centers))
        if reseed_empty:
            taken: set[int] = set()
            for c in np.flatnonzero(mass <= 0.0).tolist():
                order = np.argsort(-d2, kind="stable")
                idx = next((int(i) for i in order.tolist() if int(i) not in taken and d2[i] > 0.0), None)
                if idx is None:
                    break
                taken.add(idx)
                centers[c] = points[idx]
                labels, d2 = nearest(points, centers)
            mass = np.bincount(labels, weights=w, minlength=len(centers))
        new = _means(points, labels, w, centers, mass)
        done = bool(np.allclose(new, centers, rtol=0.0, atol=1e-9))
        centers = new
        labels, d2 = nearest(points, centers)
        if done:
            break
    return centers, labels


def _means(points: np.ndarray, labels: np.ndarray, w: np.ndarray, centers: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """The Lloyd update: each center with mass moves to the weighted mean of its points; the others stay."""
    sums = np.stack([np.bincount(labels, weights=points[:, j] * w, minlength=len(centers))
                     for j in range(points.shape[1])], axis=1)  # fmt: skip
    new = centers.copy()
    filled = mass > 0.0
    new[filled] = sums[filled] / mass[filled][:, None]
    return new


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
