"""Clustering quality measures in numpy: partition SSE, ARI, purity, silhouette, Davies-Bouldin.

The evaluation step (:mod:`segmenter.evaluation`) and the lens's own quality
gauges (:attr:`~segmenter.lenses.lens.Lens.quality`) use these; they agree
with scikit-learn's ``adjusted_rand_score``, ``silhouette_score`` and
``davies_bouldin_score`` (the tests compare them), without depending on it.

Labels are any integer array (``-1`` is a label like any other: drop
unassigned rows before calling).

Examples
--------
>>> import numpy as np
>>> adjusted_rand([0, 0, 1, 1], [5, 5, 7, 7]), round(adjusted_rand([0, 0, 1, 1], [0, 1, 0, 1]), 6)
(1.0, -0.5)
>>> x = np.array([[0.0], [0.1], [5.0], [5.1]])
>>> round(partition_sse(x, np.array([0, 0, 1, 1])), 3)
0.01
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["adjusted_rand", "davies_bouldin", "partition_sse", "purity", "silhouette"]

logger = logging.getLogger(__name__)


def _codes(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Labels as codes ``0..m-1`` (any hashable labels; numpy arrays directly)."""
    arr = np.asarray(labels)
    if arr.dtype == object:
        arr = np.asarray([str(x) for x in arr.tolist()])
    return np.unique(arr, return_inverse=True)[1].reshape(-1)


def _contingency(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray) -> np.ndarray:
    ca, cb = _codes(a), _codes(b)
    if len(ca) != len(cb):
        raise ValueError(f"label arrays differ in length: {len(ca)} and {len(cb)}")
    table = np.zeros((int(ca.max(initial=-1)) + 1, int(cb.max(initial=-1)) + 1), np.int64)
    np.add.at(table, (ca, cb), 1)
    return table


def _pairs(x: np.ndarray) -> float:
    return float((x * (x - 1)).sum() / 2.0)


def adjusted_rand(a: Sequence[Any] | np.ndarray, b: Sequence[Any] | np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same rows (1.0: identical up to renaming)."""
    table = _contingency(a, b)
    n = int(table.sum())
    if n < 2:
        return 1.0
    sum_ij = _pairs(table.astype(np.float64))
    sum_a = _pairs(table.sum(axis=1).astype(np.float64))
    sum_b = _pairs(table.sum(axis=0).astype(np.float64))
    total = n * (n - 1) / 2.0
    expected = sum_a * sum_b / total
    top = (sum_a + sum_b) / 2.0
    if top == expected:  # both labelings trivial (one cluster, or all singletons)
        return 1.0
    return (sum_ij - expected) / (top - expected)


def purity(labels: Sequence[Any] | np.ndarray, truth: Sequence[Any] | np.ndarray) -> float:
    """Share of rows whose segment's majority truth class is their own."""
    table = _contingency(labels, truth)
    n = int(table.sum())
    return float(table.max(axis=1).sum() / n) if n else 1.0


def partition_sse(points: np.ndarray, labels: np.ndarray) -> float:
    """Within-segment sum of squared distances to each segment's mean (the k-means objective of a partition)."""
    codes = _codes(labels)
    k = int(codes.max(initial=-1)) + 1
    if not len(points) or k == 0:
        return 0.0
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    total = 0.0
    for j in range(points.shape[1]):
        col = points[:, j]
        sums = np.bincount(codes, weights=col, minlength=k)
        total += float((col * col).sum() - (sums * sums / np.maximum(counts, 1.0)).sum())
    return max(total, 0.0)


def silhouette(
    points: np.ndarray, labels: np.ndarray, sample: int = 2000, rng: np.random.Generator | None = None
) -> float:
    """Mean silhouette coefficient, on a random sample of at most ``sample`` rows (exact when ``n <= sample``).

    Like scikit-learn's ``silhouette_score(sample_size=...)``: distances are
    taken within the sample. A row alone in its segment scores 0; NaN when
    fewer than 2 segments (or as many segments as rows) are present.
    """
    n = len(points)
    if n > sample:
        rng = rng if rng is not None else np.random.default_rng(0)
        idx = np.sort(rng.choice(n, size=sample, replace=False))
        points, labels = points[idx], np.asarray(labels)[idx]
    codes = _codes(labels)
    k = int(codes.max(initial=-1)) + 1
    m = len(points)
    if k < 2 or k >= m:
        return float("nan")
    sq = (points * points).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * points @ points.T, 0.0))
    np.fill_diagonal(dist, 0.0)
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    onehot = np.zeros((m, k))
    onehot[np.arange(m), codes] = 1.0
    per = dist @ onehot  # (m, k): summed distances to each segment
    own = counts[codes]
    a = per[np.arange(m), codes] / np.maximum(own - 1.0, 1.0)
    other = per / counts[None, :]
    other[np.arange(m), codes] = np.inf
    b = other.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(own > 1, (b - a) / np.maximum(a, b), 0.0)
    return float(np.nan_to_num(s).mean())


def davies_bouldin(points: np.ndarray, labels: np.ndarray) -> float:
    """Davies-Bouldin index (lower is better; NaN with fewer than 2 segments)."""
    codes = _codes(labels)
    k = int(codes.max(initial=-1)) + 1
    if k < 2:
        return float("nan")
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    centroids = np.stack([np.bincount(codes, weights=points[:, j], minlength=k) for j in range(points.shape[1])],
                         axis=1) / counts[:, None]  # fmt: skip
    spread = np.bincount(codes, weights=np.linalg.norm(points - centroids[codes], axis=1), minlength=k) / counts
    sep = np.linalg.norm(centroids[:, None, :] - centroids[None, :, :], axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (spread[:, None] + spread[None, :]) / sep
    ratio[~np.isfinite(ratio)] = 0.0
    np.fill_diagonal(ratio, 0.0)
    return float(ratio.max(axis=1).mean())
