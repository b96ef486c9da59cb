"""Run splitting: plain events go to the core in runs; every other record is handled on its own.

A *run* is consecutive valid events of a batch, processed in one
:meth:`Segmenter.process_batch` call (one compiled pass). A run ends at a
commit and before any record handled on its own (a tombstone, an undecodable,
future-dated or isolated record, a partition replayed one by one), so
outputs and dead letters keep the records' order. A failure anywhere in
handling a record counts: the core, and turning its result into output
records; an unexpected exception while decoding a record dead-letters it at
once (the decoder is pure), so no record stops its partition.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from consumer.checkpoint import Checkpoint
from consumer.core import Core
from consumer.dlq import FUTURE, PROCESSING_FAILED, TOMBSTONE_KEY, describe_exception
from consumer.emitter import Emitter
from consumer.errors import CoreBatchError, PoisonRecordError
from consumer.key_check import KeyCheck
from consumer.metrics import Metrics
from consumer.poison import PoisonIsolation
from consumer.sink import TP, InRecord
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, parse_event
from segmenter.triggers.controls import format_duration

log = logging.getLogger(__name__)

Run = list[tuple[InRecord, CustomerEvent]]


class RunProcessor:
    """Turns input records into queued outputs and dead letters of the open batch.

    Parameters
    ----------
    emitter
        Queues outputs and dead letters.
    poison
        Which records are isolated (dead-lettered instead of processed).
    max_future
        Seconds an event may be dated after its record's Kafka timestamp.
    metrics
        ``erasures`` and ``key_mismatches``.
    """

    def __init__(self, emitter: Emitter, poison: PoisonIsolation, max_future: float, metrics: Metrics) -> None:
        self._emitter = emitter
        self._poison = poison
        self._max_future = max_future
        self._metrics = metrics
        self._keys = KeyCheck(metrics.key_mismatches)

    def plain_event(self, rec: InRecord, tp: TP) -> CustomerEvent | None:
        """The event of ``rec`` (of partition ``tp``) when it joins a run; ``None``: :meth:`handle` takes it alone."""
        value = rec.value
        if value is None or self._poison.isolated(tp, rec.offset):
            return None
        try:
            event = parse_event(value)
        except Exception:  # an EventError, or a decoder bug: handle() dead-letters it
            return None
        if self._ahead(rec, event):
            return None
        if rec.key is None or rec.key != event.customer_id.encode():
            self._keys.check(rec, event.customer_id)
        return event

    def process_run(self, core: Core, run: Run, checkpoint: Checkpoint | None) -> None:
        """Run events through the core in one call; queue outputs and dead letters; empty ``run``.

        Raises
        ------
        PoisonRecordError
            The core raised on a run of one record.
        CoreBatchError
            The core raised on a longer run (the caller replays it one by one).
        """
        if not run:
            return
        assert checkpoint is not None, "a run's records belong to the open batch"
        try:  # the core, and turning its result into records: a failure anywhere here is the run's
            feed = self._emitter.feed(checkpoint, provisional=True)  # the outputs are queued as the core makes them
            result = core.process_batch([ev for _, ev in run], [rec.partition for rec, _ in run], sink=feed)
            checkpoint.settle()
            for i, error in result.errors:
                self._emitter.dead_letter(run[i][0], error.reason, error.detail, checkpoint)
            feed.count()
        except Exception as exc:
            if len(run) == 1:
                rec = run[0][0]
                raise PoisonRecordError(rec.topic, rec.partition, rec.offset, exc) from exc
            last: dict[tuple[str, int], int] = {}
            for rec, _ in run:
                last[(rec.topic, rec.partition)] = rec.offset
            raise CoreBatchError(last, exc) from exc
        run.clear()

    def handle(self, core: Core, rec: InRecord, checkpoint: Checkpoint) -> None:
        """One record on its own: isolated poison, tombstone, undecodable bytes, or a run of one.

        Every record ends as outputs or a dead letter: an unexpected exception
        while decoding dead-letters it with ``processing_failed`` at once (the
        decoder is pure: a retry would fail the same way); one in the core or
        in turning its result into records raises :class:`PoisonRecordError`,
        so the service retries it and in the end dead-letters it.
        """
        if self._poison.isolated(rec.tp, rec.offset):
            self._emitter.dead_letter(rec, PROCESSING_FAILED, self._poison.reason(rec.tp, rec.offset), checkpoint)
        elif rec.value is None:
            self._erase(core, rec, checkpoint)
        else:
            event = self._decoded(rec, checkpoint)
            if event is not None:
                self.process_run(core, [(rec, event)], checkpoint)

    def _decoded(self, rec: InRecord, checkpoint: Checkpoint) -> CustomerEvent | None:
        """The record's event, or ``None`` once it is dead-lettered (invalid, undecodable, dated ahead)."""
        assert rec.value is not None
        try:
            event = parse_event(rec.value)
        except EventError as exc:
            self._emitter.dead_letter(rec, exc.reason, exc.detail, checkpoint)
            return None
        except Exception as exc:
            log.error(
                "decoding %s[%d]@%d failed unexpectedly; dead-lettering it",
                rec.topic,
                rec.partition,
                rec.offset,
                exc_info=exc,
            )
            self._emitter.dead_letter(rec, PROCESSING_FAILED, f"decoding failed: {describe_exception(exc)}", checkpoint)
            return None
        if self._ahead(rec, event):
            self._emitter.dead_letter(rec, FUTURE, self._future_reason(rec, event), checkpoint)
            return None
        self._keys.check(rec, event.customer_id)
        return event

    def _erase(self, core: Core, rec: InRecord, checkpoint: Checkpoint) -> None:
        """A tombstone: forget the customer named by its key."""
        if not rec.key:
            self._emitter.dead_letter(
                rec, TOMBSTONE_KEY, "a tombstone (null value) needs the customer id as key", checkpoint
            )
            return
        customer_id = rec.key.decode("utf-8", errors="replace")
        try:
            self._emitter.emit(core.erase(customer_id), checkpoint)
        except Exception as exc:
            raise PoisonRecordError(rec.topic, rec.partition, rec.offset, exc) from exc
        self._metrics.erasures.inc()

    def _ahead(self, rec: InRecord, event: CustomerEvent) -> bool:
        """Whether ``event`` is dated more than ``max_future`` after its record's Kafka timestamp."""
        return rec.timestamp_ms > 0 and event.epoch - rec.timestamp_ms / 1000 > self._max_future

    def _future_reason(self, rec: InRecord, event: CustomerEvent) -> str:
        record_time = datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
        ahead = format_duration(event.epoch - rec.timestamp_ms / 1000)
        return (
            f"event time {event.ts.isoformat()} is {ahead} ahead of the record's Kafka timestamp {record_time}, "
            f"more than max_future ({format_duration(self._max_future)}): the producer's clock is "
            "wrong; fix it and re-send the event, or raise --max-future (SEGMENTER_MAX_FUTURE)"
        )
