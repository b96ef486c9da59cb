"""The core's per-customer partition and membership columns, and rows of new customers allocated per batch."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from segmenter.batching import EventColumns
from segmenter.id_index import IdIndex
from segmenter.outputs import SegmentChange
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_membership_value import membership_entries
from tests.unit.test_pipeline import CFG


def _ev(event_id: str, customer: str, ts: str, etype: str = "session_start") -> dict[str, Any]:
    return {"event_id": event_id, "customer_id": customer, "type": etype, "ts": ts}


def test_id_index_batch_insert_and_removal_agree_with_a_dict() -> None:
    rnd = random.Random(5)
    index, ref = IdIndex(), dict[str, int]()
    next_row = 0
    for _ in range(6):
        ids = list({f"c{rnd.randrange(10**6)}-{'x' * rnd.randrange(8)}" for _ in range(3000)} - set(ref))
        rows = np.arange(next_row, next_row + len(ids), dtype=np.int64)
        next_row += len(ids)
        index.add_many(ids, rows)
        ref.update(zip(ids, rows.tolist(), strict=True))
        gone = rnd.sample(sorted(ref), len(ref) // 3)
        index.remove_rows(np.array([ref.pop(c) for c in gone], np.int64))
        probe = [*rnd.sample(sorted(ref), 500), *gone[:500]]
        assert index.get_many(probe).tolist() == [ref.get(c, -1) for c in probe]
        assert len(index) == len(ref)
    assert all(index.id_of(r) == c for c, r in ref.items())
    held = next(iter(ref))
    with pytest.raises(KeyError, match="already indexed"):
        index.add_many(["brand-new", held], np.array([next_row, next_row + 1], np.int64))
    assert index.get("brand-new") == next_row and len(index) == len(ref) + 1


def test_new_customers_of_a_batch_get_rows_before_the_loop_and_refused_ones_none() -> None:
    seg = Segmenter(CFG)
    known = [_ev(f"k{i}", f"k{i}", "2026-03-01T00:00:00Z") for i in range(8)]
    known += [
        {"event_id": f"x{c}", "customer_id": c, "type": "erasure_request", "ts": "2026-03-01T00:05:00Z"}
        for c in ("gone", "far2")
    ]  # customers never held: erasure markers only
    seg.process_batch(to_events(known), [0] * len(known))
    seg.take_changes()
    held = len(seg.store)
    batch = to_events([
        _ev("n1", "n1", "2026-03-01T00:10:00Z"),
        _ev("g1", "gone", "2026-03-01T00:01:00Z"),  # before its erasure: dropped, never applied
        _ev("n2", "n2", "2026-03-01T00:20:00Z"),
        _ev("f2", "far2", "2026-03-01T00:02:00Z"),  # dropped too (its row reserved, unused), then erased
        {"event_id": "x", "customer_id": "far2", "type": "erasure_request", "ts": "2026-03-01T00:30:00Z"},
    ])  # fmt: skip
    result = seg.process_batch(batch, [0] * len(batch))
    assert result.errors == [] and result.dropped == [1, 3]
    assert "gone" not in seg.store and "far2" not in seg.store, "a customer with no applied event is not held"
    assert len(seg.store) == held + 2
    assert [(c, r is None, p) for c, r, p in seg.take_changes()] == [("n1", False, 0), ("n2", False, 0)]
    assert seg.stats().erasures == 0, "erasing a customer not held (its row only reserved) is a no-op"
    # the freed rows are reused, and the index still finds everyone
    seg.process_batch(to_events([_ev("n3", "n3", "2026-03-01T00:40:00Z")]), [0])
    assert all(c in seg.store for c in ("k0", "k7", "n1", "n2", "n3"))
    assert seg.store.capacity >= len(seg.store) == held + 3


def test_a_customer_erased_and_seen_again_in_one_batch_gets_a_new_row() -> None:
    seg = Segmenter(CFG)
    raw = [
        {"event_id": "x0", "customer_id": "c1", "type": "erasure_request", "ts": "2026-03-01T00:00:00Z"},
        _ev("a", "c1", "2026-03-01T01:00:00Z"),
        {"event_id": "x1", "customer_id": "c1", "type": "erasure_request", "ts": "2026-03-01T02:00:00Z"},
        _ev("a", "c1", "2026-03-01T03:00:00Z"),  # same event id: a new customer, not a duplicate
    ]
    seg.process_batch(to_events(raw), [2] * len(raw))
    row = seg.store.row_of("c1")
    assert row is not None and int(seg.store.t[row, 0]) == seg.store.to_seconds(
        datetime(2026, 3, 1, 3, tzinfo=UTC).timestamp()
    )
    assert seg.stats().duplicates == 0
    assert [(c, r is None, p) for c, r, p in seg.take_changes()] == [("c1", False, 2)]


def test_drop_partitions_forgets_exactly_the_customers_of_those_partitions() -> None:
    seg = Segmenter(CFG)
    events = to_events(make_events(300, 60, seed=4))
    sources = [sum(e.customer_id.encode()) % 3 for e in events]
    seg.process_batch(events, sources)
    before = dict(seg.take_dirty())
    views = {c: seg.customer_view(c) for c in before}
    assert seg.drop_partitions([1]) == sum(1 for c in before if sum(c.encode()) % 3 == 1)
    assert {c for c in before if c in seg.store} == {c for c in before if sum(c.encode()) % 3 != 1}
    kept = [c for c in before if c in seg.store]
    assert {c: seg.take_dirty().get(c) for c in kept} == dict.fromkeys(kept), "nothing else changed"
    assert {c: seg.customer_view(c) for c in kept} == {c: views[c] for c in kept}
    # the dropped customers can come back (their owner restores them; here: a new event)
    again = [c for c in before if sum(c.encode()) % 3 == 1][:5]
    latest = max(e.ts for e in events).isoformat()
    result = seg.process_batch(to_events([_ev(f"z{c}", c, latest) for c in again]), [1] * 5)
    assert not result.errors
    assert all(c in seg.store for c in again)
    assert seg.drop_partitions([0, 2]) == len(kept) and len(seg.store) == 5


def _late(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same events with every 4th of each customer delivered after that customer's next one (late)."""
    held: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    out = []
    for event in events:
        cid = event["customer_id"]
        seen[cid] = seen.get(cid, 0) + 1
        if seen[cid] % 4 == 0:
            held[cid] = event
            continue
        out.append(event)
        if cid in held:
            out.append(held.pop(cid))
    return out + list(held.values())


