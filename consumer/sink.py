"""The small transport interface between the processing loop and Kafka, and an in-memory fake.

:class:`Transport` is everything :class:`~consumer.service.Service` needs from
Kafka: poll input records, send output records, and close a batch with
:meth:`Transport.commit` (exactly-once: outputs + offsets in one transaction;
at-least-once: wait for the acks, then commit the offsets). The real one is
:class:`consumer.kafka_io.KafkaTransport`; :class:`MemoryTransport` keeps topics
in lists, honours transactions (aborted records vanish) and is what the unit
tests drive, like quixstreams' in-memory sinks.

Records are plain dataclasses so nothing outside :mod:`consumer.kafka_io`
touches the Kafka client's types.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

Headers = tuple[tuple[str, bytes], ...]


class TP(NamedTuple):
    """A topic partition."""

    topic: str
    partition: int


@dataclass(frozen=True)
class InRecord:
    """One consumed record."""

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


@dataclass(frozen=True)
class OutRecord:
    """One record to produce; ``partition=None`` lets the default (key-hash) partitioner choose."""

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

    def assignment(self) -> set[TP]:
        """Input partitions currently assigned."""

    def rewind(self, partitions: Iterable[TP]) -> dict[TP, int]:
        """Seek ``partitions`` back to their committed offsets; returns the positions."""

    def begin(self) -> None:
        """Open a batch (a transaction under exactly-once)."""

    def send(self, record: OutRecord) -> None:
        """Produce one record inside the open batch."""

    def commit(self, offsets: Mapping[TP, int]) -> None:
        """Close the batch: its outputs and the next ``offsets`` to read become visible together."""

    def abort(self) -> None:
        """Drop the open batch (its records are never seen by read_committed readers)."""

    def read_to_end(self, topic: str, partitions: Sequence[int], stable: bool = False) -> list[InRecord]:
        """Every committed record of ``topic``'s ``partitions`` up to their current end.

        ``stable``: wait until no transaction is left open on them (a killed
        previous owner's transaction is aborted by the broker after the
        transaction timeout), so records committed after it are read too.
        """

    def follow(self, topic: str, partition: int) -> list[InRecord]:
        """Committed records of one partition not returned by the previous call (from the start), no waiting."""

    def partitions_of(self, topic: str) -> int:
        """How many partitions ``topic`` has."""

    def lag(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        """Records behind the end of each partition, given the next offsets to process."""

    def caught_up(self, partitions: Iterable[TP]) -> set[TP]:
        """The assigned ``partitions`` read to their end: every record up to the end offset of the last fetch
        (under ``read_committed``, at most the last stable offset) was returned by :meth:`poll`.

        A partition not fetched yet is not caught up.
        """

    def close(self) -> None:
        """Release the clients (revokes the assignment)."""


@dataclass
class MemoryTransport:
    """An in-memory :class:`Transport` with transactions, for unit tests.

    ``topics`` maps a topic to its partitions' record lists. Records sent in a
    batch become visible only at :meth:`commit`; :meth:`abort` drops them.
    ``fail_commits`` makes that many next commits raise ``commit_error``.
    """

    input_topic: str
    partitions: int = 1
    topics: dict[str, list[list[InRecord]]] = field(default_factory=dict)
    committed: dict[TP, int] = field(default_factory=dict)
    fail_commits: int = 0
    commit_error: Exception | None = None
    handler: RebalanceHandler | None = None
    commits: int = 0
    aborts: int = 0
    _pending: list[OutRecord] = field(default_factory=list)
    _positions: dict[TP, int] = field(default_factory=dict)
    _assigned: set[TP] = field(default_factory=set)
    _open: bool = False
    _followed: dict[TP, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.topics.setdefault(self.input_topic, [[] for _ in range(self.partitions)])

    def produce_input(self, key: bytes | None, value: bytes | None, partition: int = 0,
                      headers: Headers = (), timestamp_ms: int = 0) -> None:
        """Append an input record (test helper; ``timestamp_ms`` 0: the record has no timestamp)."""
        parts = self.topics[self.input_topic]
        parts[partition].append(InRecord(self.input_topic, partition, len(parts[partition]), key, value, headers,
                                         timestamp_ms))

    def records(self, topic: str) -> list[InRecord]:
        """Every committed record of ``topic``, partition by partition (test helper)."""
        return [r for part in self.topics.get(topic, []) for r in part]

    def assign(self, partitions: set[TP]) -> None:
        """Move the assignment, calling the handler like a group rebalance would (test helper)."""
        if self.handler is not None and self._assigned:
            self.handler.on_revoked(set(self._assigned))
        self._assigned = set(partitions)
        for tp in partitions:
            self._positions[tp] = self.committed.get(tp, 0)
        if self.handler is not None:
            self.handler.on_assigned(set(partitions))

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        if not self._assigned and self.handler is not None:
            self.assign({TP(self.input_topic, p) for p in range(self.partitions)})
        out: list[InRecord] = []
        for tp in sorted(self._assigned):
            part = self.topics[tp.topic][tp.partition]
            pos = self._positions.get(tp, 0)
            take = part[pos:pos + max_records - len(out)]
            out.extend(take)
            self._positions[tp] = pos + len(take)
        return out

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def rewind(self, partitions: Iterable[TP]) -> dict[TP, int]:
        for tp in partitions:
            self._positions[tp] = self.committed.get(tp, 0)
        return {tp: self._positions[tp] for tp in partitions}

    def begin(self) -> None:
        if self._open:
            raise RuntimeError("batch already open")
        self._open = True

    def send(self, record: OutRecord) -> None:
        if not self._open:
            raise RuntimeError("send outside a batch")
        self._pending.append(record)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        if not self._open:
            raise RuntimeError("commit outside a batch")
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise self.commit_error or RuntimeError("injected commit failure")
        for rec in self._pending:
            parts = self.topics.setdefault(rec.topic, [[] for _ in range(self.partitions)])
            p = rec.partition if rec.partition is not None else _hash_partition(rec.key, len(parts))
            parts[p].append(InRecord(rec.topic, p, len(parts[p]), rec.key, rec.value, rec.headers))
        self.committed.update(offsets)
        self._pending.clear()
        self._open = False
        self.commits += 1

    def abort(self) -> None:
        self._pending.clear()
        self._open = False
        self.aborts += 1

    def read_to_end(self, topic: str, partitions: Sequence[int], stable: bool = False) -> list[InRecord]:
        parts = self.topics.get(topic, [])
        return [r for p in partitions if p < len(parts) for r in parts[p]]

    def follow(self, topic: str, partition: int) -> list[InRecord]:
        parts = self.topics.get(topic, [])
        if partition >= len(parts):
            return []
        key = TP(topic, partition)
        pos = self._followed.get(key, 0)
        out = parts[partition][pos:]
        self._followed[key] = pos + len(out)
        return out

    def partitions_of(self, topic: str) -> int:
        return len(self.topics.get(topic, [])) or self.partitions

    def lag(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        return {tp: len(self.topics[tp.topic][tp.partition]) - pos for tp, pos in positions.items()}

    def caught_up(self, partitions: Iterable[TP]) -> set[TP]:
        return {tp for tp in partitions
                if tp in self._assigned and self._positions.get(tp, 0) >= len(self.topics[tp.topic][tp.partition])}

    def close(self) -> None:
        if self.handler is not None and self._assigned:
            self.handler.on_revoked(set(self._assigned))
        self._assigned = set()
        # like a new producer's init_transactions: whatever is still open is aborted
        self._pending.clear()
        self._open = False


def _hash_partition(key: bytes | None, partitions: int) -> int:
    return zlib.crc32(key or b"") % partitions
