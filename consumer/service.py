"""The processing loop of ``segmenter-consumer``.

Batch and commit order
----------------------
A *batch* is what one commit makes visible: up to ``batch_size`` input records
(from one or more polls; it closes ``commit_interval_ms`` after its first
record even in the middle of a poll's records, so the interval bounds the wait
of every record. Behind a backlog of at least ``batch_size`` records the bound
is ``catch_up_interval_ms`` instead, so batches fill up to ``batch_size``).
Under **exactly-once** (the default) a batch is one Kafka transaction:

1. ``begin_transaction`` at the batch's first record.
2. For each input record, in offset order: decode and validate; run the core
   (consecutive valid events in one :meth:`Segmenter.process_batch` call, a
   *run*; tombstones, undecodable and isolated records are handled alone,
   between runs); queue the outputs (keyed by customer id, header ``kind``,
   ``emitted_at`` stamped here) or the dead letter in the batch.
3. At commit time, *inside the transaction*: send the batch's queued outputs
   and dead letters in order (one tight run of sends costs kafka-python about
   half as much as sends spread between core calls); then the membership-table
   records of every customer whose segments changed (:mod:`segmenter.membership`,
   built from the core's columns, keyed by customer id, key-hash partitioned); then the
   state-changelog records of every customer the core changed (``take_changes``), each to
   the partition number of its input record (which the core keeps per customer); then the
   model parts that changed (:class:`consumer.state.ModelTracker`: the small ``core`` part
   with the clock and counters, and each lens that observed events).
4. ``send_offsets_to_transaction(next offsets, consumer.group_metadata())``.
5. ``commit_transaction``: outputs, dead letters, state, model and input
   offsets become visible to ``read_committed`` readers atomically.

On a failure before 5 completes nothing of the batch is visible. A core
failure on a run of records aborts the transaction, rewinds the owned
partitions to their committed offsets, rebuilds the core from the state and
model topics (identical to the state at the last commit) and replays the run's
partitions one record at a time. A core failure on one record does the same
and replays; after
``max_batch_retries`` failures on the same record the loop processes records
one by one up to it and dead-letters it with ``processing_failed`` (the reason
names the last exception). A failure anywhere in handling one record counts:
the core, and turning its result into output records; an unexpected exception
while decoding a record dead-letters it at once (the decoder is pure), so no
record stops its partition. A Kafka
failure (broker down, transaction refused) closes every client and starts a
fresh session after a backoff: the new producer's ``init_transactions``
aborts the open transaction, the new consumer resumes from the committed
offsets, state is restored on assignment. A fenced producer (a newer instance
with the same id) stops the service.

Under **at-least-once** steps 1 and 5 are replaced by: flush the producer,
check every output was acknowledged, then commit the offsets; a crash replays
the batch (the core ignores repeated event ids whose state was already saved).

Rebalances: on revocation the open batch is committed, then (in ``finally``)
the customers of the revoked partitions are dropped. Assigned partitions are
restored (model topic's newest snapshot, state partitions read to their end
with ``read_committed``, waiting until no transaction of a killed previous
owner is left open on them) before any of their records is processed.

Event time (the edge's part; the core's clock is described in docs/internals.md):

* Every event goes to the core with its input partition as its *source*.
  Lateness is judged per customer by the core, never against another
  partition's clock; the watermark (time-driven work only: inactivity
  re-scoring, held triggers, refinement ticks) follows the slowest *active*
  source.
* Assignment: each assigned input partition's clock is restored with its
  state (the model's ``core`` part in single mode, a ``\x00segmenter.clock`` record per
  state partition in shared mode), then ``open_source(partition)``: an
  assigned partition holds the watermark until it has events or is idle, so a
  partition not read yet cannot be overtaken by the others.
* Idleness (as Flink's idle sources, Kafka Streams' ``max.task.idle.ms``):
  after each poll's records are processed, a partition whose position has
  reached its end offset (the high watermark of the last fetch; under
  ``read_committed`` the position stops at the last stable offset) is marked
  idle (``set_idle(partition, True)``: caught up, nothing pending, it no
  longer holds the watermark); a poll that returns records of an idle
  partition marks it active again *before* they are processed.
* Revocation: the revoked partitions' customers and clocks are dropped
  (``drop_sources``); the watermark is over the owned partitions only.
* A wrong clock: an event whose ``ts`` is more than ``max_future`` (default
  1 hour) ahead of its Kafka record's timestamp is dead-lettered with error
  ``future`` before the core sees it, so one device dated years ahead cannot
  move anybody's time. Records without a timestamp are not checked.

Shared mode (``--mode shared``, scale-out): many processes in one group. A
process never learns: it assigns with the newest model *view* the trainer
published to the model topic (followed between polls, switched at the start
of a batch, so the ``model`` moves it causes are part of that batch), and
step 3 sends its sampled feature vectors to ``<group>.vectors`` instead of a
model snapshot. The trainer role (:mod:`consumer.trainer`) runs in a thread of
whichever process the ``<group>.trainer`` group gives the vectors partition.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from consumer.dlq import FUTURE, PROCESSING_FAILED, TOMBSTONE_KEY, dead_letter, describe_exception
from consumer.errors import (
    AuthenticationError,
    CoreBatchError,
    FencedError,
    KafkaIOError,
    PoisonRecordError,
    TopicSetupError,
)
from consumer.explorer import Explorer
from consumer.metrics import Health, Metrics
from consumer.settings import Settings
from consumer.sink import TP, InRecord, OutRecord, RebalanceHandler, Transport
from consumer.state import (
    FORMAT_HEADER,
    VERSIONS_HEADER,
    VIEW_FORMAT,
    VIEW_KEY,
    BadRecords,
    ClockedCore,
    ModelTracker,
    changelog_records,
    clock_records,
    restore_customers,
    restore_model,
    where,
)
from consumer.summary import Summary
from consumer.trainer import TrainerRole
from segmenter.errors import EventError, SegmenterError
from segmenter.events import CustomerEvent, parse_event
from segmenter.membership import Entries, membership_value
from segmenter.outputs import CampaignTrigger, OutputMessage, SegmentChange, encode, message_key, stamp
from segmenter.pipeline import BatchResult
from segmenter.triggers.controls import format_duration

log = logging.getLogger(__name__)


class Core(Protocol):
    """The part of :class:`segmenter.pipeline.Segmenter` the service drives."""

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None]) -> BatchResult:
        """Process events in order (``sources``: their input partitions); rejections come back by index."""

    def erase(self, customer_id: str, at: float | None = None) -> Sequence[OutputMessage]:
        """Forget a customer (Kafka tombstone)."""

    def set_rules(self, rules: Any) -> None:
        """Swap the campaign rules."""

    def take_changes(self) -> Sequence[tuple[str, bytes | None, int | None]]:
        """Customer records changed since the last call (``None`` = erased), each with its input partition."""

    def membership(self, customer_ids: Iterable[str]) -> Mapping[str, Entries | None]:
        """The customers' current segments per lens (``None``: not held)."""

    def load_customer(self, customer_id: str, record: bytes, source: int | None = None) -> None:
        """Restore one customer of input partition ``source``."""

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget every customer of those input partitions; returns how many."""

    def model_parts(self) -> Mapping[str, bytes]:
        """The model in separately written parts by name (``core``: clock and counters; one per lens)."""

    def load_model_parts(self, parts: Mapping[str, bytes]) -> None:
        """Restore the model from its parts."""

    def load_model_state(self, data: bytes) -> None:
        """Restore a whole-model record (the format written before the parts)."""

    def stats(self) -> Any:
        """Counters and segment sizes per lens."""


@runtime_checkable
class SharedCore(Protocol):
    """A core that assigns with a trainer's model view (:class:`Segmenter` with ``shared=True``)."""

    def load_shared_model(self, view: bytes) -> Sequence[OutputMessage]:
        """Assign with ``view`` from now on; returns the moves of customers whose segment died."""

    def model_versions(self) -> dict[str, int]:
        """Model version of each lens."""

    def take_vectors(self) -> bytes | None:
        """Sampled vectors since the last call."""

    def discard_vectors(self) -> None:
        """Drop sampled vectors of an aborted batch."""