@pytest.mark.parametrize("late", [False, True], ids=["in-order", "late-within-lateness"])
def test_membership_equals_the_last_segment_change_per_customer_and_lens(late: bool) -> None:
    """Segment id and model version of the last change; ``since`` its event time (model moves: the customer's).

    A late event (within the allowed lateness) that moves a customer dates the move from its own time, the
    change's ``event_ts``, not from the customer's latest event.
    """
    seg = Segmenter(CFG)
    raw = make_events(1500, 80, seed=9)
    events = to_events(_late(raw) if late else raw)
    table: dict[str, dict[str, tuple[str, int | None, int]] | None] = {}
    for lo in range(0, len(events), 97):
        for m in seg.process_batch(events[lo : lo + 97]).outputs:
            if not isinstance(m, SegmentChange):
                continue
            if m.cause == "erasure":
                table[m.customer_id] = None
                continue
            segs = table.get(m.customer_id) or {}
            if m.to_segment is None:
                segs.pop(m.lens, None)
            else:
                # a move for a model change is stamped with the change's time; the core keeps the customer's
                since = None if m.cause == "model" else int(datetime.fromisoformat(m.event_ts).timestamp())
                segs[m.lens] = (m.to_segment.id, since, m.model_version)
            table[m.customer_id] = segs
    versions = {v for segs in table.values() if segs for _, _, v in segs.values()}
    assert len(table) > 40 and len(versions) > 10, "the stream must move many customers across model versions"
    got = membership_entries(seg, sorted(table))
    names = {(lens.name, ref.id): ref.name for lens in seg.lenses for ref in map(lens.ref, lens.registry.segments)}
    assert all(names[(lens, e[0])] == e[1] for segs in got.values() if segs for lens, e in segs.items())
    assert {
        c: None
        if segs is None
        else {lens: (e[0], e[2] if table_since(table, c, lens) else None, e[3]) for lens, e in segs.items()}
        for c, segs in got.items()
    } == table


def table_since(table: dict[str, dict[str, tuple[str, int | None, int]] | None], cid: str, lens: str) -> bool:
    """True when the expected entry of ``cid`` in ``lens`` has a ``since`` (not a model move)."""
    entry = (table.get(cid) or {}).get(lens)
    return entry is not None and entry[1] is not None


def test_events_of_a_customer_on_another_partition_warn(caplog: pytest.LogCaptureFixture) -> None:
    seg = Segmenter(CFG)
    seg.process_batch(to_events([_ev("a", "c1", "2026-03-01T00:00:00Z"), _ev("b", "c2", "2026-03-01T00:00:00Z")]),
                      [0, 1])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="segmenter.batching"):
        seg.process_batch(to_events([_ev("c", "c1", "2026-03-01T00:01:00Z"), _ev("d", "c2", "2026-03-01T00:01:00Z")]),
                          [0, 1])  # fmt: skip
        assert not caplog.records
        seg.process_batch(to_events([_ev("e", "c1", "2026-03-01T00:02:00Z")]), [1])
    assert len(caplog.records) == 1 and "'c1' from 0 to 1" in caplog.text
    assert {c: p for c, _, p in seg.take_changes()} == {"c1": 1, "c2": 1}, "the changelog follows the latest event"


@pytest.mark.parametrize("source", [None, 3])
def test_a_batch_of_one_source_gets_the_columns_of_a_batch_of_many(source: int | None) -> None:
    erasure = _ev("b", "c2", "2026-03-01T00:01:00Z", "erasure_request")
    events = to_events([_ev("a", "c1", "2026-03-01T00:00:00Z"), erasure, _ev("c", "c3", "2026-03-01T00:02:00Z")])
    store = Segmenter(CFG)._store
    calls: list[int | None] = []

    def index(s: int | None) -> int:
        calls.append(s)
        return 7 if s == source else 9

    one = EventColumns(events, [source] * 3, store, index)
    assert calls == [source], "one look-up for the batch"
    many = EventColumns([*events, events[0]], [source] * 3 + [4], store, index)  # another source: per event
    assert one.srcs.tolist() == many.srcs[:3].tolist() == [7, 0, 7], "an erasure has no source index"
    assert one.parts.tolist() == many.parts[:3].tolist() == [-1 if source is None else source] * 3
    assert one.parts.dtype == many.parts.dtype == np.int16 and one.srcs.dtype == many.srcs.dtype == np.int64
    assert EventColumns(events[1:2], [source], store, index).srcs.tolist() == [0]
    assert len(calls) == 3, "no look-up for a batch without a valid event"
