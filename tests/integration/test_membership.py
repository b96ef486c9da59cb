"""The membership table on the real broker: it equals the last segment_change per customer and lens."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer

from segmenter.membership import comparable, table_from_changes
from tests.integration.conftest import read_all
from tests.integration.consumer_support import (
    committed_offset,
    make_events,
    produce,
    service_thread,
    settings_for,
    wait_for,
)

START = datetime(2026, 1, 1, tzinfo=UTC)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    return sum(committed_offset(bootstrap, group, topic, p) for p in range(partitions))


def test_membership_topic_rebuilds_the_last_segment_change_per_customer_and_lens(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(3, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    membership = f"{out}.membership"
    first = make_events(900, customers=60, seed=11)
    # the second half starts after the lenses' minimum dwell (6 days of event time), so customers can move again
    restart = START + timedelta(days=10)
    second = make_events(900, customers=60, seed=12, start=restart)
    erase_by_event = json.dumps(
        {
            "event_id": "erase-c3",
            "customer_id": "c3",
            "type": "erasure_request",
            "ts": (restart + timedelta(minutes=5 * 901)).isoformat(),
        }
    ).encode()
    settings = settings_for(bootstrap, group_id, inp, out, dlq, "--batch-size", "150")
    produce(plain_producer, inp, list(first))
    with service_thread(settings):
        wait_for(lambda: committed_total(bootstrap, group_id, inp, 3) == len(first), 90, "first half committed")
    # a restarted service must restore the table: a record written now carries the lenses unchanged since
    produce(plain_producer, inp, [*second, (b"c3", erase_by_event), (b"c4", None)])
    with service_thread(settings):
        wait_for(
            lambda: committed_total(bootstrap, group_id, inp, 3) == len(first) + len(second) + 2,
            90,
            "second half committed",
        )

    outputs = [orjson.loads(v or b"") for _, v, _ in read_all(bootstrap, out)]
    expected = table_from_changes(outputs)
    records = read_all(bootstrap, membership)
    rebuilt: dict[str, dict[str, dict[str, Any]] | None] = {}
    updated: dict[str, str] = {}
    for key, value, _ in records:
        assert key is not None
        cid = key.decode()
        if value is None:
            rebuilt[cid] = None
            continue
        record = orjson.loads(value)
        assert record["customer_id"] == cid
        rebuilt[cid] = record["segments"]
        updated[cid] = record["updated_at"]
    # the contract's comparison: ids and model versions always, since where the last move was caused by an event
    compared = comparable(rebuilt, expected)
    assert len(expected) > 40, "the stream must assign most customers"
    assert compared == expected
    assert rebuilt["c3"] is None and rebuilt["c4"] is None, "erasure (event and tombstone) writes a tombstone"
    # records changed in the second run kept lenses whose segment was set in the first run
    boundary = restart.isoformat()
    kept = [
        cid
        for cid, segs in rebuilt.items()
        if segs and min(e["since"] for e in segs.values()) < boundary <= max(e["since"] for e in segs.values())
    ]
    assert kept, "no record mixes lenses from both runs: the restore path is not exercised"
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        assert len(probe.partitions_for_topic(membership) or ()) == 3, "co-partitioned with the input"
    finally:
        probe.close()