@runtime_checkable
class EventClockCore(Protocol):
    """A core whose watermark follows the slowest active source (:class:`segmenter.pipeline.Segmenter`)."""

    def open_source(self, source: int) -> None:
        """An assigned partition: it holds the watermark until it has events or is marked idle."""

    def set_idle(self, source: int, idle: bool) -> None:
        """A partition read to its end offset (idle: it does not hold the watermark) or with records again."""


CoreFactory = Callable[[Any], Core]
"""Builds a fresh core with the given rules (``None``: no rules)."""

TransportFactory = Callable[[RebalanceHandler], Transport]


@dataclass
class RulesWatcher:
    """Reloads the rules file when its mtime changes; an invalid file keeps the old rules.

    A reload never raises: whatever goes wrong loading the new file is logged
    at ERROR (file and problem) and the running rules stay.
    """

    path: Path
    load: Callable[[Path], Any]
    interval_s: float = 1.0
    rules: Any = None
    _mtime: float | None = None
    _next_check: float = 0.0

    def load_initial(self) -> Any:
        """Load the file once at start; errors propagate (the service must not start with bad rules)."""
        self._mtime = self._stat()
        self.rules = self.load(self.path)
        return self.rules

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def check(self, now: float) -> str:
        """Look at the file (at most every ``interval_s``).

        Returns ``"unchanged"``, ``"loaded"`` (``rules`` now holds the new rules)
        or ``"invalid"`` (the file changed but does not load; the old rules stay).
        """
        if now < self._next_check:
            return "unchanged"
        self._next_check = now + self.interval_s
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return "unchanged"
        self._mtime = mtime
        try:
            rules = self.load(self.path)
        except (SegmenterError, OSError, ValueError) as exc:
            log.error("rules file %s changed but is invalid; keeping the previous rules: %s", self.path, exc)
            return "invalid"
        except Exception as exc:  # a loader bug (RecursionError, MemoryError, ...) must not stop the service either
            log.error("rules file %s changed but cannot be loaded; keeping the previous rules: %s", self.path,
                      describe_exception(exc), exc_info=exc)
            return "invalid"
        log.info("rules file %s reloaded", self.path)
        self.rules = rules
        return "loaded"


