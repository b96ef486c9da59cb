"""The work the watermark drives: marker expiry, held triggers, refinement ticks and the inactivity sweep.

Event time (:mod:`segmenter.clock`) decides lateness per customer; the
watermark (the slowest active source's clock minus the lateness) drives only
this work. When it moves, :meth:`TimedWork.on_watermark`

1. expires the erasure markers it passed (:mod:`segmenter.erasing`);
2. releases the campaign triggers held for quiet hours, at most once per
   :data:`RELEASE_EVERY_S` of event time;
3. at each multiple of ``inactivity.check_interval_hours`` it crosses, runs a
   refinement first when a multiple of ``refine.every_days`` is among them
   (:meth:`TimedWork.refine`: every ready lens against all current customers'
   features at the watermark), then re-scores, at the watermark, everyone not
   scored within the interval (cause ``inactivity``, one compiled pass,
   :class:`~segmenter.rescoring.Rescorer`).

A lifecycle event that leaves customers in a segment no longer live (merged,
split, retired) moves them at once (cause ``model``, :meth:`TimedWork.after_lifecycle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from segmenter.features import BASE_EPOCH

if TYPE_CHECKING:
    from segmenter.clock import EventClock
    from segmenter.counters import CoreCounters
    from segmenter.emission import MoveEmitter, Spool
    from segmenter.erasing import Eraser
    from segmenter.features import FeatureStore
    from segmenter.lenses.lens import Lens
    from segmenter.outputs import SegmentLifecycle
    from segmenter.rescoring import Rescorer
    from segmenter.triggers.engine import TriggerEngine

__all__ = ["RELEASE_EVERY_S", "TimedWork"]

logger = logging.getLogger(__name__)

RELEASE_EVERY_S = 60
"""Held (quiet-hours) triggers are released when the watermark moved at least this much."""
_DEAD_ACTIONS = frozenset({"merged", "retired", "split"})


class TimedWork:
    """The watermark's work (see the module).

    Parameters
    ----------
    clock, store, lenses, rescorer
        The event clock (watermark, next check, last release), the customers, the lenses and their re-scorer.
    features
        Per lens, the indices of its features among the store's.
    emitter
        Counts the released triggers.
    eraser
        Holds the erasure markers to expire.
    engine
        The current trigger engine (``None``: no rules).
    counters
        Counts refinement rounds.
    interval, refine_every_s
        ``inactivity.check_interval_hours`` and ``refine.every_days`` in seconds (``0``: no refinement ticks).
    """

    def __init__(self, clock: EventClock, store: FeatureStore, lenses: Sequence[Lens], rescorer: Rescorer,  # noqa: PLR0913 - the watermark's collaborators
                 features: Sequence[list[int]], *, emitter: MoveEmitter, eraser: Eraser,
                 engine: Callable[[], TriggerEngine | None], counters: CoreCounters, interval: int,
                 refine_every_s: int) -> None:  # fmt: skip
        self._clock = clock
        self._store = store
        self._lenses = lenses
        self._rescorer = rescorer
        self._features = features
        self._emitter = emitter
        self._eraser = eraser
        self._engine = engine
        self._counters = counters
        self._interval = interval
        self._refine_every_s = refine_every_s

    def on_watermark(self, out: Spool) -> None:
        """The watermark moved: do what it now calls for (steps 1 to 3 of the module), in that order."""
        clock = self._clock
        wm = clock.watermark
        assert wm is not None
        self._eraser.markers.expire(wm)  # 1.
        self._release(wm, out)  # 2.
        if clock.next_check is None:
            clock.next_check = (wm // self._interval + 1) * self._interval
            return
        if wm < clock.next_check:
            return
        n = (wm - clock.next_check) // self._interval + 1
        crossed = clock.next_check
        clock.next_check += n * self._interval
        every = self._refine_every_s
        # 3. a refinement tick in event time (refine.every_days): a multiple of it among the check times crossed
        if every and (clock.next_check - self._interval) // every >= -(-crossed // every):
            self.refine(out)  # before the sweep, which then scores against the refined segments
        # at the watermark itself (not the crossed boundary), everyone not scored within the interval
        self._rescorer.quiet(wm, out, before=wm - self._interval + 1)

    def rescore_all(self, out: Spool) -> None:
        """Re-score at the watermark everyone not yet scored at it (``replay --until``; unbounded work)."""
        wm = self._clock.watermark
        if wm is not None:
            self._rescorer.quiet(wm, out, before=wm)

    def refine(self, out: Spool) -> None:
        """Refine every ready lens against all current customers' features at the watermark (one vectorised pass)."""
        self._counters.refine_round += 1
        at = self._clock.watermark if self._clock.watermark is not None else -(2**31)
        ready = [li for li, lens in enumerate(self._lenses) if lens.ready]
        if not ready:
            return
        # isolated customers (far ahead of every source's clock) take no part
        rows, mats = self._store.vectors_by(at, [self._features[li] for li in ready], latest_by=self._clock.horizon())
        if not len(rows):
            return
        for li, mat in zip(ready, mats, strict=True):
            msgs = self._lenses[li].refine(mat)
            if msgs:
                out.extend(msgs)
                self.after_lifecycle(li, msgs, out, skip=None)
        logger.debug("refinement %d on %d customers", self._counters.refine_round, len(rows))

    def after_lifecycle(self, li: int, msgs: Iterable[SegmentLifecycle], out: Spool, skip: int | None) -> None:
        """Move the customers out of segments that lens ``li`` merged, split or retired (cause ``model``).

        ``skip``: a row the caller scores itself (the customer whose event caused the lifecycle).
        """
        lens = self._lenses[li]
        if not lens.ready or not any(msg.action in _DEAD_ACTIONS for msg in msgs):
            return
        # the segments that still hold customers but are no longer live (by number, from the store)
        dead = sorted(n for n in self._store.segment_counts(li) if not lens.is_live(n))
        self.move_out_of(li, dead, out, skip=skip)

    def move_out_of(self, li: int, dead: Sequence[int], out: Spool, *, skip: int | None) -> None:
        """Re-assign at once (cause ``model``) the customers of lens ``li``'s segments ``dead`` (numbers)."""
        if dead:
            self._rescorer.dead_segments(li, list(dead), out, skip=skip, stamp=self._clock.max_t or 0)

    def _release(self, wm: int, out: Spool) -> None:
        """Release the held triggers that are due, at most once per :data:`RELEASE_EVERY_S` of event time."""
        engine, rel = self._engine(), self._clock.released_at
        if engine is not None and (rel is None or wm - rel >= RELEASE_EVERY_S):
            self._clock.released_at = wm
            released = engine.release(float(wm + BASE_EPOCH))
            self._emitter.count_triggers(released)
            out.extend(released)
