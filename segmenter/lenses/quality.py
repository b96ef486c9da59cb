"""A lens's segment quality at refinement, against batch k-means on a sample, and the way out of a bad optimum.

Lloyd steps warm-started from the live segments keep segment ids, but never
leave the local optimum they start in. Each refinement keeps an
:class:`Assessment` of its centers: a comparison with batch k-means (best of
:data:`N_INIT` starts, same k) on a deterministic sample of the customers,
whose SSE ratio and silhouette are the lens's quality gauges
(:attr:`~segmenter.lenses.lens.Lens.quality`), computed when read. At the
first refinement and every :data:`RESTART_CHECK_EVERY`-th one, and at any
other whose SSE per customer rose since the last check (:func:`sse_rose`) or,
for a summarising model, whose :func:`screen` (one start on a small sample)
exceeds :data:`SCREEN_RATIO`, the ratio is computed at once: when it exceeds :data:`RESTART_RATIO` the lens
restarts from the batch centers (:func:`matched`), each taking the id of the
live segment nearest to it, provided the restart pays for the customers it
moves (:func:`restart_pays`; k-means models only: a summarising model's
segments are dragged between refinements, and a restart is their way back).
:func:`assess` computes everything at once.

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

__all__ = [
    "FEWER_FLOOR",
    "FEWER_GAIN",
    "MORE_GAIN",
    "MORE_RATIO",
    "N_INIT",
    "QUALITY_SAMPLE",
    "RESTART_CHECK_EVERY",
    "RESTART_GAIN",
    "RESTART_MOVE_COST",
    "RESTART_RATIO",
    "SCREEN_RATIO",
    "SCREEN_SAMPLE",
    "SSE_RISE",
    "Assessment",
    "LensQuality",
    "assess",
    "fewer_segments",
    "matched",
    "merged_into",
    "more_segments",
    "restart_pays",
    "screen",
    "sse_rose",
]

logger = logging.getLogger(__name__)

QUALITY_SAMPLE = 4000
"""Customers in the batch k-means comparison (a deterministic sample of the refinement's rows)."""
SILHOUETTE_SAMPLE = 1000
N_INIT = 3
RESTART_RATIO = 1.01
"""A refinement whose SSE exceeds batch k-means's by more than this restarts from the batch centers.

Warm-started Lloyd keeps the basin it starts in, and on bench/quality.py's streams the basins near the
batch optimum are a few percent apart in SSE with partitions far apart: btyd's engagement segments sat at
1.04x batch k-means with an ARI of 0.32 against it, personas' at 1.02x with 0.65. A 1.10x threshold never
left them; 1.01x does (0.96-0.97 after it), and batch k-means agrees with itself there (ARI 0.96-0.98
across seeds), so the restarts land in one optimum and do not alternate."""
RESTART_CHECK_EVERY = 4
"""The restart check (batch k-means now, at the refinement) runs at a lens's first refinement and then at every
this-many-th one, and between them where :func:`sse_rose` calls for it; a refinement without the check computes
its quality only when it is read (:class:`Assessment`)."""
SSE_RISE = 0.02
"""Between scheduled checks, the restart check runs at a k-means lens's refinement whose SSE per customer (in the
population's own z-scores, where every refinement's total variance is the number of features) exceeds the last
check's by more than this share: the segments fit the population worse than when batch k-means last vouched for
them.

For k-means models it replaced :func:`screen` at every refinement, so pessimistic that it sent about half of all
refinements to the check: on the 20,000-customer sparse replay 71 of 152 ran batch k-means, 33 of them between
scheduled checks (in bench/quality.py's scenarios those 33 never changed a k-means lens's outcome)."""
SCREEN_SAMPLE = 500
"""Customers in the screen of a summarising model's refinements between restart checks (:func:`screen`)."""
SCREEN_RATIO = 1.01
"""A screened refinement whose SSE ratio on the screen's sample exceeds this runs the restart check.

Summarising models (DenStream, DBSTREAM, CluStream, STREAMKMeans) drag their segments between refinements, into
another basin without a rise in the SSE: without the screen, bench/quality.py's separated DBSTREAM engagement
segments ended at an ARI of 0.79 against batch k-means instead of 0.91 (300 customers)."""
RESTART_GAIN = 0.99
"""A restart must lower the SSE on every customer below this share of the refined centers' (within 1% the lens
keeps its segments rather than trade one near-tie optimum for another) ..."""
RESTART_MOVE_COST = 0.05
"""... less this much per unit of the share of customers it would move to another segment (:func:`restart_pays`).

A restart renumbers segments and moves customers: on the 20,000-customer sparse replay the 13 restarts the 1.01x
:data:`RESTART_RATIO` let through moved 9-43% of the customers for 1-8% of SSE, some of them a week apart. At
0.05 a restart that moves a third of the customers must gain 2.7%; on that replay 4 restarts are left (6 without
the cost), and the value lens's moves with cause ``model`` fall from 71.5k to 67.9k (74.0k with the screen and
no cost); 0.1 left as many restarts."""
FEWER_GAIN = 0.0
"""Silhouette a smaller k must gain over a k-less lens's segments before they merge (:func:`fewer_segments`).

Any gain: at 0.05, DBSTREAM kept the separated scenario's occasional pattern cut in two along its decaying
activity (5 engagement segments for 4 patterns; customers crossed between the halves 8-10 days apart: flap rate
1.88%, SSE 1.13 x batch). Measured by bench/quality.py on every scenario for DenStream and DBSTREAM, 0.05 -> 0:
engagement SSE x batch separated dbstream 1.13 -> 1.01, btyd dbstream 1.11 -> 1.06, btyd denstream 1.12 -> 1.06,
personas denstream 1.10 -> 1.07; ARI vs batch btyd denstream 0.58 -> 0.77, btyd dbstream 0.80 -> 0.76 (the
trade); value lenses unchanged."""
FEWER_FLOOR = 3
"""... and the fewest segments they merge to: silhouette favours 2 on most of bench/quality.py's streams (0.59-0.73
against 0.50-0.67 at 3-4 in the value lens), which would halve the separated patterns' segments."""


MORE_RATIO = 0.65
"""A k-less lens (DenStream, DBSTREAM) gains a segment when batch k-means at one more segment cuts the SSE of
batch k-means at its k below this share (:func:`more_segments`) ...

Measured at every restart check of bench/quality.py's scenarios (DenStream and DBSTREAM, the bench sizes): the
separated patterns DenStream's value lens holds in 3 segments for 4, 0.77 at the first refinement (half the
customers seen), 0.56 at the fifth, 0.37 at the ninth; every other lens, where no pattern is missing, 0.71
(separated DBSTREAM value, 4 segments) to 0.94, and the few lower ones lose silhouette (personas value, 2 -> 3
segments, 0.57-0.69: 0.69 -> 0.61). Sparse value (3 segments, a continuum): 0.77-0.85."""
MORE_GAIN = 0.0
"""... and its silhouette exceeds the segments' own by more than this: :data:`FEWER_GAIN`, so that
:func:`fewer_segments` does not merge the new segment back at the next check (separated DenStream value: 0.59 ->
0.65 at the fifth refinement; personas engagement, 5 -> 6 segments at 0.75-0.82 of the SSE, gains 0.02-0.04)."""


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


class Assessment:
    """One refinement's comparison with batch k-means, each part computed the first time it is needed.

    The sample is drawn at once (it is all a later read needs of the rows); batch k-means runs for the restart
    check or when :meth:`quality` is read, the silhouette only when :meth:`quality` is read. Each part draws
    from ``rng`` in the order :func:`assess` does (sample, batch k-means, silhouette), so the values are
    :func:`assess`'s whenever they are computed, provided nothing else draws from ``rng`` in between.

    Raises
    ------
    ValueError
        On an empty ``xs`` or ``centers``.
    """

    def __init__(self, xs: np.ndarray, centers: np.ndarray, rng: np.random.Generator, restarted: bool = False) -> None:
        if not len(xs) or not len(centers):
            raise ValueError("assess needs rows and centers")
        self._part = _sample(xs, rng)
        self._centers = np.array(centers, dtype=np.float64, copy=True)
        self._customers = len(xs)
        self._rng = rng
        self._restarted = restarted
        self._batch: tuple[np.ndarray, float] | None = None
        self._quality: LensQuality | None = None

    @property
    def sample(self) -> np.ndarray:
        """The customers (scaled rows) the comparison is made on."""
        return self._part

    @property
    def centers(self) -> np.ndarray:
        """The assessed centers."""
        return self._centers

    def batch(self) -> np.ndarray:
        """The batch k-means centers on the sample (computed once)."""
        return self._batch_run()[0]

    def batch_sse(self) -> float:
        """Batch k-means's SSE on the sample (computed once)."""
        return self._batch_run()[1]

    def sse_ratio(self) -> float:
        """SSE of the assessed centers over batch k-means's, on the sample."""
        batch_sse = self._batch_run()[1]
        own = sse(self._part, self._centers)
        return own / batch_sse if batch_sse > 0.0 else 1.0

    def quality(self) -> LensQuality:
        """The SSE ratio and the silhouette (computed once)."""
        if self._quality is None:
            ratio = self.sse_ratio()
            labels, _ = nearest(self._part, self._centers)
            sil = silhouette(self._part, labels, SILHOUETTE_SAMPLE, self._rng)
            self._quality = LensQuality(ratio, sil, self._customers, self._restarted)
        return self._quality

    def _batch_run(self) -> tuple[np.ndarray, float]:
        if self._batch is None:
            batch, _, batch_sse = batch_kmeans(self._part, len(self._centers), self._rng, n_init=N_INIT)
            self._batch = (batch, batch_sse)
        return self._batch


def screen(xs: np.ndarray, centers: np.ndarray, rng: np.random.Generator) -> float:
    """A cheap, pessimistic SSE ratio: batch k-means from one start on a sample of :data:`SCREEN_SAMPLE` rows.

    Batch k-means fits a small sample more closely than a large one, so this ratio tends to exceed the one
    :class:`Assessment` measures: below :data:`SCREEN_RATIO`, the restart check is not needed. Its own
    ``rng``, so the assessment's draws stay the same.
    """
    part = xs if len(xs) <= SCREEN_SAMPLE else xs[rng.choice(len(xs), SCREEN_SAMPLE, replace=False)]
    _, _, batch_sse = batch_kmeans(part, len(centers), rng, n_init=1)
    return sse(part, centers) / batch_sse if batch_sse > 0.0 else 1.0


def sse_rose(per_customer: float, checked: float | None) -> bool:
    """Whether a refinement's SSE per customer rose by more than :data:`SSE_RISE` over the last check's.

    ``checked`` is the SSE per customer after the last restart check (None: no check yet, nothing rose).
    """
    return checked is not None and per_customer > checked * (1.0 + SSE_RISE)


def restart_pays(kept: float, restarted: float, moved: float) -> bool:
    """Whether restarted centers of SSE ``restarted`` replace refined ones of SSE ``kept`` (on every customer).

    ``moved`` is the share of the customers whose segment the restart changes (nearest center, ids by
    :func:`matched`). The restart must lower the SSE below ``RESTART_GAIN - RESTART_MOVE_COST * moved`` of
    ``kept``: a restart that moves many customers must gain more.

    >>> restart_pays(100.0, 95.0, 0.35), restart_pays(100.0, 98.0, 0.35), restart_pays(100.0, 98.0, 0.05)
    (True, False, True)
    """
    return restarted < kept * (RESTART_GAIN - RESTART_MOVE_COST * moved)


def assess(xs: np.ndarray, centers: np.ndarray, rng: np.random.Generator) -> tuple[LensQuality, np.ndarray]:
    """Quality of ``centers`` on (a sample of) the scaled rows ``xs``, and the batch k-means centers.

    Raises
    ------
    ValueError
        On an empty ``xs`` or ``centers``.
    """
    check = Assessment(xs, centers, rng)
    return check.quality(), check.batch()


def fewer_segments(xs: np.ndarray, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """For a lens whose model has no k (DenStream, DBSTREAM): batch k-means centers at a smaller k, or None.

    A density model's warm-up clusters become the lens's segments, and it finds more groups than the
    population holds: 8 engagement segments for bench/quality.py's 4 separated patterns (pairs of them
    0.85-1.0 apart in z-scores), 10 on btyd, where batch k-means at that k disagrees with itself (ARI 0.66
    across seeds) and a segment cuts one pattern in two (its rule matches 85%). On a sample of ``xs``, the
    silhouette of the segments is compared with batch k-means's at each k from half the segments (at
    least :data:`FEWER_FLOOR`) to one fewer; the best k (ties: the smaller) is returned when its
    silhouette exceeds the segments' by :data:`FEWER_GAIN`.
    """
    k = len(centers)
    part = _sample(xs, rng)
    if k <= FEWER_FLOOR or len(part) <= k:
        return None
    labels, _ = nearest(part, centers)
    own = silhouette(part, labels, SILHOUETTE_SAMPLE, rng)
    best: tuple[float, np.ndarray] | None = None
    for j in range(max(FEWER_FLOOR, -(-k // 2)), k):
        cs, lab, _ = batch_kmeans(part, j, rng, n_init=N_INIT)
        score = silhouette(part, lab, SILHOUETTE_SAMPLE, rng)
        if best is None or score > best[0]:
            best = (score, cs)
    if best is None or not best[0] > own + FEWER_GAIN:
        return None
    logger.debug("%d segments (silhouette %.3f) -> %d (%.3f)", k, own, len(best[1]), best[0])
    return best[1]


def more_segments(check: Assessment, rng: np.random.Generator) -> np.ndarray | None:
    """For a lens whose model has no k (DenStream, DBSTREAM): the seed of one more segment, or None.

    A density model's warm-up clusters become the lens's segments, and nothing adds one later
    (:func:`fewer_segments` only removes): on bench/quality.py's separated scenario DenStream's value lens
    ended its warm-up with 3 segments for 4 patterns, two of them in one. On the assessment's sample, batch
    k-means at one more segment must cut batch k-means's SSE at the segments' k below :data:`MORE_RATIO` of
    it, and its silhouette must exceed the segments' own by more than :data:`MORE_GAIN` (so that
    :func:`fewer_segments` does not merge it back); then the batch center farthest from every segment is
    returned. Never from one segment (a silhouette needs two).
    """
    part, centers = check.sample, check.centers
    k = len(centers)
    if len(part) <= k + 1:
        return None
    at_k = check.batch_sse()
    more, labels, at_more = batch_kmeans(part, k + 1, rng, n_init=N_INIT)
    if not at_more < MORE_RATIO * at_k:
        return None
    own = silhouette(part, nearest(part, centers)[0], SILHOUETTE_SAMPLE, rng)
    grown = silhouette(part, labels, SILHOUETTE_SAMPLE, rng)
    logger.debug("%d -> %d segments cut the SSE to %.3f of it, silhouette %.3f -> %.3f", k, k + 1,
                 at_more / at_k, own, grown)  # fmt: skip
    if not grown > own + MORE_GAIN:
        return None
    out: np.ndarray = more[_distances(more, centers).min(axis=1).argmax()].copy()
    return out


def merged_into(current: np.ndarray, fewer: np.ndarray) -> np.ndarray:
    """One row per ``current`` center: the ``fewer`` centers take over from the nearest ones (:func:`matched`),
    each remaining center gets the ``fewer`` center nearest to it (and so merges into that segment)."""
    d = _distances(current, fewer)
    out: np.ndarray = fewer[d.argmin(axis=1)].copy()
    for i, j in _pairs(d):
        out[i] = fewer[j]
    return out


def matched(current: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """``batch`` centers reordered to follow ``current``: closest pairs first (greedy), each used once.

    Row ``i`` of the result is the batch center that takes over from ``current[i]``.
    """
    out = np.array(current, dtype=np.float64, copy=True)
    for i, j in _pairs(_distances(current, batch)):
        out[i] = batch[j]
    return out


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances, ``(len(a), len(b))``."""
    out: np.ndarray = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return out


def _pairs(d: np.ndarray) -> list[tuple[int, int]]:
    """Greedy pairs ``(row, column)`` of a distance matrix, closest first, each row and column used once."""
    pairs: list[tuple[int, int]] = []
    used_r: set[int] = set()
    used_c: set[int] = set()
    for flat in np.argsort(d, axis=None, kind="stable").tolist():
        i, j = divmod(flat, d.shape[1])
        if i in used_r or j in used_c:
            continue
        pairs.append((i, j))
        used_r.add(i)
        used_c.add(j)
    return pairs
