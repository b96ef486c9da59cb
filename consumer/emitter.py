"""Queues a batch's outputs and dead letters in its checkpoint, with their metrics."""

from __future__ import annotations

import functools
import logging
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from consumer.changed_customers import ChangedCustomers
from consumer.checkpoint import Checkpoint
from consumer.dlq import dead_letter
from consumer.metrics import Metrics
from consumer.routing import OutputRouter
from consumer.sink import InRecord, OutRecord
from segmenter.change_blocks import Output, SegmentChanges, runs
from segmenter.outputs import CampaignTrigger, OutputMessage, SegmentChange

log = logging.getLogger(__name__)

LINES_FROM = 24
"""A change block of at least this many moves becomes its records from its lines; a smaller one from its
messages: per move, from the lines against from the messages (best of 5, CPU, the dense replay stream's
blocks cut to each size): 7.5 against 6.8 us at 16 moves, 5.8 against 6.0 at 24, 5.3 against 5.8 at 32."""


@dataclass
class Tally:
    """What queued outputs add to the metrics: outputs per kind, changes per (lens, cause), triggers per campaign,
    end-to-end lags in seconds."""

    kinds: dict[str, int] = field(default_factory=dict)
    changes: dict[tuple[str, str], int] = field(default_factory=dict)
    triggers: dict[str, int] = field(default_factory=dict)
    lags: array[float] = field(default_factory=lambda: array("d"))
    """One float per output with an event time, held until the commit: packed doubles, not float objects (a mass
    move's hundreds of thousands of them would fill the small-object arenas, see :mod:`consumer.changed_customers`)."""


class OutputFeed:
    """The core's sink for one call: each part of its outputs is encoded and queued at once, counted at the end.

    The counts wait for :meth:`count`, called once the call succeeded, and then for the batch's commit: a
    batch that fails is aborted and replayed, and what it queued is dropped with it, so nothing is counted twice.
    """

    def __init__(self, emitter: Emitter, checkpoint: Checkpoint, provisional: bool) -> None:
        self._emitter = emitter
        self._checkpoint = checkpoint
        self._provisional = provisional
        self._tally = Tally()

    def __call__(self, outputs: Sequence[Output]) -> None:
        """One part of the outputs, in order: encoded and queued in the batch (spilled when a chunk is full)."""
        self._emitter.encode(outputs, self._checkpoint, self._tally, provisional=self._provisional)

    def count(self) -> None:
        """The call succeeded: its outputs count in the metrics once the batch is committed (the tally is emptied)."""
        tally, self._tally = self._tally, Tally()
        self._checkpoint.on_commit.append(functools.partial(self._emitter.count, tally))


class _Lags:
    """Appends end-to-end lags to a tally's list: ``stamp`` (the emission time) minus each event time."""

    def __init__(self, lags: array[float], stamp: float) -> None:
        self._lags = lags
        self._stamp = stamp
        self._epochs: dict[str, float | None] = {}  # event_ts -> epoch seconds (the outputs of one event share it)

    def add(self, event_ts: str) -> None:
        """The lag of an output of the event at ``event_ts`` (none where it is not an ISO-8601 time)."""
        epochs = self._epochs
        epoch = epochs[event_ts] if event_ts in epochs else epochs.setdefault(event_ts, _epoch(event_ts))
        if epoch is not None:
            self._lags.append(self._stamp - epoch)


def _epoch(ts: str) -> float | None:
    """Epoch seconds of an ISO-8601 time with offset; ``None``: not one (no lag to measure)."""
    try:
        return datetime.fromisoformat(ts).timestamp()
    except ValueError:
        return None


def _count_messages(messages: Sequence[OutputMessage], emitted_at: str, changed: ChangedCustomers, tally: Tally,
                    lags: _Lags) -> None:  # fmt: skip
    """Count ``messages`` in ``tally`` and mark the customers of their segment changes in ``changed``."""
    kinds, changes, triggers = tally.kinds, tally.changes, tally.triggers
    for message in messages:
        kind = message.kind
        kinds[kind] = kinds.get(kind, 0) + 1
        if type(message) is SegmentChange:
            changed.add(message.customer_id, emitted_at)
            key = (message.lens, message.cause)
            changes[key] = changes.get(key, 0) + 1
        elif type(message) is CampaignTrigger:
            triggers[message.campaign] = triggers.get(message.campaign, 0) + 1
        event_ts = getattr(message, "event_ts", None)
        if isinstance(event_ts, str):
            lags.add(event_ts)


