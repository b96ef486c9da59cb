"""Shared mode's model keeping: follow the views the trainer publishes; write vectors and partition clocks.

A shared-mode process never learns. It assigns with the newest model *view*
the trainer published to the model topic (key ``view``): a fresh core loads
the best valid one at once; a running core is offered the views published
since the last look between polls and switches at the start of the next
batch, so the ``model`` moves it causes are part of that batch. At commit it
writes its partitions' clocks to the state topic and its sampled vectors to
``<group>.vectors`` instead of a model snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import orjson

from consumer.core import SharedCore
from consumer.sink import InRecord, OutRecord, Transport
from consumer.state import FORMAT_HEADER, VERSIONS_HEADER, VIEW_FORMAT, VIEW_KEY, BadRecords, clock_records, where
from segmenter.change_blocks import Output, size_of
from segmenter.errors import SegmenterError
from segmenter.pipeline import OutputSink

log = logging.getLogger(__name__)

Versions = dict[str, int]


class ViewFollower:
    """The :class:`consumer.core.ModelKeeper` of shared mode.

    Parameters
    ----------
    model_topic
        Where the trainer publishes views (partition 0).
    state_topic
        Where the partitions' clock records go.
    vectors_topic, instance_id
        Where the sampled vectors go, keyed by the instance id.
    """

    def __init__(self, model_topic: str, state_topic: str, vectors_topic: str, instance_id: str) -> None:
        self._model_topic = model_topic
        self._state_topic = state_topic
        self._vectors_topic = vectors_topic
        self._key = instance_id.encode()
        self._bad = BadRecords()
        self._next: tuple[Versions, bytes] | None = None
        """The best view read and not switched to yet."""

    def restore(self, core: SharedCore, models: Sequence[InRecord]) -> bytes | None:
        """Load the newest valid view into a fresh core at once; a running core switches at its next batch."""
        views = _views(models, self._bad)
        assigning = any(core.model_versions().values())
        if views and assigning:
            versions, rec = views[0]
            assert rec.value is not None
            self._offer(core, versions, rec.value)
            return rec.value
        for versions, rec in views:  # best first
            assert rec.value is not None
            try:
                core.load_shared_model(rec.value)  # nothing is assigned yet: no outputs
            except SegmenterError as exc:
                self._bad.report(rec, "model view", exc)
                continue
            log.info("assigning with model versions %s (view %s)", versions, where(rec))
            return rec.value
        if not assigning:
            log.info(
                "no valid model view on %s: assigning nothing until the trainer publishes one"
                if views
                else "no model view on %s yet: assigning nothing until the trainer publishes one",
                self._model_topic,
            )
        return None

    def follow(self, core: SharedCore, transport: Transport) -> None:
        """Offer the best view published since the last look (switched to at the next batch)."""
        views = _views(transport.follow(self._model_topic, 0), self._bad)
        if views:
            versions, rec = views[0]
            assert rec.value is not None
            self._offer(core, versions, rec.value)

    def switch(self, core: SharedCore, sink: OutputSink) -> None:
        """Switch to the newest view offered, inside the open batch; the moves it causes go to ``sink`` in parts."""
        pending, self._next = self._next, None
        if pending is None:
            return
        versions, view = pending
        if sum(versions.values()) <= sum(core.model_versions().values()):
            return
        moved = 0

        def counted(part: list[Output]) -> None:
            nonlocal moved
            moved += sum(map(size_of, part))
            sink(part)

        try:
            core.load_shared_model(view, sink=counted)
        except SegmenterError:  # a bad view is refused before anything moves
            log.exception("model view %s cannot be loaded; keeping %s", versions, core.model_versions())
            return
        log.info("assigning with model versions %s (%d customers moved)", versions, moved)

    def records(self, core: SharedCore) -> list[OutRecord]:
        """The clocks of partitions whose latest event time moved, then the batch's sampled vectors."""
        records = clock_records(core.take_dirty_clocks(), self._state_topic)
        vectors = core.take_vectors()
        if vectors is not None:
            records.append(OutRecord(self._vectors_topic, self._key, vectors, (), 0))
        return records

    def discard(self, core: SharedCore) -> None:
        """The aborted batch's vectors are dropped (its events are processed again)."""
        core.discard_vectors()

    def reset(self) -> None:
        """A fresh core restores the best view itself."""
        self._next = None

    def _offer(self, core: SharedCore, versions: Versions, view: bytes) -> None:
        current = self._next[0] if self._next is not None else core.model_versions()
        if sum(versions.values()) > sum(current.values()):
            self._next = (versions, view)


def _views(records: Sequence[InRecord], bad: BadRecords) -> list[tuple[Versions, InRecord]]:
    """The view records with their versions header, best first (highest versions, then newest)."""
    out: list[tuple[Versions, InRecord]] = []
    for rec in records:
        if rec.key != VIEW_KEY or rec.value is None or (FORMAT_HEADER, VIEW_FORMAT) not in rec.headers:
            continue
        raw = dict(rec.headers).get(VERSIONS_HEADER)
        try:
            parsed = orjson.loads(raw or b"{}")
            versions = {str(k): int(v) for k, v in parsed.items()}
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, OverflowError):
            bad.report(rec, "model view", "no readable versions header")
            continue
        out.append((versions, rec))
    out.sort(key=lambda vr: (sum(vr[0].values()), vr[1].offset), reverse=True)
    return out
