"""The :class:`~consumer.sink.Transport` contract: what the service relies on, for every transport.

One contract, every implementation, in the manner of river's ``test_estimators.py``:
each check takes a :class:`Backend` (how one implementation makes topics and
transports) and fails when the transport behaves otherwise.
``tests/unit/consumer/test_transport_contract.py`` runs every check over
:class:`~consumer.sink.MemoryTransport`, ``tests/integration/test_transport_contract.py``
over :class:`~consumer.kafka_io.KafkaTransport` on the real broker, so the
fake the unit tests drive cannot drift from Kafka.

Transports write through exactly-once batches (the service's default) unless
a check says otherwise. On Kafka a committed batch becomes visible a moment after ``commit`` returns
(the broker writes the commit markers after answering), so checks read a
commit's records with :func:`read_until`; what must never be seen is checked
once a later record is visible. Nothing here sleeps: checks that wait for
Kafka poll until a condition holds, with a generous deadline that only stops
a broken run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest
from kafka.partitioner.default import murmur2

from consumer.errors import TopicSetupError
from consumer.sink import TP, Headers, InRecord, OutRecord, RebalanceHandler, Transport

DEADLINE_S = 20.0
"""Longest wait for records or an assignment before a check gives up (a broken run, not a slow one)."""


@dataclass(frozen=True)
class Member:
    """Who a transport is: its consumer group, its name in the group and its guarantee."""

    group: str = "g"
    name: str = "0"
    exactly_once: bool = True
    """False: the at-least-once transport (no transactions)."""


LONE = Member()
"""The default member: exactly-once, alone in group ``g``."""


class Backend(Protocol):
    """How one transport implementation makes topics and transports for a check."""

    def topic(self, partitions: int = 1, *, compacted: bool = False) -> str:
        """A new, empty topic no other check uses."""

    def transport(self, input_topic: str, member: Member = LONE, handler: RebalanceHandler | None = None) -> Transport:
        """A transport consuming ``input_topic`` as ``member`` (closed when the check ends)."""

    def flush(self, transport: Transport) -> None:
        """Make the records sent in the open batch reach the log (still uncommitted)."""


class Recorder:
    """A :class:`~consumer.sink.RebalanceHandler` that records the non-empty events it is told of."""

    def __init__(self) -> None:
        self.events: list[tuple[str, set[TP]]] = []

    def on_revoked(self, partitions: set[TP]) -> None:
        self._note("revoked", partitions)

    def on_assigned(self, partitions: set[TP]) -> None:
        self._note("assigned", partitions)

    def on_lost(self, partitions: set[TP]) -> None:
        self._note("lost", partitions)

    def owned(self) -> set[TP]:
        """The partitions the events leave assigned."""
        owned: set[TP] = set()
        for kind, partitions in self.events:
            owned = owned | partitions if kind == "assigned" else owned - partitions
        return owned

    def _note(self, kind: str, partitions: set[TP]) -> None:
        if partitions:  # an eager rebalance starts with revoking everything, often nothing
            self.events.append((kind, set(partitions)))


def write(transport: Transport, records: Sequence[OutRecord], offsets: dict[TP, int] | None = None) -> None:
    """Send ``records`` in one committed batch."""
    transport.begin()
    for record in records:
        transport.send(record)
    transport.commit(offsets or {})


def poll_until(transport: Transport, count: int, max_records: int = 500) -> list[InRecord]:
    """Poll until ``count`` records came (fails at :data:`DEADLINE_S`)."""
    out: list[InRecord] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < count:
        assert time.monotonic() < deadline, f"polled {len(out)} of {count} records"
        out.extend(transport.poll(0.2, max_records))
    return out


def read_until(transport: Transport, topic: str, want: Sequence[bytes | None]) -> list[InRecord]:
    """``read_to_end`` of partition 0 until its values are ``want`` (fails at :data:`DEADLINE_S`)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        got = transport.read_to_end(topic, [0])
        if values(got) == list(want) or time.monotonic() > deadline:
            assert values(got) == list(want)
            return got


def by_partition(records: Sequence[InRecord]) -> dict[int, list[InRecord]]:
    """The records of each partition, in the order they came."""
    out: dict[int, list[InRecord]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r)
    return out


