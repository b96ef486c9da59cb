"""The event-time edge on the real broker: a multi-partition backlog, and an event dated a year ahead."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from kafka import KafkaProducer

from consumer.kafka_io import KafkaTransport
from consumer.sink import TP
from producer.backlog import backlog_order, kafka_partition
from producer.retail import SparseConfig, SparseRetail
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from tests.integration.conftest import read_all
from tests.integration.consumer_support import (
    committed_offset,
    it_config,
    make_events,
    metric_value,
    service_thread,
    settings_for,
    wait_for,
)


def _sparse_stream(customers: int, seed: int) -> list[tuple[bytes, bytes]]:
    gen = SparseRetail(SparseConfig(customers=customers, days=400, seed=seed))
    return [(e.key, json.dumps(e.event).encode()) for e in gen.events()]


def _offline_run(events: list[tuple[bytes, bytes]]) -> tuple[Counter[str], int]:
    """One core fed ``events`` in stream order, as from one partition: (refusals by reason, accepted events)."""
    core = Segmenter(it_config())
    result = core.process_batch([parse_event(v) for _, v in events], [0] * len(events))
    return Counter(error.reason for _, error in result.errors), core.stats().events


@pytest.mark.parametrize("order", ["partitions", "blocks"])
def test_a_fresh_group_on_a_three_partition_backlog_refuses_nothing(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer, order: str
) -> None:
    inp, out, dlq = new_topic(partitions=3, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = _sparse_stream(900, seed=11)
    sent = [
        events[i]
        for i in backlog_order(
            [k for k, _ in events],
            order,  # type: ignore[arg-type]
            partitions=3,
            block_customers=150,
        )
    ]
    for key, value in sent:  # the default partitioner: partition kafka_partition(key, 3), in send order
        plain_producer.send(inp, value, key=key)
    plain_producer.flush()
    sizes = Counter(kafka_partition(k, 3) for k, _ in sent)
    assert len(sizes) == 3
    expected, accepted = _offline_run(events)
    settings = settings_for(bootstrap, group_id, inp, out, dlq, "--batch-size", "200")
    with service_thread(settings) as (_, metrics):
        wait_for(
            lambda: all(committed_offset(bootstrap, group_id, inp, p) == sizes[p] for p in range(3)),
            120,
            "every partition's offsets committed",
        )
        refused = {
            reason: metric_value(metrics, "segmenter_events_rejected_total", {"reason": reason})
            for reason in ("late", "future", "schema")
        }
    letters = read_all(bootstrap, dlq, timeout_s=3)
    reasons = Counter(h["error"].decode() for _, _, h in letters)
    print(
        f"backlog ({order}): {len(events)} events, partitions {dict(sorted(sizes.items()))}, "
        f"dead letters {dict(reasons)}, offline refusals {dict(expected)}"
    )
    # sparse customers come back after gaps of days: isolated until a quorum follows, never refused
    assert (sum(expected.values()), accepted) == (0, len(events))  # one partition, in time order: everything
    assert (dict(reasons), refused) == ({}, {"late": 0, "future": 0, "schema": 0})  # the backlog: the same
    assert metric_value(metrics, "segmenter_events_in_total") == len(events)


def test_an_event_a_year_ahead_of_its_record_timestamp_is_dead_lettered_and_the_partition_goes_on(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = make_events(400, start=start)
    bad_at = 200
    stamps = [int((start + timedelta(minutes=5 * i)).timestamp() * 1000) for i in range(len(events))]
    bad = json.loads(events[bad_at][1])
    bad["ts"] = (datetime.fromisoformat(bad["ts"]) + timedelta(days=365)).isoformat()
    events[bad_at] = (events[bad_at][0], json.dumps(bad).encode())
    for (key, value), ts in zip(events, stamps, strict=True):
        plain_producer.send(inp, value, key=key, timestamp_ms=ts)
    plain_producer.flush()
    settings = settings_for(bootstrap, group_id, inp, out, dlq, "--batch-size", "50")
    with service_thread(settings) as (_, metrics):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(events), 60, "all offsets committed")
    letters = read_all(bootstrap, dlq, expect=1, timeout_s=10)
    assert [(h["error"], h["source_offset"]) for _, _, h in letters] == [(b"future", str(bad_at).encode())]
    assert letters[0][1] == events[bad_at][1]
    reason = letters[0][2]["reason"].decode()
    assert bad["ts"] in reason and "365d" in reason and "Kafka timestamp" in reason  # the edge refused it
    assert metric_value(metrics, "segmenter_events_rejected_total", {"reason": "future"}) == 1
    assert metric_value(metrics, "segmenter_events_rejected_total", {"reason": "late"}) == 0
    outputs = [json.loads(v or b"") for _, v, _ in read_all(bootstrap, out, timeout_s=5)]
    later = {json.loads(v)["event_id"] for _, v in events[bad_at + 1 :]}
    assert any(o.get("cause_event_id") in later for o in outputs)  # later events were processed


class _Assignments:
    """A rebalance handler that only records the assignment."""

    def __init__(self) -> None:
        self.assigned: set[TP] = set()

    def on_revoked(self, partitions: set[TP]) -> None:
        self.assigned -= partitions

    def on_assigned(self, partitions: set[TP]) -> None:
        self.assigned |= partitions

    def on_lost(self, partitions: set[TP]) -> None:
        self.assigned -= partitions


def test_a_partition_is_caught_up_once_every_record_up_to_its_end_offset_was_polled(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(partitions=2, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    for i in range(30):
        plain_producer.send(inp, b"x%d" % i, key=b"k", partition=0)
    plain_producer.flush()
    handler = _Assignments()
    transport = KafkaTransport(settings_for(bootstrap, group_id, inp, out, dlq, "--batch-size", "10"), handler)
    both = {TP(inp, 0), TP(inp, 1)}
    try:
        assert transport.caught_up(both) == set()  # nothing fetched yet: not idle
        seen: list[int] = []
        states: list[tuple[int, set[TP]]] = []  # (records of partition 0 polled so far, caught up) per poll

        def poll() -> bool:
            seen.extend(r.offset for r in transport.poll(0.5, 10) if r.partition == 0)
            states.append((len(seen), transport.caught_up(both)))
            return states[-1] == (30, both)

        wait_for(poll, 60, "both partitions read to their end")
        assert any(n < 30 for n, _ in states)  # polled 10 at a time: partition 0 had records left
        assert all(TP(inp, 0) not in caught for n, caught in states if n < 30)
        plain_producer.send(inp, b"more", key=b"k", partition=1)
        plain_producer.flush()
        wait_for(lambda: any(r.partition == 1 for r in transport.poll(0.5, 10)), 30, "the new record")
        assert transport.caught_up(both) == both
    finally:
        transport.close()