@dataclass
class _Batch:
    started: float
    open_s: float
    """How long the batch may stay open: the commit interval, or the catch-up interval behind a backlog."""
    count: int = 0
    offsets: dict[TP, int] = field(default_factory=dict)
    first_offsets: dict[TP, int] = field(default_factory=dict)
    records: list[OutRecord] = field(default_factory=list)
    """Outputs and dead letters of the batch, in order, sent together at commit (see :meth:`Service._send`)."""


@dataclass(frozen=True)
class _Route:
    """Where output messages of one kind go: topic, headers and the kind's output counter."""

    topic: str
    headers: tuple[tuple[str, bytes], ...]
    counter: Any


def utc_now() -> datetime:
    """The edge's wall clock (UTC)."""
    return datetime.now(UTC)


class Service:
    """The consume → process → produce loop (see the module docstring for the commit order).

    Parameters
    ----------
    settings
        The service settings.
    transport_factory
        Builds a connected transport that reports rebalances to the given handler.
    core_factory
        Builds a fresh core for the given rules.
    metrics, health
        Where to report.
    rules
        A :class:`RulesWatcher` (already loaded) or ``None``.
    clock
        Wall clock used for ``emitted_at`` only.
    """

    def __init__(self, settings: Settings, transport_factory: TransportFactory, core_factory: CoreFactory,
                 *, metrics: Metrics | None = None, health: Health | None = None, rules: RulesWatcher | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 trainer: Callable[[], TrainerRole] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self._transport_factory = transport_factory
        self._core_factory = core_factory
        self._rules = rules
        self._clock = clock
        self._stop = threading.Event()
        self._transport: Transport | None = None
        self._core: Core | None = None
        self._model = ModelTracker(settings.instance_id)
        self._bad = BadRecords()
        self._batch: _Batch | None = None
        self._owned: set[TP] = set()
        self._pending_assigned: set[TP] = set()
        self._positions: dict[TP, int] = {}
        self._idle: dict[TP, bool] = {}
        """Input partitions told to the core as idle (True) or active (False) since their restore."""
        self._failures: dict[tuple[TP, int], tuple[int, str]] = {}
        """(failures, the last one described) of each record the core failed on, until it is committed."""
        self._poison: set[tuple[TP, int]] = set()
        self._one_by_one: dict[TP, int] = {}
        self._backoff = 0.5
        self._next_gauges = 0.0
        self._trainer_factory = trainer
        self._trainer: TrainerRole | None = None
        self._next_view: tuple[dict[str, int], bytes] | None = None
        self._routes: dict[str, _Route] = {}
        self._summary = Summary(self.metrics)
        self._changed: dict[str, str] = {}
        """Customers with a segment change in the open batch -> its ``emitted_at`` (their membership records)."""
        self.explorer = Explorer()
        """The segment explorer's document, for the HTTP server's ``/segments`` and ``/``."""

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask the loop to finish the open batch, commit and return (signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stop.is_set()

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
        while not self._stop.is_set():
            try:
                self._session()
            except (FencedError, TopicSetupError, AuthenticationError):
                raise
            except KafkaIOError as exc:
                if self._stop.is_set():
                    log.warning("stopping after a Kafka failure: %s", exc)
                    break
                log.warning("Kafka unavailable or transaction failed; reconnecting to %s in %.1fs: %s",
                            self.settings.bootstrap_servers, self._backoff, exc)
                self.metrics.batch_failures.labels(type(exc).__name__).inc()
                self.health.tick(False, f"reconnecting: {exc}")
                self._stop.wait(self._backoff)
                self._backoff = min(self._backoff * 2, self.settings.retry_backoff_max_s)

    # ------------------------------------------------------------------ session

    def _reset(self) -> None:
        self._core = None
        self._model.reset()
        self._batch = None
        self._owned.clear()
        self._pending_assigned.clear()
        self._positions.clear()
        self._idle.clear()
        self._next_view = None
        self._changed.clear()

    def _new_core(self) -> Core:
        return self._core_factory(self._rules.rules if self._rules is not None else None)

    def _session(self) -> None:
        self._reset()
        self._core = self._new_core()
        transport = self._transport_factory(self)
        self._transport = transport
        log.info("connected to %s as %s (%s, %s mode)", self.settings.bootstrap_servers,
                 self.settings.transactional_id, self.settings.guarantee, self.settings.mode)
        try:
            if self._trainer_factory is not None:
                self._trainer = self._trainer_factory()
                self._trainer.start_thread()
            while not self._stop.is_set():
                self._check_rules()
                try:
                    records = transport.poll(self._poll_timeout(), self._room())
                    self._restore_pending()
                    self.health.tick(True)
                    self._follow_model()
                    self._wake(records)
                    self._process_records(records)
                    self._mark_idle()
                    if self._batch_due():
                        self._commit()
                except PoisonRecordError as exc:
                    self._recover(exc)
                except CoreBatchError as exc:
                    self._recover_run(exc)
                if self._trainer is not None and self._trainer.error is not None:
                    raise self._trainer.error
                self._update_gauges()
                self._summary.tick(self._core)
            self._commit()
            log.info("stopped after committing the last batch")
        except BaseException:
            self._discard_batch()
            raise
        finally:
            try:
                if self._trainer is not None:
                    self._trainer.stop_thread()
                    self._trainer = None
            finally:
                try:
                    transport.close()
                finally:
                    self._transport = None

    def _poll_timeout(self) -> float:
        if self._batch is None:
            return min(self.settings.commit_interval_ms / 1000, 0.5)
        return max(0.0, self._batch.open_s - (time.monotonic() - self._batch.started))

    def _room(self) -> int:
        return max(1, self.settings.batch_size - (self._batch.count if self._batch else 0))

    def _batch_due(self) -> bool:
        b = self._batch
        if b is None:
            return False
        return b.count >= self.settings.batch_size or time.monotonic() - b.started >= b.open_s

    def _open_s(self, first: InRecord) -> float:
        """How long a batch starting with ``first`` may stay open.

        ``commit_interval_ms``, unless the input lag at the batch's start (the
        owned partitions' high watermarks, as of the last fetch, minus the next
        offsets to process) is at least ``batch_size`` records: then the service
        is working off a backlog, in which records wait for their turn anyway,
        and the batch may stay open ``catch_up_interval_ms`` to fill up to
        ``batch_size`` (fewer, bigger transactions: a higher rate, so the backlog
        and its wait shrink sooner).
        """
        interval = self.settings.commit_interval_ms / 1000
        catch_up = self.settings.catch_up_interval_ms / 1000
        if catch_up <= interval:
            return interval
        positions = {tp: offset for tp, offset in self._positions.items() if tp in self._owned}
        positions[first.tp] = first.offset
        behind = sum(self._require_transport().lag(positions).values())
        return catch_up if behind >= self.settings.batch_size else interval

    def _check_rules(self) -> None:
        if self._rules is None:
            return
        previous = self._rules.rules
        result = self._rules.check(time.monotonic())
        if result == "unchanged":
            return
        if result == "loaded" and self._core is not None:
            try:
                self._core.set_rules(self._rules.rules)
            except Exception as exc:  # a reload never stops the service: the running rules stay
                log.error("rules file %s loaded but the core refused it; keeping the previous rules: %s",
                          self._rules.path, describe_exception(exc), exc_info=exc)
                self._rules.rules = previous
                result = "invalid"
        self.metrics.rules_reloads.labels(result).inc()

    # ------------------------------------------------------------------ processing

    def _process_records(self, records: Sequence[InRecord]) -> None:
        """Process a poll's records in order; plain events go to the core in runs (one compiled pass each).

        A run ends at a commit and before any record handled on its own (a
        tombstone, an undecodable or isolated record, a partition replayed one
        by one), so outputs and dead letters keep the records' order.
        """
        transport = self._require_transport()
        batch_size = self.settings.batch_size
        run: list[tuple[InRecord, CustomerEvent]] = []
        for rec in records:
            tp = rec.tp
            if tp not in self._owned:
                log.debug("skipping %s[%d]@%d: partition not owned (revoked)", rec.topic, rec.partition, rec.offset)
                continue
            if self._batch is None:
                transport.begin()
                self._batch = _Batch(started=time.monotonic(), open_s=self._open_s(rec))
                self._apply_view()
            self._batch.first_offsets.setdefault(tp, rec.offset)
            self.metrics.events_in.inc()
            until = self._one_by_one.get(tp)
            event = self._plain_event(rec) if until is None else None
            if event is not None:
                run.append((rec, event))
            else:
                self._process_run(run)
                self._handle(rec)
            self._batch.offsets[tp] = rec.offset + 1
            self._batch.count += 1
            if until is not None:
                self._commit()
                if rec.offset >= until:
                    del self._one_by_one[tp]
                    log.info("%s[%d]: past the isolated record at offset %d; batching again",
                             tp.topic, tp.partition, until)
            elif self._batch.count >= batch_size or time.monotonic() - self._batch.started >= self._batch.open_s:
                # a poll can hand over more records than fit in the batch's time: the commit interval
                # bounds how long a batch stays open, even in the middle of a poll's records
                self._process_run(run)
                self._commit()
        self._process_run(run)

    def _plain_event(self, rec: InRecord) -> CustomerEvent | None:
        """The record's event when it can join a run; ``None`` when :meth:`_handle` must take it alone."""
        if rec.value is None or (rec.tp, rec.offset) in self._poison:
            return None
        try:
            event = parse_event(rec.value)
        except Exception:  # an EventError, or a decoder bug: _handle dead-letters it
            return None
        return None if self._ahead(rec, event) else event

    def _ahead(self, rec: InRecord, event: CustomerEvent) -> bool:
        """Whether ``event`` is dated more than ``max_future`` after its record's Kafka timestamp."""
        return rec.timestamp_ms > 0 and event.epoch - rec.timestamp_ms / 1000 > self.settings.max_future

    def _future_reason(self, rec: InRecord, event: CustomerEvent) -> str:
        record_time = datetime.fromtimestamp(rec.timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds")
        ahead = format_duration(event.epoch - rec.timestamp_ms / 1000)
        return (f"event time {event.ts.isoformat()} is {ahead} ahead of the record's Kafka timestamp {record_time}, "
                f"more than max_future ({format_duration(self.settings.max_future)}): the producer's clock is "
                "wrong; fix it and re-send the event, or raise --max-future (SEGMENTER_MAX_FUTURE)")

    def _process_run(self, run: list[tuple[InRecord, CustomerEvent]]) -> None:
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
        core = self._require_core()
        try:  # the core, and turning its result into records: a failure anywhere here is the run's
            result = core.process_batch([ev for _, ev in run], [rec.partition for rec, _ in run])
            self._emit(result.outputs)
            for i, error in result.errors:
                self._dead_letter(run[i][0], error.reason, error.detail)
        except Exception as exc:
            if len(run) == 1:
                rec = run[0][0]
                raise PoisonRecordError(rec.topic, rec.partition, rec.offset, exc) from exc
            last: dict[tuple[str, int], int] = {}
            for rec, _ in run:
                last[(rec.topic, rec.partition)] = rec.offset
            raise CoreBatchError(last, exc) from exc
        run.clear()

    def _handle(self, rec: InRecord) -> None:
        """One record on its own: isolated poison, tombstone, undecodable bytes, or a run of one.

        Every record ends as outputs or a dead letter: an unexpected exception
        while decoding dead-letters it with ``processing_failed`` at once (the
        decoder is pure: a retry would fail the same way); one in the core or
        in turning its result into records raises :class:`PoisonRecordError`,
        so :meth:`_recover` retries it and in the end dead-letters it.
        """
        key = (rec.tp, rec.offset)
        if key in self._poison:
            failures, cause = self._failures.get(key, (0, "unknown"))
            self._dead_letter(rec, PROCESSING_FAILED, f"the core failed {failures} times on this record; last: {cause}")
            return
        if rec.value is not None:
            try:
                event = parse_event(rec.value)
            except EventError as exc:
                self._dead_letter(rec, exc.reason, exc.detail)
                return
            except Exception as exc:
                log.error("decoding %s[%d]@%d failed unexpectedly; dead-lettering it", rec.topic, rec.partition,
                          rec.offset, exc_info=exc)
                self._dead_letter(rec, PROCESSING_FAILED, f"decoding failed: {describe_exception(exc)}")
                return
            if self._ahead(rec, event):
                self._dead_letter(rec, FUTURE, self._future_reason(rec, event))
                return
            self._process_run([(rec, event)])
            return
        if not rec.key:
            self._dead_letter(rec, TOMBSTONE_KEY, "a tombstone (null value) needs the customer id as key")
            return
        customer_id = rec.key.decode("utf-8", errors="replace")
        try:
            outputs = self._require_core().erase(customer_id)
            self._emit(outputs)
        except Exception as exc:
            raise PoisonRecordError(rec.topic, rec.partition, rec.offset, exc) from exc
        self.metrics.erasures.inc()

    def _emit(self, outputs: Sequence[OutputMessage]) -> None:
        if not outputs:
            return
        now = self._clock()
        emitted_at = now.isoformat()
        for message in outputs:
            stamped = stamp(message, emitted_at)
            kind = stamped.kind
            route = self._routes.get(kind)
            if route is None:
                route = self._routes[kind] = _Route(self.settings.output_topic(kind), (("kind", kind.encode()),),
                                                    self.metrics.outputs.labels(kind))
            self._send(OutRecord(route.topic, message_key(stamped), encode(stamped), route.headers))
            route.counter.inc()
            if isinstance(stamped, SegmentChange):
                self._changed[stamped.customer_id] = stamped.emitted_at or stamped.event_ts
                self.metrics.changes.labels(stamped.lens, stamped.cause).inc()
            elif isinstance(stamped, CampaignTrigger):
                self.metrics.triggers.labels(stamped.campaign).inc()
            event_ts = getattr(stamped, "event_ts", None)
            if isinstance(event_ts, str):
                try:
                    lag = (now - datetime.fromisoformat(event_ts)).total_seconds()
                except ValueError:
                    continue
                self.metrics.end_to_end_lag.observe(max(0.0, lag))

    def _send(self, record: OutRecord) -> None:
        """Queue an output or dead letter in the open batch (sent at commit), or send it now without one.

        The records of a batch become visible only with its commit anyway; sending
        them in one run at commit time, instead of one at a time between core
        calls, roughly halves the cost of kafka-python's ``send`` and of the core
        (each loop stays hot in the CPU caches).
        """
        if self._batch is not None:
            self._batch.records.append(record)
        else:
            self._require_transport().send(record)

    def _dead_letter(self, rec: InRecord, error: str, reason: str) -> None:
        self._send(dead_letter(rec, self.settings.topics.dlq, error, reason))
        self.metrics.rejected.labels(error).inc()
        log.debug("dead-lettered %s[%d]@%d: %s: %s", rec.topic, rec.partition, rec.offset, error, reason)

    # ------------------------------------------------------------------ commit

    def _commit(self) -> None:
        batch = self._batch
        if batch is None:
            return
        transport = self._require_transport()
        core = self._require_core()
        started = time.perf_counter()
        transport.send_many(batch.records)
        batch.records.clear()
        transport.send_many(self._membership_records())
        transport.send_many(changelog_records(core.take_changes(), self.settings.state_topic))
        if isinstance(core, ClockedCore):
            clocks = core.take_dirty_clocks()
            if self.settings.shared:  # single mode: the partitions' clocks are in the model's core part
                transport.send_many(clock_records(clocks, self.settings.state_topic))
        if self.settings.shared and isinstance(core, SharedCore):
            vectors = core.take_vectors()
            if vectors is not None:
                transport.send(OutRecord(self.settings.vectors_topic, self.settings.instance_id.encode(), vectors,
                                         (), 0))
        else:
            transport.send_many(self._model.records(core.model_parts(), self.settings.model_topic))
        watchdog = threading.Timer(5.0, log.warning, ("commit of a batch of %d records is still waiting after 5s; "
                                                      "is the broker at %s down? (kafka-python keeps retrying)",
                                                      batch.count, self.settings.bootstrap_servers))
        watchdog.daemon = True
        watchdog.start()
        try:
            transport.commit(batch.offsets)
        except BaseException:
            self._model.reset()
            raise
        finally:
            watchdog.cancel()
        self._batch = None
        now = time.perf_counter()
        self.metrics.commit_seconds.observe(now - started)
        self.metrics.batch_seconds.observe(time.monotonic() - batch.started)
        self.metrics.batch_records.observe(batch.count)
        self.metrics.batches.inc()
        self._positions.update(batch.offsets)
        self.explorer.sample(core)
        for key in [k for k in self._failures if k[1] < batch.offsets.get(k[0], -1)]:
            self._failures.pop(key, None)
            self._poison.discard(key)
        self._backoff = 0.5

    def _membership_records(self) -> list[OutRecord]:
        """The membership-table records of the customers whose segments changed in the batch (from the core).

        Keyed by customer id and sent with the key-hash partitioner: the topic
        is compacted and keyed, and nothing reads it per input partition.
        """
        topic = self.settings.topics.membership
        changed, self._changed = self._changed, {}
        entries = self._require_core().membership(sorted(changed))
        records = [OutRecord(topic, cid.encode(), None if segs is None else membership_value(cid, segs, changed[cid]),
                             (), None) for cid, segs in entries.items()]  # fmt: skip
        tombstones = sum(1 for r in records if r.value is None)
        self.metrics.membership.labels("record").inc(len(records) - tombstones)
        self.metrics.membership.labels("tombstone").inc(tombstones)
        return records

    def _discard_batch(self) -> None:
        """Forget the open batch after a failure (its transaction is aborted or will be fenced)."""
        self._batch = None
        self._model.reset()
        self._changed.clear()
        core: object = self._core
        if self.settings.shared and isinstance(core, SharedCore):
            core.discard_vectors()

    # ------------------------------------------------------------------ recovery

    def _recover(self, exc: PoisonRecordError) -> None:
        transport = self._require_transport()
        tp = TP(exc.topic, exc.partition)
        key = (tp, exc.offset)
        failures = self._failures.get(key, (0, ""))[0] + 1
        self._failures[key] = (failures, describe_exception(exc.cause))
        self.metrics.batch_failures.labels("core").inc()
        log.error("batch aborted: the core failed on %s[%d]@%d (failure %d of %d): %r", exc.topic, exc.partition,
                  exc.offset, failures, self.settings.max_batch_retries, exc.cause,
                  exc_info=exc.cause if failures == 1 else None)
        transport.abort()
        self._discard_batch()
        if failures >= self.settings.max_batch_retries:
            self._poison.add(key)
            self._one_by_one[tp] = exc.offset
            log.error("isolating %s[%d]@%d: processing one by one up to it, then dead-lettering it",
                      exc.topic, exc.partition, exc.offset)
        self._rebuild()

    def _recover_run(self, exc: CoreBatchError) -> None:
        """The core failed somewhere in a run: abort, rebuild, and replay those partitions one record at a time."""
        self._require_transport().abort()
        self.metrics.batch_failures.labels("core").inc()
        log.error("batch aborted: the core failed on a run of records (%s); replaying them one by one: %r",
                  ", ".join(f"{t}[{p}] up to {o}" for (t, p), o in sorted(exc.last_offsets.items())), exc.cause,
                  exc_info=exc.cause)
        self._discard_batch()
        for (topic, partition), offset in exc.last_offsets.items():
            tp = TP(topic, partition)
            self._one_by_one[tp] = max(offset, self._one_by_one.get(tp, offset))
        self._rebuild()

    def _rebuild(self) -> None:
        """Rewind owned partitions to their committed offsets and rebuild the core from the state topics."""
        transport = self._require_transport()
        owned = set(self._owned)
        positions = transport.rewind(owned)
        self._core = self._new_core()
        self._model.reset()
        self._owned.clear()
        self._restore(owned)
        log.info("rewound to %s and restored state", {f"{tp.topic}[{tp.partition}]": o for tp, o in positions.items()})

    def _restore_pending(self) -> None:
        if not self._pending_assigned:
            return
        new = self._pending_assigned - self._owned
        self._pending_assigned.clear()
        if self._batch is not None:
            # our own open transaction would hold back the last stable offset of the state topic
            self._commit()
        if new:
            self._restore(new)

    def _restore(self, partitions: set[TP]) -> None:
        """Load the newest valid model (or view) and the partitions' customers; a bad record never stops it."""
        transport = self._require_transport()
        core = self._require_core()
        started = time.perf_counter()
        models = transport.read_to_end(self.settings.model_topic, [0])
        snapshot: bytes | None
        if self.settings.shared and isinstance(core, SharedCore):
            snapshot = self._restore_view(core, models)
        else:
            snapshot = self._restore_model(core, models)
        numbers = sorted(tp.partition for tp in partitions)
        loaded = restore_customers(core, transport.read_to_end(self.settings.state_topic, numbers, stable=True))
        self._owned |= partitions
        self._drop_foreign_clocks()
        self._open_sources(partitions)
        self.metrics.restored_customers.inc(loaded)
        self.metrics.assigned_partitions.set(len(self._owned))
        log.info("restored %d customers of partitions %s%s in %.2fs", loaded, numbers,
                 " and the newest model" if snapshot is not None else "", time.perf_counter() - started)

    def _restore_model(self, core: Core, models: Sequence[InRecord]) -> bytes | None:
        """Single mode: the newest model that loads (or that the core already holds) wins."""
        fresh = not self._model.digests
        chosen = restore_model(core, models, self._model, self._bad)
        if chosen is None:
            if fresh:
                log.info("no valid model record on %s: starting with a fresh model", self.settings.model_topic)
            return None
        return chosen.value

    def _drop_foreign_clocks(self) -> None:
        """The watermark is the minimum over the *owned* input partitions only."""
        core: object = self._core
        if isinstance(core, ClockedCore):
            owned = {tp.partition for tp in self._owned if tp.topic == self.settings.topics.input}
            core.drop_sources(lambda source: source in owned)

    def _open_sources(self, partitions: set[TP]) -> None:
        """Restored input partitions hold the watermark until they have events or are idle."""
        core: object = self._core
        for tp in sorted(partitions):
            if tp.topic != self.settings.topics.input:
                continue
            self._idle[tp] = False
            if isinstance(core, EventClockCore):
                core.open_source(tp.partition)

    def _wake(self, records: Sequence[InRecord]) -> None:
        """Idle partitions with records in this poll are active again, before their records are processed."""
        woken = {rec.tp for rec in records if self._idle.get(rec.tp)}
        self._tell_idle(woken, idle=False)

    def _mark_idle(self) -> None:
        """Owned input partitions read to their end offset are idle (they no longer hold the watermark)."""
        candidates = [tp for tp, idle in self._idle.items() if not idle and tp in self._owned]
        if candidates:
            self._tell_idle(self._require_transport().caught_up(candidates), idle=True)

    def _tell_idle(self, partitions: set[TP], *, idle: bool) -> None:
        core: object = self._core
        for tp in sorted(partitions):
            self._idle[tp] = idle
            if isinstance(core, EventClockCore):
                core.set_idle(tp.partition, idle)
            log.debug("%s[%d] %s", tp.topic, tp.partition, "read to its end: idle" if idle else "active again")

    # ------------------------------------------------------------------ shared mode: the model view

    def _restore_view(self, core: SharedCore, models: Sequence[InRecord]) -> bytes | None:
        """Load the newest valid view into a fresh core at once; a running core switches at its next batch."""
        views = _views(models, self._bad)
        if not views:
            if not any(core.model_versions().values()):
                log.info("no model view on %s yet: assigning nothing until the trainer publishes one",
                         self.settings.model_topic)
            return None
        if any(core.model_versions().values()):
            versions, rec = views[0]
            assert rec.value is not None
            self._offer_view(core, versions, rec.value)
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
        log.info("no valid model view on %s: assigning nothing until the trainer publishes one",
                 self.settings.model_topic)
        return None

    def _follow_model(self) -> None:
        """Shared mode: pick up views the trainer published since the last look (applied at the next batch)."""
        core: object = self._core
        if not (self.settings.shared and isinstance(core, SharedCore)):
            return
        views = _views(self._require_transport().follow(self.settings.model_topic, 0), self._bad)
        if views:
            versions, rec = views[0]
            assert rec.value is not None
            self._offer_view(core, versions, rec.value)

    def _offer_view(self, core: SharedCore, versions: dict[str, int], view: bytes) -> None:
        current = self._next_view[0] if self._next_view is not None else core.model_versions()
        if sum(versions.values()) > sum(current.values()):
            self._next_view = (versions, view)

    def _apply_view(self) -> None:
        """Switch to the newest view read, inside the open batch (its ``model`` moves are part of it)."""
        core: object = self._core
        pending, self._next_view = self._next_view, None
        if pending is None or not (self.settings.shared and isinstance(core, SharedCore)):
            return
        versions, view = pending
        if sum(versions.values()) <= sum(core.model_versions().values()):
            return
        try:
            outputs = core.load_shared_model(view)
        except SegmenterError:
            log.exception("model view %s cannot be loaded; keeping %s", versions, core.model_versions())
            return
        log.info("assigning with model versions %s (%d customers moved)", versions, len(outputs))
        self._emit(outputs)

    # ------------------------------------------------------------------ rebalance handler

    def on_revoked(self, partitions: set[TP]) -> None:
        """Commit the open batch, then release the revoked partitions' customers."""
        try:
            if self._batch is not None:
                log.info("partitions %s revoked: committing the open batch", sorted(partitions))
                self._commit()
        finally:
            self._release(partitions)

    def on_lost(self, partitions: set[TP]) -> None:
        """The group evicted us: the open batch cannot be committed; abort it and release everything lost."""
        try:
            if self._batch is not None and self._transport is not None:
                log.warning("partitions %s lost: aborting the open batch", sorted(partitions))
                self._discard_batch()
                self._transport.abort()
        finally:
            self._release(partitions)

    def on_assigned(self, partitions: set[TP]) -> None:
        """Remember the assignment; the loop restores it right after the poll returns."""
        self._pending_assigned |= partitions

    def _release(self, partitions: set[TP]) -> None:
        self._owned -= partitions
        for tp in partitions:
            self._positions.pop(tp, None)
            self._one_by_one.pop(tp, None)
            self._idle.pop(tp, None)
        numbers = [tp.partition for tp in partitions if tp.topic == self.settings.topics.input]
        dropped = self._core.drop_partitions(numbers) if self._core is not None and numbers else 0
        self._drop_foreign_clocks()
        self.metrics.assigned_partitions.set(len(self._owned))
        log.info("released partitions %s (%d customers)", sorted(p.partition for p in partitions), dropped)

    # ------------------------------------------------------------------ gauges

    def _update_gauges(self) -> None:
        now = time.monotonic()
        if now < self._next_gauges:
            return
        self._next_gauges = now + 2.0
        if self._transport is not None and self._positions:
            for tp, lag in self._transport.lag(self._positions).items():
                self.metrics.consumer_lag.labels(str(tp.partition)).set(lag)
        if self._core is not None:
            try:
                stats = self._core.stats()
                sizes = _segment_sizes(stats)
            except Exception:  # stats are best effort
                log.debug("stats() failed", exc_info=True)
                return
            for (lens, segment), size in sizes.items():
                self.metrics.segment_size.labels(lens, segment).set(size)
            for campaign, controls in (getattr(stats, "suppressed", None) or {}).items():
                for control, count in controls.items():
                    self.metrics.suppressed.labels(campaign, control).set(count)
            self.explorer.refresh(self._core)

    # ------------------------------------------------------------------ helpers

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("no transport: the service is not connected")
        return self._transport

    def _require_core(self) -> Core:
        if self._core is None:
            raise RuntimeError("no core")
        return self._core


def _views(records: Sequence[InRecord], bad: BadRecords) -> list[tuple[dict[str, int], InRecord]]:
    """The view records with their versions header, best first (highest versions, then newest)."""
    out: list[tuple[dict[str, int], InRecord]] = []
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


def _segment_sizes(stats: Any) -> dict[tuple[str, str], float]:
    """``{(lens, segment id): size}`` from ``SegmenterStats.segments`` (lens -> [SegmentSize(id, name, size)])."""
    segments = getattr(stats, "segments", None)
    out: dict[tuple[str, str], float] = {}
    if isinstance(segments, Mapping):
        for lens, sizes in segments.items():
            for entry in sizes:
                out[(str(lens), str(getattr(entry, "id", "?")))] = float(getattr(entry, "size", 0))
    return out