def poll_until_assigned(transport: Transport, recorder: Recorder, want: set[TP]) -> None:
    """Poll until the recorder's events leave ``want`` assigned (fails at :data:`DEADLINE_S`)."""
    deadline = time.monotonic() + DEADLINE_S
    while recorder.owned() != want:
        assert time.monotonic() < deadline, f"assigned {recorder.owned()}, waited for {want}"
        transport.poll(0.2, 500)


def follow_until(transport: Transport, topic: str, count: int) -> list[InRecord]:
    """Follow partition 0 of ``topic`` until ``count`` records came (fails at :data:`DEADLINE_S`)."""
    out: list[InRecord] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < count:
        assert time.monotonic() < deadline, f"followed {len(out)} of {count} records"
        out.extend(transport.follow(topic, 0))
    return out


def values(records: Sequence[InRecord]) -> list[bytes | None]:
    """The records' values, in order."""
    return [r.value for r in records]


def default_partition(key: bytes, partitions: int) -> int:
    """kafka-python's default partitioner for a keyed record (the oracle)."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


# ------------------------------------------------------------------------------------------------- the checks


def check_keyed_records_go_where_the_default_partitioner_sends_them(backend: Backend) -> None:
    """Keyed records: murmur2 of the key; an explicit partition wins; keyless ones land on some partition."""
    topic = backend.topic(3)
    writer = backend.transport(topic)
    keys = [f"c{i}".encode() for i in range(30)] + ["kunde-\u00e9".encode(), b""]
    write(
        writer,
        [OutRecord(topic, key, b"hashed") for key in keys]
        + [OutRecord(topic, b"c0", b"pinned", partition=2), OutRecord(topic, None, b"keyless")],
    )
    got = writer.read_to_end(topic, [0, 1, 2], stable=True)
    hashed = {r.key: r.partition for r in got if r.value == b"hashed"}
    assert hashed == {key: default_partition(key, 3) for key in keys}
    assert [r.partition for r in got if r.value == b"pinned"] == [2]
    assert [r.partition in (0, 1, 2) for r in got if r.value == b"keyless"] == [True]


def check_a_batch_is_visible_only_after_commit_and_an_aborted_one_never(backend: Backend) -> None:
    """read_committed readers (restore, follow) see a batch at its commit; each batch takes a marker offset."""
    topic = backend.topic()
    writer, reader = backend.transport(topic, Member(group="w")), backend.transport(topic, Member(group="r"))
    write(writer, [OutRecord(topic, b"k", b"first")])
    writer.begin()
    writer.send(OutRecord(topic, b"k", b"pending"))
    backend.flush(writer)
    assert values(reader.read_to_end(topic, [0])) == [b"first"]
    writer.commit({})
    read_until(reader, topic, [b"first", b"pending"])
    writer.begin()
    writer.send(OutRecord(topic, b"k", b"aborted"))
    backend.flush(writer)
    writer.abort()
    write(writer, [OutRecord(topic, b"k", b"last")])
    got = read_until(reader, topic, [b"first", b"pending", b"last"])
    assert [r.offset for r in got] == [0, 2, 6], "every batch's records, then one marker offset"
    assert values(follow_until(reader, topic, 3)) == [b"first", b"pending", b"last"]
    write(writer, [OutRecord(topic, b"k", b"more")])
    assert values(follow_until(reader, topic, 1)) == [b"more"], "follow returns only what is new"


def check_an_open_batch_hides_later_commits_until_it_ends(backend: Backend) -> None:
    """The last stable offset: records committed after an open batch's first one wait for its end."""
    topic = backend.topic()
    slow, fast = backend.transport(topic, Member(group="slow")), backend.transport(topic, Member(group="fast"))
    reader = backend.transport(topic, Member(group="r"))
    write(slow, [OutRecord(topic, b"k", b"before")])
    read_until(reader, topic, [b"before"])
    slow.begin()
    slow.send(OutRecord(topic, b"k", b"open"))
    backend.flush(slow)
    write(fast, [OutRecord(topic, b"k", b"after")])
    assert values(reader.read_to_end(topic, [0])) == [b"before"]
    slow.commit({})
    read_until(reader, topic, [b"before", b"open", b"after"])  # in offset order, not commit order
    slow.begin()
    slow.send(OutRecord(topic, b"k", b"doomed"))
    backend.flush(slow)
    write(fast, [OutRecord(topic, b"k", b"late")])
    assert values(reader.read_to_end(topic, [0])) == [b"before", b"open", b"after"]
    slow.abort()
    everything = [b"before", b"open", b"after", b"late"]
    read_until(reader, topic, everything)
    assert values(reader.read_to_end(topic, [0], stable=True)) == everything


