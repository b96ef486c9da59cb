"""The processing loop of ``segmenter-consumer``: poll, process, commit, as calls to its collaborators.

Each job has its own module, in the manner of quix-streams' ``Application``
and ``Checkpoint``:

* :mod:`consumer.checkpoint`: the batch policy (when a batch is due) and the
  commit steps, numbered in its docstring and beside the code;
* :mod:`consumer.runs`: run splitting (plain events to the core in runs,
  every other record on its own) and dead letters;
* :mod:`consumer.emitter` and :mod:`consumer.routing`: outputs stamped,
  counted and routed to their kind's topic (the router is shared with the
  trainer role);
* :mod:`consumer.ownership`: assignment, restore, release and the
  partitions' clocks (the rebalance callbacks below only note what changed);
* :mod:`consumer.poison`: which records the core failed on and which
  partitions replay one record at a time;
* :class:`consumer.core.ModelKeeper`: the model of the mode, decided once at
  wiring (:mod:`consumer.__main__`): :mod:`consumer.snapshots` (single) or
  :mod:`consumer.views` (shared: the model-view follower);
* :mod:`consumer.reconnect`: reconnect with backoff (shared with the
  trainer role); :mod:`consumer.rules_watcher`: the rules hot reload;
  :mod:`consumer.gauges`, :mod:`consumer.summary`: gauges and the summary line.

Failures
--------
On a failure before the commit completes nothing of the batch is visible. A
core failure on a run of records aborts the transaction, rewinds the owned
partitions to their committed offsets, rebuilds the core from the state and
model topics (identical to the state at the last commit) and replays the run's
partitions one record at a time. A core failure on one record does the same
and replays; after ``max_batch_retries`` failures on the same record the loop
processes records one by one up to it and dead-letters it with
``processing_failed`` (the reason names the last exception). A Kafka failure
(broker down, transaction refused) closes every client and starts a fresh
session after a backoff: the new producer's ``init_transactions`` aborts the
open transaction, the new consumer resumes from the committed offsets, state
is restored on assignment. A fenced producer (a newer instance with the same
id) stops the service.

Rebalances: on revocation the open batch is committed, then (in ``finally``)
the customers of the revoked partitions are dropped. Assigned partitions are
restored (:mod:`consumer.ownership`) before any of their records is processed.

Event time (the edge's part; the core's clock is described in docs/internals.md):
every event goes to the core with its input partition as its *source*;
lateness is judged per customer by the core, never against another
partition's clock; the watermark follows the slowest *active* owned source
(:mod:`consumer.ownership`). An event whose ``ts`` is more than
``max_future`` (default 1 hour) ahead of its Kafka record's timestamp is
dead-lettered with error ``future`` before the core sees it, so one device
dated years ahead cannot move anybody's time. Records without a timestamp are
not checked.

Shared mode (``--mode shared``, scale-out): many processes in one group. A
process never learns: it assigns with the newest model *view* the trainer
published (:mod:`consumer.views`) and sends its sampled feature vectors to
``<group>.vectors`` instead of a model snapshot. The trainer role
(:mod:`consumer.trainer`) runs in a thread of whichever process the
``<group>.trainer`` group gives the vectors partition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic

from consumer.checkpoint import BatchPolicy, Checkpoint, CommitSteps, WaitClock
from consumer.core import C, ModelKeeper
from consumer.cycles import CycleCollector
from consumer.emitter import Emitter
from consumer.errors import (
    AuthenticationError,
    CoreBatchError,
    FencedError,
    KafkaIOError,
    PoisonRecordError,
    TopicSetupError,
)
from consumer.explorer import Explorer
from consumer.gauges import Gauges
from consumer.metrics import Health, Metrics
from consumer.ownership import Ownership
from consumer.poison import PoisonIsolation
from consumer.reconnect import Backoff, run_reconnecting
from consumer.routing import OutputRouter
from consumer.rules_watcher import RulesWatcher
from consumer.runs import Run, RunProcessor
from consumer.settings import Settings
from consumer.sink import TP, InRecord, RebalanceHandler, Transport
from consumer.summary import Summary
from consumer.trainer import TrainerRole
from consumer.watchdog import CommitWatchdog
from segmenter.triggers.rules import RuleSet

log = logging.getLogger(__name__)

TransportFactory = Callable[[RebalanceHandler], Transport]


def utc_now() -> datetime:
    """The edge's wall clock (UTC)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Wiring(Generic[C]):
    """What a service is built from; single or shared mode is decided here, once (:mod:`consumer.__main__`)."""

    transport_factory: TransportFactory
    """Builds a connected transport that reports rebalances to the given handler."""
    core_factory: Callable[[RuleSet | None], C]
    """Builds a fresh core for the given rules (``None``: no rules)."""
    keeper: ModelKeeper[C]
    """The model of the mode (:class:`consumer.snapshots.SnapshotKeeper` or :class:`consumer.views.ViewFollower`)."""
    trainer: Callable[[], TrainerRole] | None = None
    """Builds the trainer role (shared mode), run in a thread of each session."""
    rules: RulesWatcher | None = None
    """The rules file's watcher (already loaded)."""
    clock: Callable[[], datetime] = utc_now
    """Wall clock used for ``emitted_at`` only."""


