"""The small transport interface between the processing loop and Kafka, and an in-memory fake.

:class:`Transport` is everything :class:`~consumer.service.Service` needs from
Kafka: poll input records, send output records, and close a batch with
:meth:`Transport.commit` (exactly-once: outputs + offsets in one transaction;
at-least-once: wait for the acks, then commit the offsets). The real one is
:class:`consumer.kafka_io.KafkaTransport`; :class:`MemoryTransport` keeps topics
in lists and is what the unit tests drive, like quixstreams' in-memory sinks.
Both pass one contract (``tests/contract/transport_contract.py``, run over the
fake by the unit tests and over Kafka by the integration tests): the default
partitioner's partitions, transactions and their offsets, last stable offsets,
committed offsets, assignment callbacks, headers and poll bounds.

Records are plain dataclasses so nothing outside :mod:`consumer.kafka_io`
touches the Kafka client's types.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from consumer.delivery import Delivered, DeliveryTracker
from consumer.errors import TopicSetupError

Headers = tuple[tuple[str, bytes], ...]


class TP(NamedTuple):
    """A topic partition."""

    topic: str
    partition: int


class InRecord(NamedTuple):
    """One consumed record.

    A named tuple, not a frozen dataclass: one is made per consumed record and
    per restored one, and a tuple is built in about a third of the time.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int = 0

    @property
    def tp(self) -> TP:
        """The record's topic partition."""
        return TP(self.topic, self.partition)


class OutRecord(NamedTuple):
    """One record to produce; ``partition=None`` lets the default (key-hash) partitioner choose.

    A named tuple, like :class:`InRecord`: one is made per output, dead letter and changelog record.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    partition: int | None = None


class RebalanceHandler(Protocol):
    """What a transport calls when the group moves partitions (inside :meth:`Transport.poll`)."""

    def on_revoked(self, partitions: set[TP]) -> None:
        """Partitions are taken away; commit the open batch, then release their state."""

    def on_assigned(self, partitions: set[TP]) -> None:
        """Partitions were given to this instance; their state must be restored before processing."""

    def on_lost(self, partitions: set[TP]) -> None:
        """The group evicted this instance: the open batch cannot commit; release the partitions' state."""


