"""The checkpoint: one batch of input records, when it is due, and the steps that commit it.

Batch policy
------------
A *batch* is what one commit makes visible: up to ``batch_size`` input records
(from one or more polls; it closes ``commit_interval_ms`` after its first
record could first have been waiting in the consumer, even in the middle of a
poll's records, so the interval bounds the wait of every record (:class:`WaitClock`:
records that arrive while the loop processes and commits the batch before wait
for it, and their time counts). Behind a backlog of at least ``batch_size`` records, or
:data:`CATCH_UP_LAG` if fewer, the bound is ``catch_up_interval_ms`` instead,
so batches fill up to ``batch_size``, or to the backlog they opened behind if
that is smaller: the tail of a backlog does not wait out the catch-up interval).
:meth:`BatchPolicy.due` is the one place that says a batch is due.

Commit steps
------------
Under **exactly-once** (the default) a batch is one Kafka transaction, begun
at the batch's first record (:meth:`BatchPolicy.open`'s caller). While it is
open, each input record is decoded, run through the core (consecutive valid
events in one :meth:`Segmenter.process_batch` call, a *run*) and its outputs
(keyed by customer id, header ``kind``, ``emitted_at`` stamped) or dead letter
are queued in the :class:`Checkpoint`. :meth:`CommitSteps.commit` then sends,
*inside the transaction*, in this order (the numbers are beside the code):

1. the batch's queued outputs and dead letters, in order (one tight run of
   sends costs kafka-python about half as much as sends spread between core
   calls). A batch that queues :data:`SPILL_RECORDS` of them (a sweep's or a
   refinement's mass move) sends each such chunk into its open transaction as
   soon as it is full (:meth:`Checkpoint.queue`), still in order and still in
   the one transaction, so what the batch holds is bounded by the chunk, the
   producer's buffer and the records of the run under way. The core hands a run's
   outputs over a move buffer's worth at a time while it runs (its ``sink``,
   :class:`consumer.emitter.OutputFeed`), encoded and queued at once, so the run
   never holds its message objects whole, only their records; those are spilled
   once the run has succeeded (:meth:`Checkpoint.settle`), not while the core
   runs (see :meth:`Checkpoint.queue_many`). A run that fails has sent nothing;
   records spilled by the batch's earlier runs are aborted with its transaction;
2. the membership-table records of every customer whose segments changed
   (:mod:`segmenter.membership`, built from the core's columns, keyed by
   customer id, key-hash partitioned);
3. the state-changelog records of every customer the core changed
   (``take_change_parts``), each to the partition number of its input record
   (which the core keeps per customer); steps 2 and 3 build and send their
   records :data:`SPILL_RECORDS` at a time (the core builds a part of the
   changelog only when it is reached: ``take_change_parts``);
4. the model's records (:class:`consumer.core.ModelKeeper`): in single mode
   the model parts that changed (:class:`consumer.state.ModelTracker`: the
   small ``core`` part with the clock and counters, and each lens that
   observed events); in shared mode the partitions' clock records and the
   sampled feature vectors for the trainer;
5. ``send_offsets_to_transaction(next offsets, consumer.group_metadata())``
   and ``commit_transaction`` (:meth:`Transport.commit`): outputs, dead
   letters, state, model and input offsets become visible to
   ``read_committed`` readers atomically.

On a failure before 5 completes nothing of the batch is visible. Under
**at-least-once** the transaction is replaced by: flush the producer, check
every output was acknowledged, then commit the offsets; a crash replays the
batch (the core ignores repeated event ids whose state was already saved).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, NamedTuple

from consumer.changed_customers import ChangedCustomers
from consumer.core import C, ModelKeeper
from consumer.metrics import Metrics
from consumer.settings import Settings
from consumer.sink import TP, OutRecord, Transport
from consumer.state import changelog_records
from consumer.watchdog import CommitWatchdog
from segmenter.malloc_tuning import release_free_memory

log = logging.getLogger(__name__)

SPILL_RECORDS = 10_000
"""Queued outputs and dead letters past which an open batch sends them into its transaction (step 1, early):
a mass move's hundreds of thousands of outputs would otherwise all be held until the commit (a sweep batch
reached 3.7 GB RSS at 500k customers); 10,000 sends in a run keep the tight-run saving of step 1."""

CATCH_UP_LAG = 10_000
"""Input records behind at a batch's start that make it a catch-up batch even when ``batch_size`` is larger: a
live stream is a commit interval's records behind (about 500 at 5k events/s), and with the threshold at
``batch_size`` (then 50,000) the last 50,000 records of any backlog were read in batches of a commit interval
(100k events of 10k customers behind, at 16k events/s: 10 commits and 403 state records per 1000 events
instead of 2 and 200)."""

TRIM_AFTER_RECORDS = 50_000
"""Once the commits since the last time sent this many outputs and changelog records, the heap's free pages go
back to the system (a sweep's or a refinement's mass move sends hundreds of thousands of them through the heap,
a part at a time: see :mod:`segmenter.malloc_tuning`); about 30 ms per time, a microsecond per record."""

TRIM_IDLE_RECORDS = 1_000
"""An idle consumer (its poll brought nothing) returns the free heap once the commits since the last time sent
this many records: the batches after the last :data:`TRIM_AFTER_RECORDS` trim leave their freed blocks too
(about 0.5 KB per record sent), and an idle process would keep them until the next burst; at most 30 us per
record, and only while there is nothing else to do."""


@dataclass
class Checkpoint:
    """One open batch: its input offsets and what its commit will send."""

    started: float
    """Monotonic seconds since the batch's first record may have waited (:class:`WaitClock`), at most ``opened``."""
    opened: float
    """Monotonic seconds at the batch's first record."""
    open_s: float
    """How long the batch may stay open: the commit interval, or the catch-up interval behind a backlog."""
    backlog: int | None = None
    """Behind a backlog: the lag it was opened behind. Once it holds as many records it is full, even under
    ``batch_size``: what arrives later is live, and the rest of the catch-up interval would be its wait."""
    count: int = 0
    offsets: dict[TP, int] = field(default_factory=dict)
    """The next offset to read of each input partition the batch holds records of."""
    records: list[OutRecord] = field(default_factory=list)
    """Outputs and dead letters of the batch, in order, sent together at commit (step 1)."""
    changed: ChangedCustomers = field(default_factory=ChangedCustomers)
    """Customers with a segment change in the batch -> its ``emitted_at`` (their membership records, step 2)."""
    spill: Callable[[list[OutRecord]], None] | None = None
    """Sends queued records into the batch's open transaction (``Transport.send_many``); ``None``: all at commit."""
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    """What the batch adds to the metrics, done once it is committed: an aborted batch is replayed and counts
    then, so nothing is counted twice (:class:`consumer.emitter.OutputFeed`)."""

    def store_offsets(self, tp: TP, last: int, count: int) -> None:
        """``count`` input records of ``tp``, up to offset ``last``, are processed: the batch commits past them."""
        self.offsets[tp] = last + 1
        self.count += count

    def queue(self, record: OutRecord) -> None:
        """An output or dead letter of the batch: sent at commit, or with its chunk once :data:`SPILL_RECORDS` wait."""
        self.queue_many((record,))

    def queue_many(self, records: Sequence[OutRecord], *, provisional: bool = False) -> None:
        """Outputs of the batch, in order: each full chunk of :data:`SPILL_RECORDS` goes out at once.

        ``provisional``: they come from a core call still under way (a part handed to its sink), which may yet
        fail and be re-run: they wait for :meth:`settle`. Spilled while the call runs, they would stretch the
        open transaction over the core's time: a mass move at a million customers takes the core minutes,
        and a transaction open longer than ``transaction_timeout_ms`` (60 s) is aborted by the broker, so
        the batch would fail and be replayed for ever; under at-least-once a send cannot be taken back.
        """
        queued = self.records
        queued.extend(records)
        if self.spill is None or provisional:
            return
        while len(queued) >= SPILL_RECORDS:
            self.spill(queued[:SPILL_RECORDS])
            del queued[:SPILL_RECORDS]

    def settle(self) -> None:
        """The core call whose records were provisional succeeded: spill the full chunks they left waiting."""
        self.queue_many(())