def check_a_successor_aborts_the_batch_its_predecessor_left_open(backend: Backend) -> None:
    """A transport closed inside a batch: its successor (same member, same transactional id) aborts the batch."""
    topic = backend.topic()
    member = Member(group="w")
    reader = backend.transport(topic, Member(group="r"))
    predecessor = backend.transport(topic, member)
    write(predecessor, [OutRecord(topic, b"k", b"before")])
    predecessor.begin()
    predecessor.send(OutRecord(topic, b"k", b"doomed"))
    backend.flush(predecessor)
    predecessor.close()
    write(backend.transport(topic, member), [OutRecord(topic, b"k", b"after")])
    read_until(reader, topic, [b"before", b"after"])
    assert values(reader.read_to_end(topic, [0], stable=True)) == [b"before", b"after"]


def check_at_least_once_batches_are_no_transactions(backend: Backend) -> None:
    """At-least-once: a sent record stays sent (abort takes nothing back), offsets have no markers, commit commits."""
    topic = backend.topic()
    tp = TP(topic, 0)
    writer = backend.transport(topic, Member(group="w", exactly_once=False))
    reader = backend.transport(topic, Member(group="r"))
    writer.begin()
    writer.send(OutRecord(topic, b"k", b"sent"))
    backend.flush(writer)
    writer.abort()
    write(writer, [OutRecord(topic, b"k", b"committed")])
    got = read_until(reader, topic, [b"sent", b"committed"])
    assert [r.offset for r in got] == [0, 1]
    consumer = backend.transport(topic, Member(exactly_once=False))
    assert values(poll_until(consumer, 2)) == [b"sent", b"committed"]
    write(consumer, [], {tp: 2})
    assert consumer.rewind([tp]) == {tp: 2}
    assert consumer.lag({tp: 2}) == {tp: 0}


def check_read_to_end_gives_every_version_of_a_compacted_topic(backend: Backend) -> None:
    """Each partition in offset order (partitions may interleave), tombstones included: a key's last is its newest.

    ``stable=True`` reads up to the high watermark, so it also waits for the
    commit markers of batches committed just before (see the module's note).
    """
    topic = backend.topic(2, compacted=True)
    writer = backend.transport(topic)
    write(
        writer,
        [
            OutRecord(topic, b"k1", b"v1", partition=0),
            OutRecord(topic, b"k2", b"v1", partition=0),
            OutRecord(topic, b"k1", b"v2", partition=0),
            OutRecord(topic, b"k3", b"x", partition=1),
        ],
    )
    write(writer, [OutRecord(topic, b"k2", None, partition=0), OutRecord(topic, b"k1", b"v3", partition=0)])
    everything = writer.read_to_end(topic, [0, 1], stable=True)
    parts = by_partition(everything)
    assert [(r.key, r.value) for r in parts[0]] == [
        (b"k1", b"v1"),
        (b"k2", b"v1"),
        (b"k1", b"v2"),
        (b"k2", None),
        (b"k1", b"v3"),
    ]
    assert {r.key: r.value for r in parts[0]} == {b"k1": b"v3", b"k2": None}
    offsets = [r.offset for r in parts[0]]
    assert offsets == sorted(set(offsets))
    assert [(r.key, r.value) for r in parts[1]] == [(b"k3", b"x")]
    assert writer.read_to_end(topic, [0]) == parts[0]
    assert writer.read_to_end(topic, [1]) == parts[1]
    assert writer.read_to_end(topic, []) == []