class Transport(Protocol):
    """Kafka as the processing loop sees it."""

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        """Return up to ``max_records`` input records (may call the rebalance handler)."""

    def rewind(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Seek ``partitions`` back to their committed offsets; returns the positions."""

    def begin(self) -> None:
        """Open a batch (a transaction under exactly-once)."""

    def send(self, record: OutRecord) -> None:
        """Produce one record inside the open batch."""

    def send_many(self, records: Iterable[OutRecord]) -> None:
        """Produce records inside the open batch, in order: the same as :meth:`send` on each, for less."""

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Close the batch: its outputs and the next ``offsets`` to read become visible together."""

    def abort(self) -> None:
        """Drop the open batch (its records are never seen by read_committed readers)."""

    def read_to_end(self, topic: str, partitions: Sequence[int], stable: bool = False) -> list[InRecord]:
        """Every committed record of ``topic``'s ``partitions`` up to their current end.

        Records come partition by partition, each in offset order, every version
        of a key and its tombstones (``value=None``) included: the newest value
        of a key is its last record (a compacted topic may have dropped older
        ones, never the newest). The end is the last stable offset: a
        transaction left open hides the records committed after its first one.
        ``stable``: wait until no transaction is left open on them (a killed
        previous owner's transaction is aborted by the broker after the
        transaction timeout), so records committed after it are read too.

        Raises
        ------
        TopicSetupError
            ``topic`` has no such partition (Kafka: or does not exist; the in-memory transport makes a topic
            on first use).
        """

    def follow(self, topic: str, partition: int) -> list[InRecord]:
        """Committed records of one partition not returned by the previous call (from the start), no waiting."""

    def lag(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        """Offsets behind the end of each partition, given the next offsets to process.

        The end is the high watermark: it counts the records of open and aborted
        transactions and one marker offset per ended transaction, so a partition
        written by transactions and read to its last record is still 1 behind.
        Partitions whose end is not known yet (not fetched) are left out.
        """

    def caught_up(self, partitions: Iterable[TP]) -> set[TP]:
        """The assigned ``partitions`` read to their end: every record up to the end offset of the last fetch
        (under ``read_committed``, at most the last stable offset) was returned by :meth:`poll`.

        A partition not fetched yet is not caught up.
        """

    def close(self) -> None:
        """Release the clients (revokes the assignment)."""


class PartitionLog(list[InRecord]):
    """One partition of a :class:`MemoryTransport` topic: its committed records, in offset order.

    Besides the records it keeps what Kafka's log has and a list cannot:
    ``end``, the high watermark, which also counts the records of open and
    aborted transactions and one marker offset per transaction that ended on
    the partition; and ``open``, the first offset of each transaction still
    open on it (the smallest is the last stable offset).
    """

    def __init__(self, records: Iterable[InRecord] = ()) -> None:
        super().__init__(records)
        self.end = self[-1].offset + 1 if self else 0
        self.open: dict[object, int] = {}

    def stable_end(self) -> int:
        """The last stable offset: read_committed readers see no record at or past it."""
        return min(self.open.values(), default=self.end)

    def visible(self, start: int = 0) -> list[InRecord]:
        """The committed records from offset ``start`` up to the last stable offset."""
        first = bisect.bisect_left(self, start, key=_offset)
        last = bisect.bisect_left(self, self.stable_end(), key=_offset)
        return self[first : max(first, last)]


@dataclass(eq=False)
class MemoryGroup:
    """A consumer group of :class:`MemoryTransport` members: committed offsets and kafka-python's eager rebalance.

    A member joining (at its first poll) or leaving (at close) starts a
    rebalance. Each member, at its next poll, has everything revoked and
    rejoins; once all have rejoined, each is assigned its range of the input
    partitions (members sorted by name, like the range assignor) at its next
    poll. ``committed`` is what :meth:`MemoryTransport.commit` writes and
    :meth:`MemoryTransport.rewind` reads for every member.
    """

    committed: dict[TP, int] = field(default_factory=dict)
    generation: int = 0
    members: dict[str, int] = field(default_factory=dict)
    """Member name -> the generation it last rejoined."""

    def join(self, member: str) -> None:
        """Add ``member``; everyone must rejoin."""
        self.members[member] = -1
        self.generation += 1

    def leave(self, member: str) -> None:
        """Remove ``member``; everyone left must rejoin."""
        if self.members.pop(member, None) is not None:
            self.generation += 1

    def rejoin(self, member: str) -> None:
        """``member`` released its partitions and rejoined the current generation."""
        self.members[member] = self.generation

    def settled(self) -> bool:
        """Every member rejoined the current generation."""
        return all(seen == self.generation for seen in self.members.values())

    def share(self, member: str, partitions: Sequence[TP]) -> set[TP]:
        """``member``'s range of ``partitions``: an equal share each, one more for the first ``len % members``."""
        names = sorted(self.members)
        each, extra = divmod(len(partitions), len(names))
        rank = names.index(member)
        start = rank * each + min(rank, extra)
        return set(sorted(partitions)[start : start + each + (rank < extra)])


@dataclass
class MemoryTransport:
    """An in-memory :class:`Transport` with Kafka's transactions and offsets, for unit tests.

    ``topics`` maps a topic to its partitions (:class:`PartitionLog`; plain
    lists are adopted); transports given one ``topics`` share the topics like
    clients of one broker. Without a ``group`` a transport is a lone member
    assigned every input partition at its first poll; transports given one
    :class:`MemoryGroup` (as distinct ``member`` names) share its committed
    offsets and its partitions. A send takes the next offset of its partition
    at once (so an open batch holds back the last stable offset, as on
    Kafka); its record becomes visible at :meth:`commit`, and every commit or
    :meth:`abort` takes one marker offset on each partition the batch wrote.
    Keyed records go where kafka-python's default partitioner sends them
    (murmur2), keyless ones round-robin. Unknown topics are created on the
    first send with ``partitions`` partitions (the real broker refuses them).
    ``exactly_once=False`` is the at-least-once transport: a send is in the
    log at once (no transaction, no marker) and :meth:`abort` takes nothing
    back. ``fail_commits`` makes that many next commits raise ``commit_error``.
    ``lose_sends`` makes that many next sends be lost as an expired record
    batch is (never in the log, their delivery failed with ``KafkaTimeoutError``'s
    message) and ``sender_alive = False`` stops the producer's sender: as on the
    Kafka transport, the :class:`consumer.delivery.DeliveryTracker` fails the
    commit of such a batch.

    Where it cannot behave like Kafka it refuses: :meth:`read_to_end` with
    ``stable=True`` raises while a transaction is open on the partitions,
    since nothing could end it while the call waits.
    """

    input_topic: str
    partitions: int = 1
    topics: dict[str, list[list[InRecord]]] = field(default_factory=dict)
    committed: dict[TP, int] = field(default_factory=dict)
    fail_commits: int = 0
    commit_error: Exception | None = None
    lose_sends: int = 0
    sender_alive: bool = True
    handler: RebalanceHandler | None = None
    group: MemoryGroup | None = None
    member: str = "0"
    exactly_once: bool = True
    commits: int = 0
    aborts: int = 0
    _pending: list[InRecord] = field(default_factory=list)
    _batch: object | None = None
    _written: list[PartitionLog] = field(default_factory=list)
    _positions: dict[TP, int] = field(default_factory=dict)
    _assigned: set[TP] = field(default_factory=set)
    _generation: int = -1
    _followed: dict[TP, int] = field(default_factory=dict)
    _keyless: dict[str, int] = field(default_factory=dict)
    _delivery: DeliveryTracker = field(init=False)

    def __post_init__(self) -> None:
        self._delivery = DeliveryTracker(lambda: self.sender_alive, timeout_s=0.0)
        self._logs(self.input_topic)
        if self.group is not None:
            self.committed = self.group.committed

    def produce_input(
        self, key: bytes | None, value: bytes | None, partition: int = 0, headers: Headers = (), timestamp_ms: int = 0
    ) -> None:
        """Append an input record, as a producer outside any transaction would (test helper).

        ``timestamp_ms`` 0: the record has no timestamp.
        """
        self.append(OutRecord(self.input_topic, key, value, headers, partition), timestamp_ms=timestamp_ms)

    def append(self, record: OutRecord, *, timestamp_ms: int = 0) -> int:
        """Append ``record`` (partition ``None``: 0) outside any transaction; returns its offset (test helper)."""
        topic, partition = record.topic, record.partition or 0
        log = self._logs(topic)[partition]
        offset = log.end
        log.append(InRecord(topic, partition, offset, record.key, record.value, record.headers, timestamp_ms))
        log.end += 1
        return offset

    def records(self, topic: str) -> list[InRecord]:
        """Every committed record of ``topic``, partition by partition (test helper)."""
        return [r for part in self.topics.get(topic, []) for r in part]

    def assign(self, partitions: set[TP]) -> None:
        """Move the assignment like kafka-python's eager rebalance: revoke all, then assign (test helper)."""
        if self.handler is not None:
            self.handler.on_revoked(set(self._assigned))
        self._assigned = set(partitions)
        for tp in partitions:
            self._positions[tp] = self.committed.get(tp, 0)
        if self.handler is not None:
            self.handler.on_assigned(set(partitions))

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        self._follow_group()
        out: list[InRecord] = []
        for tp in sorted(self._assigned):
            take = self._logs(tp.topic)[tp.partition].visible(self._positions.get(tp, 0))[: max_records - len(out)]
            if take:
                out.extend(take)
                self._positions[tp] = take[-1].offset + 1
        return out

    def rewind(self, partitions: Iterable[TP]) -> dict[TP, int]:
        for tp in partitions:
            self._positions[tp] = self.committed.get(tp, 0)
        return {tp: self._positions[tp] for tp in partitions}

    def begin(self) -> None:
        if self._batch is not None:
            raise RuntimeError("batch already open")
        self._batch = object()
        self._delivery.begin()

    def send(self, record: OutRecord) -> None:
        if self._batch is None:
            raise RuntimeError("send outside a batch")
        if self.lose_sends > 0:
            self.lose_sends -= 1
            self._delivery.track([Delivered(RuntimeError("KafkaTimeoutError: Expiring 1 record(s): injected"))])
            return
        logs = self._logs(record.topic)
        p = record.partition
        if p is None:
            p = _key_partition(record.key, len(logs)) if record.key is not None else self._next_keyless(record.topic)
        log = logs[p]
        sent = InRecord(record.topic, p, log.end, record.key, record.value, record.headers)
        log.end += 1
        if not self.exactly_once:  # a plain producer's record: there at once, abort takes nothing back
            log.append(sent)
            return
        if self._batch not in log.open:
            log.open[self._batch] = sent.offset
            self._written.append(log)
        self._pending.append(sent)

    def send_many(self, records: Iterable[OutRecord]) -> None:
        for record in records:
            self.send(record)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        if self._batch is None:
            raise RuntimeError("commit outside a batch")
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise self.commit_error or RuntimeError("injected commit failure")
        self._delivery.check("commit transaction", complete=True)
        for rec in self._pending:
            bisect.insort(self._logs(rec.topic)[rec.partition], rec, key=_offset)
        self._end_batch()
        self.committed.update(offsets)
        self.commits += 1

    def abort(self) -> None:
        self._end_batch()
        self.aborts += 1

    def read_to_end(self, topic: str, partitions: Sequence[int], stable: bool = False) -> list[InRecord]:
        if topic not in self.topics:  # made on first use here; the service's topics exist before it reads them
            return []
        missing_partitions(topic, partitions, len(self.topics[topic]))
        logs = [self._logs(topic)[p] for p in partitions]
        if stable and any(log.open for log in logs):
            raise RuntimeError(
                f"read_to_end({topic!r}, {list(partitions)}, stable=True): a transaction is open "
                f"there and Kafka would wait until it ends; commit, abort or close its transport "
                f"first"
            )
        return [r for log in logs for r in log.visible()]

    def follow(self, topic: str, partition: int) -> list[InRecord]:
        if partition >= len(self.topics.get(topic, [])):
            return []
        key = TP(topic, partition)
        out = self._logs(topic)[partition].visible(self._followed.get(key, 0))
        if out:
            self._followed[key] = out[-1].offset + 1
        return out

    def lag(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        return {tp: max(0, self._logs(tp.topic)[tp.partition].end - pos) for tp, pos in positions.items()}

    def caught_up(self, partitions: Iterable[TP]) -> set[TP]:
        return {
            tp
            for tp in partitions
            if tp in self._assigned and self._positions.get(tp, 0) >= len(self.topics[tp.topic][tp.partition])
        }

    def close(self) -> None:
        if self.handler is not None and self._assigned:
            self.handler.on_revoked(set(self._assigned))
        self._assigned = set()
        if self.group is not None:
            self.group.leave(self.member)
        self._end_batch()  # like a new producer's init_transactions: whatever is still open is aborted
        self.sender_alive = True  # the next session's producer is a fresh one

    def _follow_group(self) -> None:
        """Take part in the group's rebalance, as kafka-python does inside ``poll``."""
        if self.handler is None:
            return
        everything = [TP(self.input_topic, p) for p in range(len(self._logs(self.input_topic)))]
        group = self.group
        if group is None:
            if not self._assigned:
                self.assign(set(everything))
            return
        if self.member not in group.members:
            group.join(self.member)
        if group.members[self.member] != group.generation:
            self.handler.on_revoked(set(self._assigned))
            self._assigned = set()
            group.rejoin(self.member)
        if group.settled() and self._generation != group.generation:
            self._generation = group.generation
            self._assigned = group.share(self.member, everything)
            self.rewind(self._assigned)
            self.handler.on_assigned(set(self._assigned))

    def _logs(self, topic: str) -> list[PartitionLog]:
        """The partitions of ``topic`` (created with ``partitions`` partitions if unknown; plain lists adopted)."""
        parts = self.topics.setdefault(topic, [PartitionLog() for _ in range(self.partitions)])
        for i, part in enumerate(parts):
            if not isinstance(part, PartitionLog):
                parts[i] = PartitionLog(part)
        return parts  # type: ignore[return-value]  # every partition is a PartitionLog now

    def _next_keyless(self, topic: str) -> int:
        turn = self._keyless.get(topic, 0)
        self._keyless[topic] = turn + 1
        return turn % len(self._logs(topic))

    def _end_batch(self) -> None:
        """Close the open batch's transaction on every partition it wrote (one marker offset each)."""
        if self._batch is None:
            return
        for log in self._written:
            del log.open[self._batch]
            log.end += 1
        self._written.clear()
        self._pending.clear()
        self._batch = None


def missing_partitions(topic: str, partitions: Iterable[int], count: int) -> None:
    """Raise :class:`TopicSetupError` if ``topic``, of ``count`` partitions, lacks one of ``partitions``."""
    missing = sorted(p for p in partitions if not 0 <= p < count)
    if missing:
        raise TopicSetupError(f"topic {topic} has {count} partitions: no partition {', '.join(map(str, missing))}")


def _offset(record: InRecord) -> int:
    return record.offset


def _key_partition(key: bytes, partitions: int) -> int:
    """The partition of kafka-python's (and the Java client's) default partitioner for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 hash (``org.apache.kafka.common.utils.Utils.murmur2``), unsigned."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i : i + 4], "little") * m & mask
        k = (k ^ (k >> 24)) * m & mask
        h = (h * m & mask) ^ k
    tail = data[length - length % 4 :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = h * m & mask
    h = (h ^ (h >> 13)) * m & mask
    return h ^ (h >> 15)