class Closing(NamedTuple):
    """When an open batch is due within a poll: full at ``full_at`` records, or at ``clock() >= closes_at``."""

    full_at: int
    closes_at: float
    clock: Callable[[], float]


@dataclass(frozen=True)
class BatchPolicy:
    """When a batch opens, how long it stays open, and when it is due."""

    batch_size: int
    interval_s: float
    catch_up_s: float

    @classmethod
    def of(cls, settings: Settings) -> BatchPolicy:
        """The policy of ``batch_size``, ``commit_interval_ms`` and ``catch_up_interval_ms``."""
        return cls(settings.batch_size, settings.commit_interval_ms / 1000, settings.catch_up_interval_ms / 1000)

    def open(
        self,
        behind: Callable[[], int],
        spill: Callable[[list[OutRecord]], None] | None = None,
        since: float | None = None,
    ) -> Checkpoint:
        """A new batch; ``behind`` tells the input lag at its start (asked only when catching up can apply).

        ``spill`` sends a chunk of queued outputs into the open batch early (see :meth:`Checkpoint.queue`).
        ``since``: the monotonic time since which its first record may have waited (:meth:`WaitClock.since`;
        later than now, or ``None``: now); the batch's commit interval counts from then. A catch-up batch's
        interval counts from its opening: behind a backlog records wait for their turn anyway, and counted from
        the commit before (a catch-up commit takes a few hundred ms), catch-up batches would close sooner,
        smaller (more changelog and membership records per event).

        The batch may stay open ``commit_interval_ms``, unless the input lag at
        its start (the owned partitions' high watermarks, as of the last fetch,
        minus the next offsets to process) is at least ``batch_size`` records, or :data:`CATCH_UP_LAG` if fewer:
        then the service is working off a backlog, in which records wait for
        their turn anyway, and the batch may stay open ``catch_up_interval_ms``
        to fill up to ``batch_size`` (fewer, bigger transactions: a higher
        rate, so the backlog and its wait shrink sooner).
        """
        now = time.monotonic()
        lag = behind() if self.catch_up_s > self.interval_s else 0
        if lag >= min(self.batch_size, CATCH_UP_LAG):  # its records wait their turn anyway: from its opening
            return Checkpoint(started=now, opened=now, open_s=self.catch_up_s, backlog=lag, spill=spill)
        started = now if since is None else min(now, since)
        return Checkpoint(started=started, opened=now, open_s=self.interval_s, spill=spill)

    def due(self, checkpoint: Checkpoint | None) -> bool:
        """Whether the open batch must be committed now, once a poll's records are processed.

        It is due full (or through its backlog), or open for its time, counted from ``started`` (when its first
        record may have begun to wait). Between two records of one poll, :meth:`closing` tells.
        """
        if checkpoint is None:
            return False
        waited = time.monotonic() - checkpoint.started
        return checkpoint.count >= self._full_at(checkpoint) or waited >= checkpoint.open_s

    def closing(self, checkpoint: Checkpoint) -> Closing:
        """When ``checkpoint`` is due between two records of one poll, for a caller that checks after each one.

        Full as in :meth:`due`; its time counts from its opening: a batch whose records waited out its time
        before it opened still takes the rest of the poll, rather than closing after each record.
        """
        return Closing(self._full_at(checkpoint), checkpoint.opened + checkpoint.open_s, time.monotonic)

    def _full_at(self, checkpoint: Checkpoint) -> int:
        """The records at which ``checkpoint`` is full: ``batch_size``, or the backlog it opened behind if fewer."""
        backlog = checkpoint.backlog
        return self.batch_size if backlog is None else min(self.batch_size, backlog)

    def poll_timeout(self, checkpoint: Checkpoint | None) -> float:
        """How long the next poll may wait: until the open batch is due, at most 0.5 s without one."""
        if checkpoint is None:
            return min(self.interval_s, 0.5)
        return max(0.0, checkpoint.open_s - (time.monotonic() - checkpoint.started))

    def room(self, checkpoint: Checkpoint | None) -> int:
        """How many records the next poll may return."""
        if checkpoint is None:
            return self.batch_size
        return max(1, self._full_at(checkpoint) - checkpoint.count)


