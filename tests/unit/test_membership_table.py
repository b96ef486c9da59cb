"""MembershipTable: records from segment changes, pending until taken, tombstones on erasure, restore."""

from __future__ import annotations

import orjson

from segmenter.membership import MembershipTable
from segmenter.outputs import SegmentChange, SegmentRef


def change(cid: str, lens: str, to: str | None, ts: str, cause: str = "event", version: int = 1) -> SegmentChange:
    return SegmentChange(
        customer_id=cid,
        lens=lens,
        from_segment=None,
        to_segment=None if to is None else SegmentRef(id=to, name=f"name of {to}"),
        cause=cause,
        cause_event_id=None,
        event_ts=ts,
        emitted_at=f"emitted {ts}",
        model_version=version,
        distance=None,
        features={},
        explanation=None,
    )


def test_a_record_holds_every_lens_with_the_since_of_the_change_that_set_it() -> None:
    table = MembershipTable()
    table.apply(change("c1", "value", "value-1", "t1"))
    table.apply(change("c1", "engagement", "engagement-2", "t2", version=4))
    [(cid, value)] = table.take()
    assert cid == "c1" and value is not None
    table.apply(change("c1", "value", "value-3", "t5"))
    [(_, value)] = table.take()
    assert orjson.loads(value or b"") == {
        "customer_id": "c1",
        "segments": {
            "engagement": {"id": "engagement-2", "name": "name of engagement-2", "since": "t2", "model_version": 4},
            "value": {"id": "value-3", "name": "name of value-3", "since": "t5", "model_version": 1},
        },
        "updated_at": "emitted t5",
    }
    assert table.take() == []


def test_discard_forgets_an_aborted_batch_and_erasure_is_a_tombstone() -> None:
    table = MembershipTable()
    table.apply(change("c1", "value", "value-1", "t1"))
    table.take()
    table.apply(change("c1", "value", "value-2", "t2"))
    table.discard()
    record = table.record("c1")
    assert record is not None and record.segments["value"].id == "value-1"
    table.apply(change("c1", "value", None, "t3", cause="erasure"))
    assert table.take() == [("c1", None)]
    assert table.record("c1") is None and len(table) == 0


def test_load_restores_records_and_tombstones() -> None:
    source = MembershipTable()
    source.apply(change("c1", "value", "value-1", "t1"))
    [(_, value)] = source.take()
    table = MembershipTable()
    assert table.load("c1", value)
    assert not table.load("c2", b"not a record")
    table.apply(change("c1", "engagement", "engagement-1", "t2"))
    [(_, again)] = table.take()
    assert set(orjson.loads(again or b"")["segments"]) == {"value", "engagement"}
    assert table.load("c1", None) and len(table) == 0
