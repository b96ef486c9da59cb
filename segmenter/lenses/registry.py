"""Stable segment identities over a model whose clusters move, renumber and re-cluster.

At every refresh the lens hands the registry the model's current centers. The
registry matches them to its live segments (greedy on the scaled distance,
closest pairs first, within ``match_threshold``) and derives the lifecycle:

``born``
    a model center matches no segment (``related``: the parent when it comes from a split);
    a center closer than ``match_threshold / 2`` to a center already kept is a
    fragment of that segment and creates nothing;
``split``
    a model center matches no segment but lies within the threshold of a
    segment already continued by another center: the segment became two
    (``related``: the new segment(s));
``merged``
    a segment matches no center but lies within the threshold of a center
    that continues another segment: the two collapsed onto one (``related``:
    the surviving segment); the merged segment stops being live;
``retired``
    a segment has matched nothing for ``retire_after`` refreshes in a row.

Segment numbers start at 1, only grow, and are never reused. Centers are kept
in transformed space (see :mod:`segmenter.lenses.scaling`), so they do not move
when the scaler learns.

Examples
--------
>>> import numpy as np
>>> from segmenter.lenses.scaling import ScalerSnapshot
>>> snap = ScalerSnapshot(heavy=(False, False), mean=(0.0, 0.0), std=(1.0, 1.0))
>>> reg = SegmentRegistry(match_threshold=1.0, retire_after=1, max_segments=10)
>>> [e.action for e in reg.update(np.array([[0.0, 0.0], [5.0, 5.0]]), snap).events]
['born', 'born']
>>> reg.update(np.array([[5.1, 5.0], [0.1, 0.0]]), snap).mapping   # renumbered model clusters
{0: 2, 1: 1}
>>> [(e.action, e.segment, e.related) for e in reg.update(np.array([[5.0, 5.0]]), snap).events]
[('retired', 1, [])]
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from segmenter.errors import StateError
from segmenter.lenses.scaling import ScalerSnapshot

__all__ = ["LifecycleEvent", "MatchResult", "Segment", "SegmentRegistry"]

logger = logging.getLogger(__name__)

Status = Literal["live", "merged", "retired"]

CONTINUITY_FACTOR = 3.0
"""How far (in match thresholds) a center with a stable index may move between refreshes
and still continue its segment."""
Action = Literal["born", "merged", "split", "retired", "renamed"]


@dataclass
class Segment:
    """One segment: stable number, center in transformed space, status and bookkeeping."""

    number: int
    center: list[float]
    status: Status = "live"
    name: str = ""
    size: int = 0
    misses: int = 0
    merged_into: int | None = None
    born_version: int = 0
    anchor: list[float] | None = None
    """Center (transformed space) at the last refinement: a refinement judges a jump from here, so a segment
    dragged step by step between refinements (a summary's micro-cluster migrating) is still a new segment."""
    summary_pos: list[float] | None = None
    """Summarising models, before the first refinement: the segment's latest position in the micro-clusters
    (transformed space)."""


@dataclass(frozen=True)
class LifecycleEvent:
    """A lifecycle fact about segment ``segment``; ``related`` are segment numbers."""

    action: Action
    segment: int
    related: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :meth:`SegmentRegistry.update`.

    Attributes
    ----------
    events
        Lifecycle events, in a deterministic order.
    mapping
        Index of the given centers -> segment number they continue or created
        (centers dropped for lack of room are absent).
    """

    events: list[LifecycleEvent]
    mapping: dict[int, int]


class _Match:
    """The pairing of live segments (rows of ``dist``) with new centers (columns) in :meth:`SegmentRegistry.update`."""

    def __init__(self, live: list[int], dist: np.ndarray, m: int) -> None:
        self.live = live
        self.dist = dist
        self.m = m
        self.old: dict[int, int] = {}
        """Index into ``live`` -> index of its center."""
        self.new: dict[int, int] = {}
        """Index of a center -> index into ``live``."""

    def _pair(self, i: int, j: int) -> None:
        self.old[i] = j
        self.new[j] = i

    def continuing(self, continuity: dict[int, int], within: float) -> None:
        """First, each center that continued a segment at the last refresh, while it stayed ``within`` of it."""
        position = {number: i for i, number in enumerate(self.live)}
        for j, number in sorted(continuity.items()):
            i = position.get(number, -1)
            if i >= 0 and j < self.m and self.dist[i, j] <= within and j not in self.new:
                self._pair(i, j)

    def nearest_first(self, threshold: float) -> None:
        """Then the remaining pairs, nearest first, up to ``threshold``."""
        for flat in np.argsort(self.dist, axis=None, kind="stable").tolist():
            i, j = divmod(flat, self.m)
            if self.dist[i, j] > threshold:
                break
            if i not in self.old and j not in self.new:
                self._pair(i, j)

    def parent(self, j: int, threshold: float) -> int | None:
        """The continuing segment an unmatched center ``j`` split from (nearest, within ``threshold``), if any."""
        if not len(self.live):
            return None
        i = int(np.argmin(self.dist[:, j]))
        return self.live[i] if self.dist[i, j] <= threshold and i in self.old else None


class SegmentRegistry:
    """Stable segment numbers and their lifecycle.

    Parameters
    ----------
    match_threshold
        Largest scaled distance for a center to continue a segment.
    retire_after
        Consecutive unmatched refreshes before a segment retires.
    max_segments
        Bound on live segments; extra new centers are ignored.
    """

    def __init__(self, match_threshold: float, retire_after: int, max_segments: int) -> None:
        self.match_threshold = match_threshold
        self.retire_after = retire_after
        self.max_segments = max_segments
        self.segments: dict[int, Segment] = {}
        self.next_number = 1
        self.version = 0

    # --- queries ---------------------------------------------------------------------------

    def live(self) -> list[int]:
        """Live segment numbers, ascending."""
        return [n for n, s in self.segments.items() if s.status == "live"]

    def is_live(self, number: int) -> bool:
        """True for a live segment."""
        seg = self.segments.get(number)
        return seg is not None and seg.status == "live"

    def scaled_centers(self, numbers: list[int], snapshot: ScalerSnapshot) -> np.ndarray:
        """Centers of ``numbers`` in the scaled space of ``snapshot``, shape ``(len(numbers), d)``."""
        d = len(snapshot.mean)
        if not numbers:
            return np.zeros((0, d))
        t = np.asarray([self.segments[n].center for n in numbers], dtype=np.float64)
        return snapshot.scale_matrix(t)

    # --- updates ---------------------------------------------------------------------------

    def _new(self, center: list[float]) -> int:
        number = self.next_number
        self.next_number += 1
        self.segments[number] = Segment(number=number, center=center, born_version=self.version)
        return number

    def update(
        self,
        scaled: np.ndarray,
        snapshot: ScalerSnapshot,
        continuity: dict[int, int] | None = None,
        stay_room: int | None = None,
    ) -> MatchResult:
        """Match new centers (scaled space of ``snapshot``) to the live segments and apply the lifecycle.

        Parameters
        ----------
        scaled
            ``(m, d)`` model centers, most important first (births are numbered in this order).
        snapshot
            The scaler snapshot that defines the scaled space.
        continuity
            Center index -> segment number that the same model center continued
            at the last refresh (models with stable indices). Such a pair is
            matched first while the center stayed within
            ``CONTINUITY_FACTOR * match_threshold`` of its segment: an online
            center that drifts slowly keeps its identity, instead of flickering
            between "retired" and "born" each time it crosses the threshold.
        stay_room
            Segments placed by a refinement (k-means lenses between refinements): a
            matched segment moves to its center, an unmatched one neither merges nor
            counts a miss (only a refinement retires it), and at most ``stay_room``
            unmatched centers are born; None: the full lifecycle above.
        """
        self.version += 1
        live = self.live()
        old = self.scaled_centers(live, snapshot)
        m = len(scaled)
        dist = (
            np.sqrt(((old[:, None, :] - scaled[None, :, :]) ** 2).sum(axis=2)) if len(live) and m else np.zeros((0, 0))
        )
        match = _Match(live, dist, m)
        if continuity and dist.size:
            match.continuing(continuity, CONTINUITY_FACTOR * self.match_threshold)
        if dist.size:
            match.nearest_first(self.match_threshold)
        transformed = snapshot.unscale_matrix(scaled).tolist() if m else []
        mapping: dict[int, int] = {}
        for i, j in sorted(match.old.items()):
            seg = self.segments[live[i]]
            seg.center = transformed[j]
            seg.misses = 0
            mapping[j] = seg.number
        events = self._unmatched_segments(match) if stay_room is None else []
        room = self.max_segments - len(self.live())
        room = room if stay_room is None else min(room, stay_room)
        events.extend(self._unmatched_centers(match, scaled, transformed, mapping, room))
        return MatchResult(events=events, mapping=dict(sorted(mapping.items())))

    def _unmatched_segments(self, match: _Match) -> list[LifecycleEvent]:
        """Segments without a center: merged into a continuing neighbour, or missing (then retired)."""
        events: list[LifecycleEvent] = []
        live, dist, thr = match.live, match.dist, self.match_threshold
        for i, number in enumerate(live):
            if i in match.old:
                continue
            seg = self.segments[number]
            j = int(np.argmin(dist[i])) if match.m else -1
            if j >= 0 and dist[i, j] <= thr and j in match.new:
                survivor = live[match.new[j]]
                seg.status = "merged"
                seg.merged_into = survivor
                events.append(LifecycleEvent("merged", number, [survivor]))
                continue
            seg.misses += 1
            if seg.misses >= self.retire_after:
                seg.status = "retired"
                events.append(LifecycleEvent("retired", number, []))
        return events

    def _unmatched_centers(
        self, match: _Match, scaled: np.ndarray, transformed: list[list[float]], mapping: dict[int, int], room: int
    ) -> list[LifecycleEvent]:
        """Centers without a segment: a split of a continuing segment, or a birth (numbered into ``mapping``),
        at most ``room`` of them."""
        events: list[LifecycleEvent] = []
        thr = self.match_threshold
        children: dict[int, list[int]] = {}
        kept = sorted(match.new)
        for j in range(match.m):
            if j in match.new:
                continue
            if kept and min(float(np.linalg.norm(scaled[j] - scaled[q])) for q in kept) < thr / 2.0:
                # a fragment of a segment that continues (density models split clusters in pieces)
                continue
            if room <= 0:
                logger.debug("registry full (%d live segments): center %d ignored", self.max_segments, j)
                continue
            parent = match.parent(j, thr)
            number = self._new(transformed[j])
            kept.append(j)
            mapping[j] = number
            room -= 1
            if parent is not None:
                children.setdefault(parent, []).append(number)
            events.append(LifecycleEvent("born", number, [] if parent is None else [parent]))
        for parent, kids in sorted(children.items()):
            events.append(LifecycleEvent("split", parent, kids))
        return events

    def set_centers(
        self,
        numbers: list[int],
        scaled: np.ndarray,
        snapshot: ScalerSnapshot,
        merge_within: float,
        anchored: bool = False,
    ) -> tuple[list[LifecycleEvent], dict[int, int]]:
        """Move known segments to refined centers (no matching); merge segments that collapsed.

        Two live segments whose new centers are closer than ``merge_within``
        merge: the lower number survives, the other is ``merged`` into it. A
        center that jumped farther than ``CONTINUITY_FACTOR * match_threshold``
        is not the same segment any more (a population vanished and another
        appeared): the old segment retires and a new one is born there. With
        ``anchored`` (a refinement) the jump is measured from each segment's
        :attr:`Segment.anchor` (where the last refinement left it), and the new
        centers become the anchors.

        Returns
        -------
        events, replaced
            Lifecycle events, and old segment number -> the number born in its place.
        """
        self.version += 1
        transformed = snapshot.unscale_matrix(scaled).tolist() if len(scaled) else []
        before = self.scaled_centers(numbers, snapshot)
        if anchored:
            for a, number in enumerate(numbers):
                anchor = self.segments[number].anchor
                if anchor is not None:
                    before[a] = snapshot.scale(anchor)
        events: list[LifecycleEvent] = []
        replaced: dict[int, int] = {}
        current = list(numbers)
        for a, (number, center) in enumerate(zip(numbers, transformed, strict=True)):
            if float(np.linalg.norm(scaled[a] - before[a])) > CONTINUITY_FACTOR * self.match_threshold:
                self.segments[number].status = "retired"
                events.append(LifecycleEvent("retired", number, []))
                fresh = self._new(center)
                events.append(LifecycleEvent("born", fresh, []))
                replaced[number] = current[a] = fresh
            else:
                self.segments[number].center = center
            if anchored:
                self.segments[current[a]].anchor = list(center)
        events.extend(self._merge_collapsed(current, scaled, merge_within))
        return events, replaced

    def born(self, scaled: np.ndarray, snapshot: ScalerSnapshot, anchored: bool = False) -> list[LifecycleEvent]:
        """New segments at the centers ``scaled`` (rows in the space of ``snapshot``), numbered in order.

        With ``anchored`` (a refinement of a summarising model) each center is also the new segment's
        :attr:`Segment.anchor`. Nothing beyond ``max_segments`` live segments is born.
        """
        events: list[LifecycleEvent] = []
        for center in snapshot.unscale_matrix(scaled).tolist() if len(scaled) else []:
            if len(self.live()) >= self.max_segments:
                logger.debug("registry full (%d live segments): a new center ignored", self.max_segments)
                break
            number = self._new(center)
            if anchored:
                self.segments[number].anchor = list(center)
            events.append(LifecycleEvent("born", number, []))
        return events

    def _merge_collapsed(self, current: list[int], scaled: np.ndarray, merge_within: float) -> list[LifecycleEvent]:
        """Merge each segment into the first earlier one whose center is within ``merge_within`` (scaled space)."""
        events: list[LifecycleEvent] = []
        gone: set[int] = set()
        for a in range(len(current)):
            if current[a] in gone:
                continue
            for b in range(a + 1, len(current)):
                if current[b] not in gone and float(np.linalg.norm(scaled[a] - scaled[b])) < merge_within:
                    seg = self.segments[current[b]]
                    seg.status = "merged"
                    seg.merged_into = current[a]
                    gone.add(current[b])
                    events.append(LifecycleEvent("merged", current[b], [current[a]]))
        return events

    def membership(self, old: int | None, new: int | None) -> None:
        """A customer left ``old`` and entered ``new`` (either may be None)."""
        if old == new:
            return
        if old is not None and old in self.segments:
            seg = self.segments[old]
            seg.size = max(0, seg.size - 1)
        if new is not None and new in self.segments:
            self.segments[new].size += 1

    # --- state -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Plain state (:mod:`segmenter.codec`)."""
        return {
            "next_number": self.next_number,
            "version": self.version,
            "segments": [
                {
                    "number": s.number,
                    "center": list(s.center),
                    "status": s.status,
                    "name": s.name,
                    "size": s.size,
                    "misses": s.misses,
                    "merged_into": s.merged_into,
                    "born_version": s.born_version,
                    **_set_vectors(s),
                }
                for s in self.segments.values()
            ],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` output."""
        try:
            segments = {int(s["number"]): Segment(**{**_known(s), **_vectors(s)}) for s in state["segments"]}
            next_number = int(state["next_number"])
            version = int(state["version"])
            statuses = get_args(Status)
            for n, seg in segments.items():
                if seg.number != n or seg.status not in statuses or not all(math.isfinite(v) for v in seg.center):
                    raise ValueError(f"segment {n}: bad number, status {seg.status!r} or non-finite center")
                if not isinstance(seg.name, str) or min(seg.size, seg.misses, seg.born_version) < 0:
                    raise ValueError(f"segment {n}: bad name or negative counters")
            if segments and next_number <= max(segments):
                raise ValueError(f"next_number {next_number} is not above the segment numbers")
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"segment registry state is invalid: {exc}") from None
        self.segments, self.next_number, self.version = segments, next_number, version


_OPTIONAL_VECTORS = ("anchor", "summary_pos")
"""Segment fields that hold a vector or None (absent from states written before they were saved)."""
_DROPPED = ("summary_ref",)
"""Keys of older states that no field holds any more (segments followed the summary between refinements)."""


def _known(record: dict[str, Any]) -> dict[str, Any]:
    """A segment record without the keys of :data:`_DROPPED`."""
    return {k: v for k, v in record.items() if k not in _DROPPED}


def _set_vectors(segment: Segment) -> dict[str, list[float]]:
    """The segment's optional vectors that are set (a k-means lens has none: its state stays as it was)."""
    out = {}
    for key in _OPTIONAL_VECTORS:
        vector = getattr(segment, key)
        if vector is not None:
            out[key] = list(vector)
    return out


def _vectors(record: dict[str, Any]) -> dict[str, list[float] | None]:
    """A segment record's vectors as float lists (ValueError unless finite); optional ones None when absent."""
    out: dict[str, list[float] | None] = {"center": [float(v) for v in record["center"]]}
    for key in _OPTIONAL_VECTORS:
        value = record.get(key)
        vector = None if value is None else [float(v) for v in value]
        if vector is not None and not all(math.isfinite(v) for v in vector):
            raise ValueError(f"segment {record.get('number')!r}: non-finite {key}")
        out[key] = vector
    return out