def check_read_to_end_of_a_partition_the_topic_lacks_is_a_setup_error(backend: Backend) -> None:
    """A state topic with fewer partitions than the input (the input grew) stops the restore with its reason."""
    topic = backend.topic(2, compacted=True)
    reader = backend.transport(topic)
    with pytest.raises(TopicSetupError, match=rf"topic {topic} has 2 partitions: no partition 2, 3"):
        reader.read_to_end(topic, [0, 2, 3], stable=True)
    assert reader.read_to_end(topic, [0, 1]) == []  # the transport goes on


def check_a_group_resumes_at_its_committed_offsets(backend: Backend) -> None:
    """commit(offsets) inside a batch is what rewind returns, to this transport and to the group's next member."""
    topic = backend.topic(2)
    p0, p1 = TP(topic, 0), TP(topic, 1)
    write(
        backend.transport(topic, Member(group="w")),
        [OutRecord(topic, b"k", f"a{i}".encode(), partition=0) for i in range(3)]
        + [OutRecord(topic, b"k", f"b{i}".encode(), partition=1) for i in range(2)],
    )
    consumer = backend.transport(topic)
    assert sorted(r.value or b"" for r in poll_until(consumer, 5)) == [b"a0", b"a1", b"a2", b"b0", b"b1"]
    write(consumer, [], {p0: 2})
    assert consumer.rewind([p0, p1]) == {p0: 2, p1: 0}
    again = poll_until(consumer, 3)
    assert sorted((r.partition, r.offset, r.value) for r in again) == [(0, 2, b"a2"), (1, 0, b"b0"), (1, 1, b"b1")]
    consumer.close()
    recorder = Recorder()
    successor = backend.transport(topic, LONE, recorder)
    poll_until_assigned(successor, recorder, {p0, p1})
    assert successor.rewind([p0, p1]) == {p0: 2, p1: 0}


def check_lag_counts_to_the_high_watermark(backend: Backend) -> None:
    """lag is the high watermark minus the position: batch markers count, so a read-out partition may be 1 behind."""
    topic = backend.topic()
    tp = TP(topic, 0)
    writer = backend.transport(topic, Member(group="w"))
    write(writer, [OutRecord(topic, b"k", b"x"), OutRecord(topic, b"k", b"y")])
    write(writer, [OutRecord(topic, b"k", b"z")])
    consumer = backend.transport(topic)
    assert [r.offset for r in poll_until(consumer, 3)] == [0, 1, 3]
    assert consumer.lag({tp: 0}) == {tp: 5}
    assert consumer.lag({tp: 4}) == {tp: 1}
    assert consumer.lag({tp: 5}) == {tp: 0}


def check_assignment_is_told_to_the_handler(backend: Backend) -> None:
    """A lone member is assigned every input partition at its first polls and has them revoked at close."""
    topic = backend.topic(2)
    everything = {TP(topic, 0), TP(topic, 1)}
    recorder = Recorder()
    consumer = backend.transport(topic, LONE, recorder)
    poll_until_assigned(consumer, recorder, everything)
    assert recorder.events == [("assigned", everything)]
    consumer.close()
    assert recorder.events == [("assigned", everything), ("revoked", everything)]


def check_a_second_member_takes_a_share_after_everything_is_revoked(backend: Backend) -> None:
    """An eager rebalance when a member joins: the first loses everything, then each owns a disjoint share."""
    topic = backend.topic(2)
    everything = {TP(topic, 0), TP(topic, 1)}
    first_seen, second_seen = Recorder(), Recorder()
    first = backend.transport(topic, Member(name="0"), first_seen)
    poll_until_assigned(first, first_seen, everything)
    second = backend.transport(topic, Member(name="1"), second_seen)
    deadline = time.monotonic() + DEADLINE_S
    while not (first_seen.owned() and second_seen.owned() and first_seen.owned() | second_seen.owned() == everything):
        assert time.monotonic() < deadline, f"first owns {first_seen.owned()}, second {second_seen.owned()}"
        first.poll(0.1, 500)
        second.poll(0.1, 500)
    assert first_seen.owned().isdisjoint(second_seen.owned())
    assert first_seen.events == [("assigned", everything), ("revoked", everything), ("assigned", first_seen.owned())]
    assert second_seen.events == [("assigned", second_seen.owned())]


