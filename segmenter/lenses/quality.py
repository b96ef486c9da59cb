"""A lens's segment quality at refinement, against batch k-means on a sample, and the way out of a bad optimum.

Lloyd steps warm-started from the live segments keep segment ids, but never
leave the local optimum they start in. At each refinement :func:`assess`
compares the refined centers with batch k-means (best of :data:`N_INIT`
starts, same k) on a deterministic sample of the customers: the SSE ratio and
the silhouette are the lens's quality gauges (:attr:`~segmenter.lenses.lens.Lens.quality`),
and when the ratio exceeds :data:`RESTART_RATIO` the lens restarts from the
batch centers (:func:`matched`), each taking the id of the live segment
nearest to it.

Examples
--------
>>> import numpy as np
>>> xs = np.array([[0.0], [0.2], [5.0], [5.2], [10.0], [10.2]])
>>> q, batch = assess(xs, np.array([[0.1], [7.6], [7.7]]), np.random.default_rng(0))
>>> q.sse_ratio > RESTART_RATIO, sorted(np.round(batch.ravel(), 1).tolist())
(True, [0.1, 5.1, 10.1])
>>> matched(np.array([[0.1], [7.6], [7.7]]), batch).ravel().round(1).tolist()
[0.1, 5.1, 10.1]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from segmenter.lenses.lloyd import batch_kmeans, nearest, sse
from segmenter.lenses.metrics import silhouette

__all__ = ["N_INIT", "QUALITY_SAMPLE", "RESTART_GAIN", "RESTART_RATIO", "LensQuality", "assess", "matched"]

logger = logging.getLogger(__name__)

QUALITY_SAMPLE = 4000
"""Customers in the batch k-means comparison (a deterministic sample of the refinement's rows)."""
SILHOUETTE_SAMPLE = 1000
N_INIT = 3
RESTART_RATIO = 1.10
"""A refinement whose SSE exceeds batch k-means's by more than this restarts from the batch centers."""
RESTART_GAIN = 0.95
"""... provided the restarted centers lower the SSE on every customer below this share of the refined ones'
(a restart renumbers segments and moves customers: it must pay for itself)."""


@dataclass(frozen=True)
class LensQuality:
    """The segments' quality measured at the last refinement.

    Attributes
    ----------
    sse_ratio
        SSE of the refined segment centers over batch k-means's at the same k, on the sample (1.0: as good).
    silhouette
        Mean silhouette of the sample labelled by its nearest segment center.
    customers
        Customers the refinement saw.
    restarted
        Whether this refinement restarted from the batch centers.
    """

    sse_ratio: float
    silhouette: float
    customers: int
    restarted: bool = False


def _sample(xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(xs) <= QUALITY_SAMPLE:
        return xs
    return xs[np.sort(rng.choice(len(xs), QUALITY_SAMPLE, replace=False))]


def assess(xs: np.ndarray, centers: np.ndarray, rng: np.random.Generator) -> tuple[LensQuality, np.ndarray]:
    """Quality of ``centers`` on (a sample of) the scaled rows ``xs``, and the batch k-means centers.

    Raises
    ------
    ValueError
        On an empty ``xs`` or ``centers``.
    """
    if not len(xs) or not len(centers):
        raise ValueError("assess needs rows and centers")
    part = _sample(xs, rng)
    batch, _, batch_sse = batch_kmeans(part, len(centers), rng, n_init=N_INIT)
    own = sse(part, centers)
    ratio = own / batch_sse if batch_sse > 0.0 else 1.0
    labels, _ = nearest(part, centers)
    sil = silhouette(part, labels, SILHOUETTE_SAMPLE, rng)
    return LensQuality(sse_ratio=ratio, silhouette=sil, customers=len(xs)), batch


def matched(current: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """``batch`` centers reordered to follow ``current``: closest pairs first (greedy), each used once.

    Row ``i`` of the result is the batch center that takes over from ``current[i]``.
    """
    d = ((current[:, None, :] - batch[None, :, :]) ** 2).sum(axis=2)
    out = np.array(current, dtype=np.float64, copy=True)
    used_c: set[int] = set()
    used_b: set[int] = set()
    for flat in np.argsort(d, axis=None, kind="stable").tolist():
        i, j = divmod(flat, d.shape[1])
        if i in used_c or j in used_b:
            continue
        out[i] = batch[j]
        used_c.add(i)
        used_b.add(j)
    return out
