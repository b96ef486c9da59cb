"""Segments between refinements from a model's online summary (STREAMKMeans, DenStream, DBSTREAM, CluStream).

A summarising model (:attr:`~segmenter.lenses.models.ClusterModel.summarises`)
reports weighted micro-clusters, never segments: the lens's segments are the
centers of the last population-wide refinement, and they stay there until the
next one. The summary keeps learning (the model's micro-clusters), but a
segment does not follow it between refinements: the summary weighs events (and
fades them), not customers, so following it dragged the segments away from the
population's optimum (nearest-center SSE 1.03-1.18 x batch k-means on
bench/quality.py, 1.00-1.01 when they stay; docs/internals.md, "Summarising
models"). Births, retirements and merges come from the population, at the
refinement (and at the first segments).

Only before the first refinement, when the summary is the lens's only view of
the population, the segments follow it: each one moves to its *position* in the
summary, the weighted mean of the micro-clusters within ``threshold`` of it,
found by weighted Lloyd steps seeded from its previous position
(:func:`~segmenter.lenses.lloyd.trimmed_lloyd`: a far micro-cluster drags
nothing), at most ``threshold`` per refresh; and a segment the summary has left
empty for ``retire_after`` refreshes moves to the heaviest group of
micro-clusters no segment holds (a retirement and a birth).

Examples
--------
>>> import numpy as np
>>> from segmenter.lenses.registry import Segment
>>> from segmenter.lenses.scaling import ScalerSnapshot
>>> snap = ScalerSnapshot(heavy=(False,), mean=(0.0,), std=(1.0,))
>>> segs = [Segment(0, [0.0], anchor=[0.0]), Segment(1, [5.0], anchor=[5.0])]
>>> follower = SummaryFollower(threshold=1.0, iterations=5)
>>> follower.follow(np.array([[0.7], [9.0]]), np.array([1.0, 1.0]), segs, snap)
>>> segs[1].anchor = None  # never refined
>>> follower.follow(np.array([[0.7], [5.5]]), np.array([1.0, 1.0]), segs, snap).ravel().round(6).tolist()
[0.0, 5.5]

Refined, both segments stay where the refinement left them (``None``: nothing to follow); once the
second is one no refinement placed, it goes to its micro-cluster and the first still stays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from segmenter.lenses.lloyd import trimmed_lloyd
from segmenter.lenses.registry import Segment
from segmenter.lenses.scaling import ScalerSnapshot

__all__ = ["SummaryFollower"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SummaryFollower:
    """Moves the segments with the summary until the first refinement places them.

    Parameters
    ----------
    threshold
        Radius (scaled units) within which a micro-cluster belongs to a segment, and the largest step per refresh.
    iterations
        Weighted Lloyd steps per placement.
    retire_after, min_share
        Before any refinement: refreshes a segment may hold no micro-cluster before it moves to an unheld
        group, and the least share of the summary's weight such a group must hold.
    """

    threshold: float
    iterations: int
    retire_after: int = 2
    min_share: float = 0.02

    def _positions(
        self, mcs: np.ndarray, w: np.ndarray, seeds: np.ndarray, snap: ScalerSnapshot
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions in the summary (transformed space) from scaled ``seeds``, whether each holds weight, and
        the mask of micro-clusters no segment holds."""
        pos, mass, outside = trimmed_lloyd(mcs, seeds, self.threshold, self.iterations, w)
        return snap.unscale_matrix(pos), mass > 0.0, outside

    def follow(
        self, mcs: np.ndarray, w: np.ndarray, segments: Sequence[Segment], snap: ScalerSnapshot
    ) -> np.ndarray | None:
        """The segments' new centers (scaled by ``snap``, one row per segment) from the micro-clusters ``mcs``.

        ``None`` when every segment was placed by a refinement (an
        :attr:`~segmenter.lenses.registry.Segment.anchor`): they stay there. Otherwise a
        segment no refinement placed goes to its position in the summary (and
        :attr:`~segmenter.lenses.registry.Segment.summary_pos` is updated), a refined
        one keeps its center, and so does one holding no micro-cluster.
        """
        if all(seg.anchor is not None for seg in segments):
            return None
        current = snap.scale_matrix(_centers(segments))
        if not len(mcs) or not len(segments):
            return current
        seeds = snap.scale_matrix(np.asarray([s.summary_pos or s.center for s in segments], np.float64))
        pos, held, outside = self._positions(mcs, w, seeds, snap)
        target = current.copy()
        for j, seg in enumerate(segments):
            seg.misses = 0 if held[j] or seg.anchor is not None else seg.misses + 1
            if held[j] and seg.anchor is None:  # never refined: the summary is all there is to go by
                seg.summary_pos = pos[j].tolist()
                target[j] = snap.scale(seg.summary_pos)
        # follow, do not leap: a summary that re-forms its micro-clusters moves a segment at most a threshold
        step = np.linalg.norm(target - current, axis=1)
        far = step > self.threshold
        target[far] = current[far] + (target[far] - current[far]) * (self.threshold / step[far])[:, None]
        self._reseat(mcs[outside], w[outside], segments, target, float(w.sum()))
        return target

    def _reseat(
        self, free: np.ndarray, w: np.ndarray, segments: Sequence[Segment], target: np.ndarray, total: float
    ) -> None:
        """Before any refinement: a segment empty ``retire_after`` refreshes in a row moves to the heaviest group
        of the ``free`` micro-clusters (no segment holds them) that weighs ``min_share`` of ``total``.

        A jump: the registry retires the segment and a new one is born there. A refined segment never
        moves so (its customers may be ones the summary does not see).
        """
        empty = [j for j, seg in enumerate(segments) if seg.anchor is None and seg.misses >= self.retire_after]
        if not empty or not len(free):
            return
        for j, center in zip(empty, _groups(free, w, self.threshold, self.min_share * total), strict=False):
            target[j] = center
            segments[j].summary_pos = None


def _groups(points: np.ndarray, weights: np.ndarray, radius: float, floor: float) -> list[np.ndarray]:
    """Greedy groups of micro-clusters: the heaviest left seeds a group of everything within ``radius``.

    Returns the weighted means of the groups that weigh at least ``floor`` (and more than 0), heaviest first.
    """
    out: list[tuple[float, np.ndarray]] = []
    left = np.ones(len(points), bool)
    for i in np.argsort(-weights, kind="stable").tolist():
        if not left[i]:
            continue
        member = left & (((points - points[i]) ** 2).sum(axis=1) <= radius * radius)
        left &= ~member
        mass = float(weights[member].sum())
        if mass >= floor and mass > 0.0:
            out.append((mass, weights[member] @ points[member] / mass))
    out.sort(key=lambda t: -t[0])
    return [c for _, c in out]


def _centers(segments: Sequence[Segment]) -> np.ndarray:
    """The segments' centers (transformed space) as a ``(k, d)`` matrix."""
    return np.asarray([s.center for s in segments], np.float64)
