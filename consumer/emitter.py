"""Queues a batch's outputs and dead letters in its checkpoint, with their metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from consumer.checkpoint import Checkpoint
from consumer.dlq import dead_letter
from consumer.metrics import Metrics
from consumer.routing import OutputRouter
from consumer.sink import InRecord
from segmenter.outputs import CampaignTrigger, OutputMessage, SegmentChange, stamp

log = logging.getLogger(__name__)


class Emitter:
    """Stamps output messages (``emitted_at`` from the edge's wall clock), routes and counts them.

    Parameters
    ----------
    router
        Topic, key and headers per kind (shared with the trainer role).
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
        """Queue ``outputs`` in the open batch; a segment change also queues its customer's membership record."""
        if not outputs:
            return
        now = self._clock()
        emitted_at = now.isoformat()
        metrics = self._metrics
        for message in outputs:
            stamped = stamp(message, emitted_at)
            checkpoint.queue(self._router.record(stamped))
            if isinstance(stamped, SegmentChange):
                checkpoint.changed[stamped.customer_id] = stamped.emitted_at or stamped.event_ts
                metrics.changes.labels(stamped.lens, stamped.cause).inc()
            elif isinstance(stamped, CampaignTrigger):
                metrics.triggers.labels(stamped.campaign).inc()
            event_ts = getattr(stamped, "event_ts", None)
            if isinstance(event_ts, str):
                try:
                    lag = (now - datetime.fromisoformat(event_ts)).total_seconds()
                except ValueError:
                    continue
                metrics.end_to_end_lag.observe(max(0.0, lag))

    def dead_letter(self, rec: InRecord, error: str, reason: str, checkpoint: Checkpoint) -> None:
        """Queue the dead letter of ``rec`` (original bytes, error code and reason) in the open batch."""
        checkpoint.queue(dead_letter(rec, self._dlq, error, reason))
        self._metrics.rejected.labels(error).inc()
        log.debug("dead-lettered %s[%d]@%d: %s: %s", rec.topic, rec.partition, rec.offset, error, reason)