class WaitClock:
    """Since when the records that open a batch may have been waiting in the consumer: where its time starts.

    A live stream's records arrive while the loop processes a poll and commits
    a batch; the fetcher holds them, and the next poll hands them over at once.
    Counted from that poll, their batch would keep them ``commit_interval_ms``
    more on top of that wait (at 5,000 events/s on a loaded two-core machine a
    commit took a median of 25-50 ms, up to 115-180 ms). So when the poll before held records (the flow
    did not stop), a batch opened now counts from that poll's return, or from
    the start of the last commit if that came later (a batch closed in the
    middle of a poll: the rest of its records count from the commit). After a
    poll that brought nothing the records arrived in the poll under way, and
    the batch counts from its opening, as it always did. The loop tells it
    each poll's return (:meth:`polled`) and each commit's start (:meth:`committing`).
    """

    def __init__(self) -> None:
        self._last: float | None = None
        """Return of the last poll, if it held records."""
        self._previous: float | None = None
        """The same of the poll before it: the one whose records are being processed came after it."""
        self._commit = float("-inf")

    def polled(self, records: int) -> None:
        """A poll returned ``records`` records."""
        self._previous, self._last = self._last, time.monotonic() if records else None

    def committing(self) -> None:
        """A commit starts."""
        self._commit = time.monotonic()

    def since(self) -> float | None:
        """Monotonic seconds since the records of a batch opened now may have waited; ``None``: they just came."""
        if self._previous is None:
            return None
        return max(self._previous, self._commit)


