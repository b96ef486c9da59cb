"""The trainer role of shared (scale-out) mode.

In ``--mode shared`` every ``segmenter-consumer`` process assigns with the
newest model *view* it has read from the model topic and never learns itself;
it samples the feature vectors it scores and publishes them, inside its batch
transaction, to the one-partition ``<group>.vectors`` topic.

Every process also joins a second consumer group, ``<group>.trainer``,
subscribed to that topic. Kafka's group protocol gives its single partition to
exactly one member: that process is the *trainer*. No home-made election: when
the trainer dies, the group coordinator moves the partition to another member
after the session timeout; a zombie trainer cannot commit any more because its
transaction's offsets carry a stale group generation (KIP-447 fencing).

The trainer, on assignment, restores the newest trainer snapshot (key
``trainer`` of the model topic) and consumes vectors from the group's committed
offset. Every ``trainer_commit_interval_ms`` (and at once when a lifecycle
event happened) one transaction holds

1. the ``segment_lifecycle`` messages (output topic), emitted once per group;
2. the view (key ``view``), when a lens's model version moved;
3. the full trainer snapshot (key ``trainer``);
4. the vectors offsets (``send_offsets_to_transaction`` of the trainer group).

So the snapshot always matches the committed offset: a successor continues
exactly where the last committed snapshot stopped (same segment ids, versions
and registry; no id reuse, no burst of changes). Vectors read but not
committed by a dead trainer are simply read again by its successor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

import orjson

from consumer.errors import FencedError, KafkaIOError, TransactionError
from consumer.ownership import Assignment
from consumer.reconnect import Backoff, run_reconnecting
from consumer.routing import OutputRouter
from consumer.settings import Settings
from consumer.sink import TP, InRecord, OutRecord, RebalanceHandler, Transport
from consumer.state import (
    FORMAT_HEADER,
    TRAINER_FORMAT,
    TRAINER_KEY,
    VERSIONS_HEADER,
    VIEW_FORMAT,
    VIEW_KEY,
    BadRecords,
    newest_valid,
    where,
)
from segmenter.errors import StateError
from segmenter.outputs import OutputMessage, stamp

log = logging.getLogger(__name__)


class TrainerCore(Protocol):
    """The learning half of the core (:class:`segmenter.shared.ModelTrainer`)."""

    def apply(self, blob: bytes) -> Sequence[OutputMessage]:
        """Learn one vectors record; returns lifecycle messages."""

    def model_versions(self) -> dict[str, int]:
        """Model version of each lens."""

    def view(self) -> bytes:
        """What the processes assign with."""

    def state(self) -> bytes:
        """Everything a successor needs."""


TrainerFactory = Callable[[bytes | None], TrainerCore]
"""Builds a trainer from a :meth:`TrainerCore.state` snapshot (``None``: a fresh one); raises
:class:`~segmenter.errors.StateError` for a snapshot that does not validate."""


class TrainerRole:
    """Runs the trainer when this process owns the vectors partition (see the module docstring).

    Parameters
    ----------
    settings
        The service settings (already in shared mode).
    transport_factory
        Builds the trainer group's transport (consumer of the vectors topic in
        group ``<group>.trainer``, transactional producer ``<group>.trainer.<instance>``).
    trainer_factory
        Builds the trainer from the newest snapshot.
    clock
        Wall clock for ``emitted_at``.
    """

    def __init__(
        self,
        settings: Settings,
        transport_factory: Callable[[RebalanceHandler], Transport],
        trainer_factory: TrainerFactory,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self._transport_factory = transport_factory
        self._trainer_factory = trainer_factory
        self._clock = clock
        self._transport: Transport | None = None
        self._trainer: TrainerCore | None = None
        self._assignment = Assignment()
        self._router = OutputRouter(settings.output_topic)
        self._backoff = Backoff(0.5, settings.retry_backoff_max_s)
        self._offsets: dict[TP, int] = {}
        self._lifecycle: list[OutputMessage] = []
        self._published: dict[str, int] | None = None
        self._bad = BadRecords()
        self._last_commit = time.monotonic()
        self.snapshots = 0
        """Snapshots committed by this instance (for tests and logs)."""
        self.error: BaseException | None = None
        """Set when the background thread stopped for good (fenced, or an unexpected failure)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """True while this process is the trainer."""
        return self._trainer is not None

    def start(self) -> None:
        """Join the trainer group, synchronously (drive it with :meth:`step`)."""
        self._transport = self._transport_factory(self)

    def close(self) -> None:
        """Leave the trainer group (uncommitted vectors are read again by the next trainer)."""
        transport, self._transport = self._transport, None
        self._drop()
        if transport is not None:
            transport.close()

    def start_thread(self) -> None:
        """Run the role in a background thread (its own consumer and producer; nothing shared with the loop)."""
        self._thread = threading.Thread(target=self._run, name="trainer", daemon=True)
        self._thread.start()

    def stop_thread(self, timeout_s: float = 20.0) -> None:
        """Stop the background thread and leave the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("trainer: the thread did not stop within %.0fs", timeout_s)
            self._thread = None

    def _run(self) -> None:
        try:
            run_reconnecting(self._session, self._stop, self._backoff, self._on_retry, fatal=(FencedError,))
        except FencedError as exc:
            self.error = exc
            log.error("trainer: fenced: %s", exc)
        except Exception as exc:
            self.error = exc
            log.exception("trainer: failed")

    def _session(self) -> None:
        try:
            self.start()
            while not self._stop.is_set():
                self.step(0.2)
                self._backoff.reset()
        finally:
            self.close()

    def _on_retry(self, exc: KafkaIOError, wait_s: float) -> None:
        log.warning("trainer: Kafka unavailable; reconnecting in %.1fs: %s", wait_s, exc)

    # ------------------------------------------------------------------ loop

    def step(self, timeout_s: float = 0.0) -> None:
        """Poll vectors (waiting up to ``timeout_s``), learn them, and commit a snapshot when due.

        A transaction the broker refuses (for example a zombie trainer whose group
        generation is stale) is aborted and the role restored from Kafka.

        Raises
        ------
        FencedError
            Another instance with this transactional id exists.
        KafkaIOError
            Kafka is unavailable (the service reconnects).
        """
        transport = self._require()
        records = transport.poll(timeout_s, self.settings.batch_size)
        new = self._assignment.take_pending()
        if new is not None:
            self._activate(new)
        trainer = self._trainer
        if trainer is None:
            return
        for rec in records:
            if rec.tp not in self._assignment.owned:
                continue
            if rec.value is not None:
                try:
                    self._lifecycle.extend(trainer.apply(rec.value))
                except StateError as exc:
                    self._bad.report(rec, "trainer: vectors", exc)
            self._offsets[rec.tp] = rec.offset + 1
        due = time.monotonic() - self._last_commit >= self.settings.trainer_commit_interval_ms / 1000
        if self._offsets and (self._lifecycle or due):
            self._commit()

    def _activate(self, partitions: set[TP]) -> None:
        transport = self._require()
        self._assignment.owned |= partitions
        started = time.perf_counter()
        records = [rec for rec in transport.read_to_end(self.settings.model_topic, [0], stable=True)
                   if rec.key == TRAINER_KEY and rec.value is not None]  # fmt: skip
        restored: list[TrainerCore] = []

        def load(rec: InRecord) -> None:
            assert rec.value is not None
            restored.append(self._trainer_factory(rec.value))

        chosen = newest_valid(records, load, "trainer snapshot", self._bad)
        snapshot = None if chosen is None else chosen.value
        trainer = restored[0] if restored else self._trainer_factory(None)
        self._trainer = trainer
        self._published = trainer.model_versions() if snapshot is not None else None
        self._offsets.clear()
        self._lifecycle.clear()
        self._last_commit = 0.0  # announce the takeover with a snapshot as soon as vectors arrive
        log.info(
            "trainer: this instance is the trainer now (%s, model versions %s) after %.2fs",
            f"from snapshot {where(chosen)}" if chosen is not None else "no valid snapshot: fresh",
            trainer.model_versions(),
            time.perf_counter() - started,
        )

    def _commit(self) -> None:
        transport = self._require()
        trainer = self._trainer
        assert trainer is not None
        topic = self.settings.model_topic
        emitted_at = self._clock().isoformat()
        versions = trainer.model_versions()
        transport.begin()
        try:
            for message in self._lifecycle:
                transport.send(self._router.record(stamp(message, emitted_at)))
            if versions != self._published:
                transport.send(
                    OutRecord(
                        topic,
                        VIEW_KEY,
                        trainer.view(),
                        ((FORMAT_HEADER, VIEW_FORMAT), (VERSIONS_HEADER, orjson.dumps(versions))),
                        0,
                    )
                )
            transport.send(
                OutRecord(
                    topic,
                    TRAINER_KEY,
                    trainer.state(),
                    ((FORMAT_HEADER, TRAINER_FORMAT), ("instance", self.settings.instance_id.encode())),
                    0,
                )
            )
            transport.commit(dict(self._offsets))
        except TransactionError as exc:
            log.warning("trainer: commit failed (%s); dropping the uncommitted work and restoring", exc)
            try:
                transport.abort()
            except KafkaIOError:
                log.debug("trainer: abort failed too", exc_info=True)
            owned = set(self._assignment.owned)
            self._drop()
            transport.rewind(owned)
            self._assignment.assigned(owned)
            return
        if versions != self._published:
            log.info("trainer: published model versions %s", versions)
        self._published = versions
        self._offsets.clear()
        self._lifecycle.clear()
        self._last_commit = time.monotonic()
        self.snapshots += 1

    def _drop(self) -> None:
        if self._trainer is not None:
            log.info("trainer: no longer the trainer")
        self._trainer = None
        self._assignment.owned.clear()
        self._offsets.clear()
        self._lifecycle.clear()
        self._published = None

    def _require(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("the trainer role is not started")
        return self._transport

    # ------------------------------------------------------------------ rebalance handler

    def on_assigned(self, partitions: set[TP]) -> None:
        """The group made this process the trainer; restore on the next step."""
        self._assignment.assigned(partitions)

    def on_revoked(self, partitions: set[TP]) -> None:
        """Another member takes over; what was not committed is read again by it."""
        owned = partitions & self._assignment.owned
        self._assignment.revoked(partitions)
        if owned:
            self._drop()

    def on_lost(self, partitions: set[TP]) -> None:
        """Evicted from the trainer group."""
        self.on_revoked(partitions)