def check_headers_round_trip(backend: Backend) -> None:
    """Header order, repeated names and empty values survive a batch, a poll, a restore and a follow."""
    topic = backend.topic()
    headers: Headers = (("trace", b"t-1"), ("trace", b"t-2"), ("empty", b""), ("n\u00e4me", "\u00e9".encode()))
    write(
        backend.transport(topic, Member(group="w")),
        [OutRecord(topic, b"k", b"v", headers), OutRecord(topic, b"k", b"w")],
    )
    reader = backend.transport(topic)
    for got in (reader.read_to_end(topic, [0], stable=True), poll_until(reader, 2), follow_until(reader, topic, 2)):
        assert [r.headers for r in got] == [headers, ()]


def check_poll_returns_at_most_max_records_in_offset_order(backend: Backend) -> None:
    """Every poll holds at most max_records; together they hold each record once, each partition in order."""
    topic = backend.topic(2)
    layout = [0, 1, 0, 1, 0, 0, 1]
    write(
        backend.transport(topic, Member(group="w")),
        [OutRecord(topic, b"k", f"r{i}".encode(), partition=p) for i, p in enumerate(layout)],
    )
    consumer = backend.transport(topic)
    polls: list[list[InRecord]] = []
    deadline = time.monotonic() + DEADLINE_S
    while sum(map(len, polls)) < len(layout):
        assert time.monotonic() < deadline, f"polled {sum(map(len, polls))} of {len(layout)} records"
        polls.append(consumer.poll(0.2, 3))
    assert max(map(len, polls)) <= 3
    got = [r for batch in polls for r in batch]
    for partition in (0, 1):
        mine = [r for r in got if r.partition == partition]
        assert values(mine) == [f"r{i}".encode() for i, p in enumerate(layout) if p == partition]
        assert [r.offset for r in mine] == sorted({r.offset for r in mine})


def check_send_many_is_send_on_each_record_in_order(backend: Backend) -> None:
    """``send_many`` puts each record where ``send`` would, headers and tombstones kept, each partition in order."""
    topic = backend.topic(3)
    writer = backend.transport(topic)
    records = [
        OutRecord(topic, f"c{i % 7}".encode(), f"v{i}".encode(), (("h", b"x"),) if i % 3 == 0 else ())
        for i in range(40)
    ]
    records += [
        OutRecord(topic, b"c1", None),
        OutRecord(topic, None, b"pinned", partition=1),
        OutRecord(topic, b"c2", b"p0", partition=0),
    ]
    writer.begin()
    writer.send_many(records[:20])
    writer.send(records[20])
    writer.send_many(iter(records[21:]))
    writer.send_many([OutRecord(topic, None, b"keyless")])
    writer.commit({})
    got = by_partition(writer.read_to_end(topic, [0, 1, 2], stable=True))
    for partition in (0, 1, 2):
        want = [
            (r.key, r.value, r.headers)
            for r in records
            if (r.partition if r.partition is not None else default_partition(r.key or b"", 3)) == partition
        ]
        assert [(r.key, r.value, r.headers) for r in got.get(partition, []) if r.value != b"keyless"] == want
    assert sum(r.value == b"keyless" for part in got.values() for r in part) == 1


CHECKS: list[Callable[[Backend], None]] = [
    check_keyed_records_go_where_the_default_partitioner_sends_them,
    check_a_batch_is_visible_only_after_commit_and_an_aborted_one_never,
    check_an_open_batch_hides_later_commits_until_it_ends,
    check_a_successor_aborts_the_batch_its_predecessor_left_open,
    check_at_least_once_batches_are_no_transactions,
    check_read_to_end_gives_every_version_of_a_compacted_topic,
    check_read_to_end_of_a_partition_the_topic_lacks_is_a_setup_error,
    check_a_group_resumes_at_its_committed_offsets,
    check_lag_counts_to_the_high_watermark,
    check_assignment_is_told_to_the_handler,
    check_a_second_member_takes_a_share_after_everything_is_revoked,
    check_headers_round_trip,
    check_poll_returns_at_most_max_records_in_offset_order,
    check_send_many_is_send_on_each_record_in_order,
]
"""Every check of the contract; each implementation's test runs them all."""


def check_id(check: Callable[[Backend], None]) -> str:
    """A check's test id: its name without ``check_``."""
    return check.__name__.removeprefix("check_")