class CommitSteps(Generic[C]):
    """Commits a :class:`Checkpoint` in the order of the module docstring's steps 1-5.

    Parameters
    ----------
    settings
        The topics (state, membership) and the brokers named in warnings.
    keeper
        The model's records of the mode (step 4).
    metrics
        Commit, batch and membership metrics.
    watchdog
        Warns when step 5 waits too long.
    """

    def __init__(self, settings: Settings, keeper: ModelKeeper[C], metrics: Metrics, watchdog: CommitWatchdog) -> None:
        self._state_topic = settings.state_topic
        self._membership_topic = settings.topics.membership
        self._keeper = keeper
        self._metrics = metrics
        self._watchdog = watchdog
        self._since_trim = 0

    def commit(self, checkpoint: Checkpoint, transport: Transport, core: C) -> None:
        """Send the batch's records and commit its offsets (a failure leaves nothing of it visible)."""
        started = time.perf_counter()
        sent = len(checkpoint.records)
        transport.send_many(checkpoint.records)  # 1. outputs and dead letters, in order
        checkpoint.records.clear()
        changed, checkpoint.changed = checkpoint.changed, ChangedCustomers()
        for ids, stamps in changed.chunks(SPILL_RECORDS):  # 2. membership-table records, a chunk at a time
            transport.send_many(self._membership_records(ids, stamps, core))
        changes = 0
        for part in core.take_change_parts(SPILL_RECORDS):  # 3. state changelog, each part built when sent
            transport.send_many(changelog_records(part, self._state_topic))
            changes += len(part)
        transport.send_many(self._keeper.records(core))  # 4. model parts, or clocks and vectors
        self._watchdog.arm(checkpoint.count)
        try:
            transport.commit(checkpoint.offsets)  # 5. offsets and commit
        except BaseException:
            self._keeper.discard(core)
            raise
        finally:
            self._watchdog.disarm()
        for count in checkpoint.on_commit:
            count()
        checkpoint.on_commit.clear()
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_seconds.observe(time.monotonic() - checkpoint.opened)
        self._metrics.batch_records.observe(checkpoint.count)
        self._metrics.batches.inc()
        self._since_trim += sent + changes

    def release_memory_if_due(self, *, idle: bool = False) -> None:
        """Return the heap's free pages to the system once the commits since the last time sent enough records.

        Enough: :data:`TRIM_AFTER_RECORDS`, or :data:`TRIM_IDLE_RECORDS` when ``idle`` (the loop's poll brought
        nothing, and a batch it made due is committed). Called by the loop before a poll or once idle, not at the
        end of :meth:`commit`: by then the batch is gone, with what the commit and the batch's run still held when
        it ended (the changed customers of a mass move, the run's events and parts), so their pages go back too.
        """
        if self._since_trim >= (TRIM_IDLE_RECORDS if idle else TRIM_AFTER_RECORDS):
            self._since_trim = 0
            release_free_memory()

    def _membership_records(self, ids: Sequence[str], stamps: Sequence[str], core: C) -> list[OutRecord]:
        """The membership-table records of the customers ``ids``, whose segments changed in the batch (from the core).

        ``stamps`` holds each one's ``emitted_at``, in the order of ``ids``.

        Keyed by customer id and sent with the key-hash partitioner: the topic
        is compacted and keyed, and nothing reads it per input partition.
        """
        topic = self._membership_topic
        values = core.membership_values(ids, stamps)
        new = tuple.__new__  # OutRecord's own __new__ is a Python function; the tuple is the same
        pairs = zip(ids, values, strict=True)
        records = [new(OutRecord, (topic, cid.encode(), value, (), None)) for cid, value in pairs]
        tombstones = values.count(None)
        self._metrics.membership.labels("record").inc(len(records) - tombstones)
        self._metrics.membership.labels("tombstone").inc(tombstones)
        return records