def _count_block(block: SegmentChanges, emitted_at: str, changed: ChangedCustomers, tally: Tally,
                 lags: _Lags) -> None:  # fmt: skip
    """Count ``block``'s messages as :func:`_count_messages` counts them, from its columns."""
    kinds, changes = tally.kinds, tally.changes
    kinds[block.kind] = kinds.get(block.kind, 0) + len(block)
    changed.add_many(block.ids, emitted_at)
    for key, n in block.lens_cause_counts().items():
        changes[key] = changes.get(key, 0) + n
    for event_ts in block.event_ts:
        lags.add(event_ts)


class Emitter:
    """Stamps output messages (``emitted_at`` from the edge's wall clock), routes and counts them.

    Parameters
    ----------
    router
        Topic, key and headers per kind (shared with the trainer role); built without counters, since the
        emitter counts outputs per kind itself, once their core call succeeded (:class:`OutputFeed`).
    dlq_topic
        Where dead letters go.
    metrics
        Changes, triggers, rejections and the end-to-end lag.
    clock
        Wall clock used for ``emitted_at`` only.
    """

    def __init__(self, router: OutputRouter, dlq_topic: str, metrics: Metrics, clock: Callable[[], datetime]) -> None:
        self._router = router
        self._dlq = dlq_topic
        self._metrics = metrics
        self._clock = clock

    def emit(self, outputs: Sequence[OutputMessage], checkpoint: Checkpoint) -> None:
        """Queue ``outputs`` in the open batch and count them (a feed of one part, counted at once)."""
        feed = self.feed(checkpoint)
        feed(outputs)
        feed.count()

    def feed(self, checkpoint: Checkpoint, *, provisional: bool = False) -> OutputFeed:
        """A sink for the core's outputs (``sink=`` of :meth:`Segmenter.process_batch`) queueing them in ``checkpoint``.

        ``provisional``: the parts belong to a core call that may still fail (see :meth:`Checkpoint.queue_many`).
        """
        return OutputFeed(self, checkpoint, provisional)

    def encode(self, outputs: Sequence[Output], checkpoint: Checkpoint, tally: Tally, *, provisional: bool) -> None:
        """Queue ``outputs`` in the open batch; a segment change also queues its customer's membership record.

        Each message is encoded with ``emitted_at`` set (:meth:`OutputRouter.records`, the bytes of the stamped
        copy, which is not made); a block of :data:`LINES_FROM` moves or more becomes its records from its lines
        (:meth:`OutputRouter.change_records`, the same bytes, without its messages). The counts per kind, change
        and trigger and the lags are added to ``tally``.
        """
        if not outputs:
            return
        now = self._clock()
        emitted_at = now.isoformat()
        lags = _Lags(tally.lags, now.timestamp())
        records: list[OutRecord] = []
        for run in runs(outputs):
            if isinstance(run, SegmentChanges) and len(run) >= LINES_FROM:
                records += self._router.change_records(run, emitted_at)
                _count_block(run, emitted_at, checkpoint.changed, tally, lags)
            else:
                messages = run.messages() if isinstance(run, SegmentChanges) else run  # a small block: its messages
                records += self._router.records(messages, emitted_at)
                _count_messages(messages, emitted_at, checkpoint.changed, tally, lags)
        checkpoint.queue_many(records, provisional=provisional)

    def count(self, tally: Tally) -> None:
        """Add ``tally`` to the output, change, trigger and lag metrics."""
        metrics = self._metrics
        for kind, n in tally.kinds.items():
            metrics.outputs.labels(kind).inc(n)
        for (lens, cause), n in tally.changes.items():
            metrics.changes.labels(lens, cause).inc(n)
        for campaign, n in tally.triggers.items():
            metrics.triggers.labels(campaign).inc(n)
        metrics.end_to_end_lag.observe_many(tally.lags, floor=0.0)

    def dead_letter(self, rec: InRecord, error: str, reason: str, checkpoint: Checkpoint) -> None:
        """Queue the dead letter of ``rec`` (original bytes, error code and reason) in the open batch."""
        checkpoint.queue(dead_letter(rec, self._dlq, error, reason))
        checkpoint.on_commit.append(self._metrics.rejected.labels(error).inc)
        log.debug("dead-lettered %s[%d]@%d: %s: %s", rec.topic, rec.partition, rec.offset, error, reason)