class Service(Generic[C]):
    """The consume → process → produce loop (see the module docstring and :mod:`consumer.checkpoint`).

    Parameters
    ----------
    settings
        The service settings.
    wiring
        Transport, core and model keeper of the mode, trainer, rules and clock.
    metrics, health
        Where to report.
    """

    def __init__(
        self, settings: Settings, wiring: Wiring[C], *, metrics: Metrics | None = None, health: Health | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.health = health or Health()
        self._transport_factory = wiring.transport_factory
        self._core_factory = wiring.core_factory
        self._keeper = keeper = wiring.keeper
        self._rules = wiring.rules
        self._trainer_factory = wiring.trainer
        self._trainer: TrainerRole | None = None
        self._stop = threading.Event()
        self._transport: Transport | None = None
        self._core: C | None = None
        self._checkpoint: Checkpoint | None = None
        self._policy = BatchPolicy.of(settings)
        self._waiting = WaitClock()
        self._watchdog = CommitWatchdog(5.0, settings.bootstrap_servers)
        self._steps = CommitSteps(settings, keeper, metrics, self._watchdog)
        self._ownership = Ownership(settings.topics.input, settings.state_topic, settings.model_topic, keeper, metrics)
        self._poison = PoisonIsolation(settings.max_batch_retries)
        self._emitter = Emitter(OutputRouter(settings.output_topic), settings.topics.dlq, metrics, wiring.clock)
        self._runs = RunProcessor(self._emitter, self._poison, settings.max_future, metrics)
        self.backoff = Backoff(0.5, settings.retry_backoff_max_s)
        """The wait before reconnecting after a Kafka failure (reset by every commit)."""
        self.explorer = Explorer()
        """The segment explorer's document, for the HTTP server's ``/segments`` and ``/``."""
        self._gauges = Gauges(metrics, self.explorer)
        self._summary = Summary(metrics)
        self._cycles = CycleCollector()

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the loop to finish the open batch, commit and return (signal-safe)."""
        self._stop.set()

    def run(self) -> None:
        """Run until :meth:`stop`; reconnects with backoff while Kafka is unavailable.

        Raises
        ------
        FencedError
            A newer instance with the same transactional id exists.
        TopicSetupError
            Topics are missing or mis-partitioned (from the transport factory).
        AuthenticationError
            The TLS handshake or the SASL login failed (wrong credentials or CA).
        """
        try:
            run_reconnecting(
                self._session,
                self._stop,
                self.backoff,
                self._on_retry,
                fatal=(FencedError, TopicSetupError, AuthenticationError),
            )
        finally:
            self._watchdog.close()

    def _on_retry(self, exc: KafkaIOError, wait_s: float) -> None:
        log.warning(
            "Kafka unavailable or transaction failed; reconnecting to %s in %.1fs: %s",
            self.settings.bootstrap_servers,
            wait_s,
            exc,
        )
        self.metrics.batch_failures.labels(type(exc).__name__).inc()
        self.health.tick(False, f"reconnecting: {exc}")

    # ------------------------------------------------------------------ session

    def _session(self) -> None:
        self._reset()
        self._core = self._new_core()
        transport = self._transport = self._transport_factory(self)
        log.info(
            "connected to %s as %s (%s, %s mode)",
            self.settings.bootstrap_servers,
            self.settings.transactional_id,
            self.settings.guarantee,
            self.settings.mode,
        )
        try:
            if self._trainer_factory is not None:
                self._trainer = self._trainer_factory()
                self._trainer.start_thread()
            while not self._stop.is_set():
                self._step(transport)
            self._commit()
            log.info("stopped after committing the last batch")
        except BaseException:
            self._discard_batch()
            raise
        finally:
            self._close(transport)

    def _step(self, transport: Transport) -> None:
        """One poll: restore what was assigned, process the records, commit when the batch is due."""
        self._cycles.collect_if_due()  # kafka-python's garbage of the polls before (consumer.cycles)
        self._steps.release_memory_if_due()
        self._check_rules()
        try:
            records = transport.poll(self._policy.poll_timeout(self._checkpoint), self._policy.room(self._checkpoint))
            self._waiting.polled(len(records))
            self._restore_pending()
            self.health.tick(True)
            core = self._require_core()
            self._keeper.follow(core, transport)
            self._ownership.wake(core, records)
            self._process_records(records)
            self._ownership.mark_idle(core, transport)
            if self._policy.due(self._checkpoint):
                self._commit()
            if not records:
                self._steps.release_memory_if_due(idle=True)
        except PoisonRecordError as exc:
            self._recover(exc)
        except CoreBatchError as exc:
            self._recover_run(exc)
        if self._trainer is not None and self._trainer.error is not None:
            raise self._trainer.error
        self._gauges.update(transport, self._ownership.positions, self._core)
        self.explorer.answer(self._core)
        self._summary.tick(self._core)

    def _reset(self) -> None:
        self._core = None
        self._keeper.reset()
        self._checkpoint = None
        self._waiting = WaitClock()
        self._ownership.clear()

    def _new_core(self) -> C:
        return self._core_factory(self._rules.rules if self._rules is not None else None)

    def _close(self, transport: Transport) -> None:
        try:
            if self._trainer is not None:
                self._trainer.stop_thread()
                self._trainer = None
        finally:
            try:
                transport.close()
            finally:
                self._transport = None

    def _check_rules(self) -> None:
        if self._rules is not None:
            result = self._rules.refresh(self._core, time.monotonic())
            if result != "unchanged":
                self.metrics.rules_reloads.labels(result).inc()

    # ------------------------------------------------------------------ processing

    def _process_records(self, records: Sequence[InRecord]) -> None:
        """Process a poll's records in order into the open batch (see :mod:`consumer.runs`), committing when due.

        A poll's records come in partition runs: each run is taken by :meth:`_batched` (its events join the
        core's run) or, for a partition :mod:`consumer.poison` isolates, one record at a time
        (:meth:`_one_by_one`).
        """
        core = self._require_core()
        run: Run = []
        owned = self._owned(records)
        self.metrics.events_in.inc(len(owned))  # before they are processed: in-process benches start clocks on it
        start, end = 0, len(owned)
        while start < end:
            rec = owned[start]
            if self._poison.one_by_one_until(rec.tp) is None:
                start = self._batched(core, owned, start, run)
            else:
                self._one_by_one(core, rec, run)
                start += 1
        self._runs.process_run(core, run, self._checkpoint)

    def _batched(self, core: C, records: Sequence[InRecord], start: int, run: Run) -> int:
        """Take the records from ``start`` on while they are of its partition and the batch is not due.

        Each record's event joins ``run`` (or, after the run so far, :meth:`RunProcessor.handle` takes it
        alone); once the batch is due, the run goes to the core and the batch is committed: a poll can hand
        over more records than fit in the batch's time, and the commit interval bounds how long a batch stays
        open, even in the middle of a poll's records. Returns the index of the first record not taken.
        """
        first = records[start]
        tp = first.tp
        topic, partition = tp
        checkpoint = self._checkpoint if self._checkpoint is not None else self._open(first)
        full, closes, clock = self._policy.closing(checkpoint)
        plain = self._runs.plain_event
        taken, end = checkpoint.count - start, len(records)
        i = start
        while i < end:
            rec = records[i]
            if rec.partition != partition or rec.topic != topic:
                break
            i += 1
            event = plain(rec, tp)
            if event is not None:
                run.append((rec, event))
            else:
                self._runs.process_run(core, run, checkpoint)
                self._runs.handle(core, rec, checkpoint)
            if taken + i >= full or clock() >= closes:
                checkpoint.store_offsets(tp, rec.offset, i - start)
                self._runs.process_run(core, run, checkpoint)
                self._commit()
                return i
        checkpoint.store_offsets(tp, records[i - 1].offset, i - start)
        return i

    def _one_by_one(self, core: C, rec: InRecord, run: Run) -> None:
        """A record of a partition isolated up to a poison record: after the run so far, alone in its commit."""
        tp = rec.tp
        checkpoint = self._checkpoint if self._checkpoint is not None else self._open(rec)
        until = self._poison.one_by_one_until(tp)
        self._runs.process_run(core, run, checkpoint)
        self._runs.handle(core, rec, checkpoint)
        checkpoint.store_offsets(tp, rec.offset, 1)
        self._commit()
        if self._poison.passed(tp, rec.offset):
            log.info("%s[%d]: past the isolated record at offset %d; batching again", tp.topic, tp.partition, until)

    def _owned(self, records: Sequence[InRecord]) -> Sequence[InRecord]:
        """The records of partitions this instance owns (a poll's records all are, but after a revocation)."""
        owns = self._ownership.owns
        if all(owns(TP(*tp)) for tp in {(rec.topic, rec.partition) for rec in records}):
            return records
        for rec in records:
            if not owns(rec.tp):
                log.debug("skipping %s[%d]@%d: partition not owned (revoked)", rec.topic, rec.partition, rec.offset)
        return [rec for rec in records if owns(rec.tp)]

    def _open(self, first: InRecord) -> Checkpoint:
        """Begin a batch at its first record; a newer model view is switched to inside it."""
        transport = self._require_transport()
        transport.begin()
        checkpoint = self._checkpoint = self._policy.open(
            lambda: self._ownership.behind(transport, first), transport.send_many, self._waiting.since()
        )
        feed = self._emitter.feed(checkpoint, provisional=True)  # a new view's moves, queued as they are made
        self._keeper.switch(self._require_core(), feed)
        checkpoint.settle()
        feed.count()
        return checkpoint

    def _commit(self) -> None:
        checkpoint = self._checkpoint
        if checkpoint is None:
            return
        core = self._require_core()
        self._waiting.committing()
        self._steps.commit(checkpoint, self._require_transport(), core)
        self._checkpoint = None
        self._ownership.committed(checkpoint.offsets)
        self._poison.committed(checkpoint.offsets)
        self.explorer.sample(core)
        self.backoff.reset()

    def _discard_batch(self) -> None:
        """Forget the open batch after a failure (its transaction is aborted or will be fenced)."""
        self._checkpoint = None
        if self._core is not None:
            self._keeper.discard(self._core)

    # ------------------------------------------------------------------ recovery

    def _recover(self, exc: PoisonRecordError) -> None:
        """The core failed on one record: abort, count it (isolate it at the limit), rebuild and replay."""
        failures = self._poison.failed(exc)
        self.metrics.batch_failures.labels("core").inc()
        log.error(
            "batch aborted: the core failed on %s[%d]@%d (failure %d of %d): %r",
            exc.topic,
            exc.partition,
            exc.offset,
            failures,
            self.settings.max_batch_retries,
            exc.cause,
            exc_info=exc.cause if failures == 1 else None,
        )
        self._require_transport().abort()
        self._discard_batch()
        if failures >= self.settings.max_batch_retries:
            log.error(
                "isolating %s[%d]@%d: processing one by one up to it, then dead-lettering it",
                exc.topic,
                exc.partition,
                exc.offset,
            )
        self._rebuild()

    def _recover_run(self, exc: CoreBatchError) -> None:
        """The core failed somewhere in a run: abort, rebuild, and replay those partitions one record at a time."""
        self._require_transport().abort()
        self.metrics.batch_failures.labels("core").inc()
        log.error(
            "batch aborted: the core failed on a run of records (%s); replaying them one by one: %r",
            ", ".join(f"{t}[{p}] up to {o}" for (t, p), o in sorted(exc.last_offsets.items())),
            exc.cause,
            exc_info=exc.cause,
        )
        self._discard_batch()
        self._poison.failed_run(exc)
        self._rebuild()

    def _rebuild(self) -> None:
        """Rewind owned partitions to their committed offsets and rebuild the core from the state topics."""
        transport = self._require_transport()
        owned = self._ownership.rewound()
        positions = transport.rewind(owned)
        core = self._core = self._new_core()
        self._keeper.reset()
        self._ownership.restore(transport, core, owned)
        log.info("rewound to %s and restored state", {f"{tp.topic}[{tp.partition}]": o for tp, o in positions.items()})

    def _restore_pending(self) -> None:
        new = self._ownership.assignment.take_pending()
        if new is None:
            return
        if self._checkpoint is not None:
            # our own open transaction would hold back the last stable offset of the state topic
            self._commit()
        if new:
            self._ownership.restore(self._require_transport(), self._require_core(), new)

    # ------------------------------------------------------------------ rebalance handler

    def on_revoked(self, partitions: set[TP]) -> None:
        """Commit the open batch, then release the revoked partitions' customers."""
        try:
            if self._checkpoint is not None:
                log.info("partitions %s revoked: committing the open batch", sorted(partitions))
                self._commit()
        finally:
            self._release(partitions)

    def on_lost(self, partitions: set[TP]) -> None:
        """The group evicted us: the open batch cannot be committed; abort it and release everything lost."""
        try:
            if self._checkpoint is not None and self._transport is not None:
                log.warning("partitions %s lost: aborting the open batch", sorted(partitions))
                self._discard_batch()
                self._transport.abort()
        finally:
            self._release(partitions)

    def on_assigned(self, partitions: set[TP]) -> None:
        """Remember the assignment; the loop restores it right after the poll returns."""
        self._ownership.assignment.assigned(partitions)

    def _release(self, partitions: set[TP]) -> None:
        self._ownership.release(self._core, partitions)
        self._poison.release(partitions)

    # ------------------------------------------------------------------ helpers

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("no transport: the service is not connected")
        return self._transport

    def _require_core(self) -> C:
        if self._core is None:
            raise RuntimeError("no core")
        return self._core
