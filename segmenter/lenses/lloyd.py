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

import numpy as np

__all__ = ["kmeans_plus_plus", "lloyd", "nearest"]

logger = logging.getLogger(__name__)


def nearest(points: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``centers`` for every row of ``points``, and the squared distance to it."""
    d2 = ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    labels = np.argmin(d2, axis=1)
    return labels, d2[np.arange(len(points)), labels]


def kmeans_plus_plus(
    points: np.ndarray, k: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """k-means++ seeding: ``k`` rows of ``points`` (fewer if ``points`` has fewer distinct rows)."""
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
        idx = int(rng.choice(n, p=p / total))
        chosen.append(idx)
        d2 = np.minimum(d2, ((points - points[idx]) ** 2).sum(axis=1))
    return points[chosen].copy()


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
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, points * w[:, None])
        new = centers.copy()
        filled = mass > 0.0
        new[filled] = sums[filled] / mass[filled][:, None]
        done = bool(np.allclose(new, centers, rtol=0.0, atol=1e-9))
        centers = new
        labels, d2 = nearest(points, centers)
        if done:
            break
    return centers, labels
