"""The service's membership-table records: per changed customer and batch, in the input partition, restored."""

from __future__ import annotations

import json

from consumer.sink import InRecord
from tests.unit.consumer.conftest import event, make_harness


def test_one_record_per_changed_customer_and_batch_in_its_input_partition_and_a_tombstone_on_erasure() -> None:
    h = make_harness(2, "--topics.membership", "members")
    t = h.transport
    t.produce_input(b"c1", event(0, "c1"), partition=0)
    t.produce_input(b"c1", event(1, "c1"), partition=0)
    t.produce_input(b"c2", event(2, "c2"), partition=1)
    t.produce_input(b"c2", None, partition=1)  # a tombstone erases c2
    h.run()
    records = t.records("members")
    by_key = [(r.partition, r.key, None if r.value is None else json.loads(r.value)) for r in records]
    # batch size 3: c1's two changes in the first batch make one record; c2 changed there and is erased later
    assert [(p, k) for p, k, _ in by_key] == [(0, b"c1"), (1, b"c2"), (1, b"c2")]
    c1 = by_key[0][2]
    assert c1 == {
        "customer_id": "c1",
        "updated_at": "2026-02-01T12:00:00+00:00",
        "segments": {"x": {"id": "x-2", "name": "n", "since": "2026-01-01T00:01:00+00:00", "model_version": 1}},
    }
    assert by_key[-1][2] is None


def test_a_restarted_service_restores_the_table_of_its_partitions() -> None:
    h = make_harness(1, "--topics.membership", "members")
    t = h.transport
    t.produce_input(b"c1", event(0, "c1"))
    h.run()
    [first] = t.records("members")
    previous = json.loads(first.value or b"")
    other_lens = {"id": "y-3", "name": "m", "since": "2025-12-01T00:00:00+00:00", "model_version": 7}
    previous["segments"]["y"] = other_lens  # as written by a run whose core had a second lens
    parts = t.topics["members"]
    parts[0].append(InRecord("members", 0, len(parts[0]), b"c1", json.dumps(previous).encode()))
    t.produce_input(b"c1", event(1, "c1"))
    h.run()
    latest = json.loads(t.records("members")[-1].value or b"")
    assert latest["segments"]["y"] == other_lens, "the lens unchanged in this run comes from the restored table"
    assert latest["segments"]["x"]["id"] == "x-2"
