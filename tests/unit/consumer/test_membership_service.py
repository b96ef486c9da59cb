"""The service's membership-table records: per changed customer and batch, from the core, keyed by customer id."""

from __future__ import annotations

import json
from typing import Any

from consumer.sink import murmur2
from tests.unit.consumer.conftest import event, make_harness


def test_one_record_per_changed_customer_and_batch_by_key_hash_and_a_tombstone_on_erasure() -> None:
    # batches close by size only: the harness's 1 ms commit interval could cut the first batch on a slow machine
    h = make_harness(2, "--topics.membership", "members", "--commit-interval-ms", "600000")
    t = h.transport
    t.produce_input(b"c1", event(0, "c1"), partition=0)
    t.produce_input(b"c1", event(1, "c1"), partition=0)
    t.produce_input(b"c2", event(2, "c2"), partition=1)
    t.produce_input(b"c2", None, partition=1)  # a tombstone erases c2
    h.run()
    records = t.records("members")
    by_key: dict[bytes | None, list[Any]] = {}
    for r in sorted(records, key=lambda r: r.offset):
        assert r.partition == (murmur2(r.key or b"") & 0x7FFFFFFF) % 2, "the key-hash partitioner"
        by_key.setdefault(r.key, []).append(None if r.value is None else json.loads(r.value))
    # batch size 3: c1's two changes in the first batch make one record; c2 changed there and is erased later
    assert {k: len(v) for k, v in by_key.items()} == {b"c1": 1, b"c2": 2}
    assert by_key[b"c1"][0] == {
        "customer_id": "c1",
        "updated_at": "2026-02-01T12:00:00+00:00",
        "segments": {"x": {"id": "x-2", "name": "n", "since": "2026-01-01T00:01:00+00:00", "model_version": 1}},
    }
    assert by_key[b"c2"][1] is None


def test_a_restarted_service_writes_records_from_the_restored_core_without_reading_the_table() -> None:
    h = make_harness(1, "--topics.membership", "members")
    t = h.transport
    t.produce_input(b"c1", event(0, "c1"))
    h.run()
    t.produce_input(b"c1", event(1, "c1"))
    h.run()
    latest = json.loads(t.records("members")[-1].value or b"")
    assert latest["segments"]["x"]["id"] == "x-2", "the restored core's count continues"
    assert [r.key for r in t.records("members")] == [b"c1", b"c1"]
