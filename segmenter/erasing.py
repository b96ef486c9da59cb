"""Erasure requests: forget a customer, say so once per lens, and keep its older events from bringing it back.

An ``erasure_request`` (or a Kafka tombstone) reaches :meth:`Eraser.erase`: the
customer's features, segments, trigger state, clock samples and sampled
vectors are dropped, a final ``segment_change`` (``to_segment`` null, cause
``erasure``) goes out for each lens where it had a segment, and a marker
(:class:`~segmenter.erasures.ErasureMarkers`: a hash of the id and the erasure
time, never the id) makes :meth:`Eraser.drop_erased` skip the customer's events
at or before that time. A marker expires when the watermark passes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from segmenter import kernel
from segmenter.clock import iso
from segmenter.erasures import ErasureMarkers, id_hash
from segmenter.errors import EventError
from segmenter.features import customer_hash
from segmenter.outputs import OutputMessage, SegmentChange

if TYPE_CHECKING:
    from segmenter.batching import EventColumns
    from segmenter.clock import EventClock
    from segmenter.counters import CoreCounters
    from segmenter.events import CustomerEvent
    from segmenter.features import FeatureStore
    from segmenter.lenses.lens import Lens
    from segmenter.triggers.engine import TriggerEngine
    from segmenter.vectors import VectorSample

__all__ = ["Eraser"]


class Eraser:
    """Erases customers and drops their older events (see the module).

    Parameters
    ----------
    store, lenses, clock, vectors
        What holds the customer: its row, its lens memberships, its clock samples, its sampled vectors.
    counters
        Counts erasures, the events dropped after one, and the erasure changes.
    engine
        The current trigger engine (``None``: no rules), whose per-customer state goes too.
    erased
        Erased customers since the changelog last took them (id -> input partition), an ordered set
        shared with :class:`~segmenter.customer_records.CustomerRecords`, which writes their tombstones.
    shared
        Shared mode: the trainer is told to forget the customer's vectors too.
    """

    def __init__(self, store: FeatureStore, lenses: Sequence[Lens], *, clock: EventClock, vectors: VectorSample,  # noqa: PLR0913 - what an erasure touches
                 counters: CoreCounters, engine: Callable[[], TriggerEngine | None], erased: dict[str, int],
                 shared: bool) -> None:  # fmt: skip
        self._store = store
        self._lenses = lenses
        self._clock = clock
        self._vectors = vectors
        self._counters = counters
        self._engine = engine
        self._erased = erased
        self._shared = shared
        self.markers = ErasureMarkers()
        """The erasure markers (part of the model state; replaced when it is loaded)."""

    def erase(self, customer_id: str, at: float | None) -> list[OutputMessage]:
        """Forget everything held about the customer; mark it erased at ``at`` (default: the latest time seen).

        The marker keeps its older events from bringing the profile back; it
        is set for an unknown customer too (its events may still be on their
        way). Returns the final ``segment_change`` of each lens where it had a segment.
        """
        store = self._store
        engine = self._engine()
        if engine is not None:
            engine.erase(customer_id)
        row = store.row_of(customer_id)
        t = self._erasure_time(at, row)
        self.markers.add(id_hash(customer_id), t)
        crc = customer_hash(customer_id)
        self._clock.forget(crc)
        self._vectors.forget(crc, tell_trainer=row is not None and self._shared)
        if row is None:
            return []
        ts = datetime.fromtimestamp(at, UTC).isoformat() if at is not None else iso(t)
        out: list[OutputMessage] = [self._last_change(customer_id, li, cur, ts) for li in range(len(self._lenses))
               if (cur := store.segment(row, li)) >= 0]  # fmt: skip
        self._erased[customer_id] = int(store.part[row])
        store.remove(customer_id)
        self._counters.erasures += 1
        return out

    def drop_erased(self, events: Sequence[CustomerEvent], cols: EventColumns, candidates: Iterable[int]) -> list[int]:
        """Skip the events (indices of ``candidates``) of erased customers at or before their erasure.

        They become ``K_SKIP`` in ``cols`` and are counted; returns their indices.
        """
        if not len(self.markers):  # the common case: no erasure within the lateness window
            return []
        todo = [i for i in candidates if cols.kinds[i] >= 0]
        if not todo:
            return []
        hit = self.markers.hits([id_hash(events[i].customer_id) for i in todo], cols.times[todo].tolist())
        dropped: list[int] = np.asarray(todo)[hit].tolist()
        for i in dropped:
            cols.kinds[i] = kernel.K_SKIP
        self._counters.after_erasure += len(dropped)
        return dropped

    def _last_change(self, customer_id: str, li: int, cur: int, ts: str) -> SegmentChange:
        """The customer leaves segment ``cur`` of lens ``li`` for none (cause ``erasure``); counted."""
        lens = self._lenses[li]
        change = SegmentChange(
            customer_id=customer_id,
            lens=lens.name,
            from_segment=lens.ref(cur),
            to_segment=None,
            cause="erasure",
            cause_event_id=None,
            event_ts=ts,
            model_version=lens.model_version,
            distance=None,
            features={},
            explanation=None,
        )
        lens.membership(cur, None)
        self._counters.changes["erasure"] += 1
        return change

    def _erasure_time(self, at: float | None, row: int | None) -> int:
        """The erasure's event time (relative seconds): ``at``, else the latest time seen (or the customer's)."""
        if at is not None:
            try:
                return self._store.to_seconds(at)
            except EventError:
                pass
        store, max_t = self._store, self._clock.max_t
        known = [t for t in (max_t, None if row is None else store.last_time(row)) if t is not None]
        return max(known, default=0)
