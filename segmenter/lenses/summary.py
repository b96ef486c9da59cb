"""Segments between refinements from a model's online summary (STREAMKMeans, DenStream, DBSTREAM, CluStream).

A summarising model (:attr:`~segmenter.lenses.models.ClusterModel.summarises`)
reports weighted micro-clusters, never segments: the lens's segments are the
centers of the last population-wide refinement, and between refinements they
follow the summary. Each live segment has a *position* in the summary: the
weighted mean of the micro-clusters within ``threshold`` of it, found by
weighted Lloyd steps seeded from its previous position
(:func:`~segmenter.lenses.lloyd.trimmed_lloyd`: a far micro-cluster drags
nothing). :meth:`SummaryFollower.place` records that position at a refinement (the
reference); :meth:`~SummaryFollower.follow` moves each segment from where the refinement left
it by as much as its position moved since, at most ``threshold`` per refresh.

The summary weighs events (and fades them), not customers: a group of
customers who rarely act may hold no micro-cluster at all while the
population still holds them. So the summary's drift is followed, its bias is
not, and a refined segment the summary does not reach stays where it is: it
is never moved, retired or re-born from the summary. Births, retirements and
merges come from the population, at the refinement (and at the first
segments). Only before any refinement, when the summary is the lens's only
view, a segment it has left empty for ``retire_after`` refreshes moves to the
heaviest group of micro-clusters no segment holds (a retirement and a birth).

Examples
--------
>>> import numpy as np
>>> from segmenter.lenses.registry import Segment
>>> from segmenter.lenses.scaling import ScalerSnapshot
>>> snap = ScalerSnapshot(heavy=(False,), mean=(0.0,), std=(1.0,))
>>> segs = [Segment(0, [0.0], anchor=[0.0]), Segment(1, [5.0], anchor=[5.0])]
>>> follower = SummaryFollower(threshold=1.0, iterations=5)
>>> follower.place(np.array([[0.2], [5.0]]), np.array([1.0, 1.0]), segs, snap)
>>> [s.summary_ref for s in segs]
[[0.2], [5.0]]
>>> follower.follow(np.array([[0.7], [9.0]]), np.array([1.0, 1.0]), segs, snap).ravel().round(6).tolist()
[0.5, 5.0]

The first segment moved as far as its micro-cluster (0.2 -> 0.7); no micro-cluster is
within the threshold of the second, which stays.
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
    """Places segments in a summary at a refinement and moves them with it between refinements.

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

    def place(self, mcs: np.ndarray, w: np.ndarray, segments: Sequence[Segment], snap: ScalerSnapshot) -> None:
        """After a refinement: each segment's position in the micro-clusters ``mcs`` (scaled by ``snap``).

        That position is its reference. A segment no micro-cluster is within ``threshold`` of gets none
        (it stays put until a position appears).
        """
        if not len(mcs) or not segments:
            return
        pos, held, _ = self._positions(mcs, w, snap.scale_matrix(_centers(segments)), snap)
        for j, seg in enumerate(segments):
            seg.summary_ref = seg.summary_pos = pos[j].tolist() if held[j] else None

    def follow(self, mcs: np.ndarray, w: np.ndarray, segments: Sequence[Segment], snap: ScalerSnapshot) -> np.ndarray:
        """The segments' new centers (scaled by ``snap``, one row per segment) from the micro-clusters ``mcs``.

        Updates each segment's :attr:`~segmenter.lenses.registry.Segment.summary_pos`.
        A segment no refinement placed yet (no
        :attr:`~segmenter.lenses.registry.Segment.anchor`) goes to its position: before
        the first refinement the summary is the only view of the population. A
        refined segment without a reference (it held no micro-cluster at the
        refinement) takes the first position it holds as its reference. A segment
        holding no micro-cluster keeps its center and its last position.
        """
        current = snap.scale_matrix(_centers(segments))
        if not len(mcs) or not len(segments):
            return current
        seeds = snap.scale_matrix(np.asarray([s.summary_pos or s.center for s in segments], np.float64))
        pos, held, outside = self._positions(mcs, w, seeds, snap)
        target = current.copy()
        for j, seg in enumerate(segments):
            seg.misses = 0 if held[j] or seg.anchor is not None else seg.misses + 1
            if not held[j]:
                continue
            seg.summary_pos = pos[j].tolist()
            if seg.anchor is None:  # never refined: the summary is all there is to go by
                target[j] = snap.scale(seg.summary_pos)
            elif seg.summary_ref is None:
                seg.summary_ref = seg.summary_pos
            else:
                target[j] = snap.scale((np.asarray(seg.anchor) + pos[j] - np.asarray(seg.summary_ref)).tolist())
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
