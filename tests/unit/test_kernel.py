"""The compiled event loop: batch cuts never change a result, and its features equal the reference store's."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.errors import EventError
from segmenter.events import CustomerEvent, EventType
from segmenter.features import FeatureStore, event_kind
from segmenter.outputs import encode
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import CFG, EVENTS, RULES, small_config

SOURCES: list[int | None] = [sum(e.customer_id.encode()) % 3 for e in EVENTS]


def one_by_one(seg: Segmenter, events: list[CustomerEvent], sources: list[int | None]) -> list[bytes]:
    out: list[bytes] = []
    for e, s in zip(events, sources, strict=True):
        try:
            out.extend(encode(m) for m in seg.process(e, s))
        except EventError as exc:
            out.append(f"rejected {e.event_id} {exc.reason}".encode())
    return out


def in_batches(seg: Segmenter, events: list[CustomerEvent], sources: list[int | None], cuts: list[int]) -> list[bytes]:
    out: list[bytes] = []
    bounds = [0, *sorted(set(cuts)), len(events)]
    for lo, hi in itertools.pairwise(bounds):
        result = seg.process_batch(events[lo:hi], sources[lo:hi])
        errors = dict(result.errors)
        # outputs are not attributed to events; rejections are, so compare them in a stable form
        out.extend(encode(m) for m in result.outputs)
        out.extend(f"rejected {events[lo + i].event_id} {exc.reason}".encode() for i, exc in sorted(errors.items()))
    return out


def _normalise(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    return [x for x in lines if not x.startswith(b"rejected")], sorted(x for x in lines if x.startswith(b"rejected"))


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, len(EVENTS) - 1), max_size=40), st.booleans())
def test_batch_cuts_do_not_change_outputs_or_state(cuts: list[int], partitioned: bool) -> None:
    """Any cut of the stream into batches: the same outputs, rejections, counters and state as one event at a time."""
    sources: list[int | None] = list(SOURCES) if partitioned else [None] * len(EVENTS)
    ref = Segmenter(CFG, RULES)
    expected = one_by_one(ref, EVENTS, sources)
    seg = Segmenter(CFG, RULES)
    got = in_batches(seg, EVENTS, sources, cuts)
    assert _normalise(got) == _normalise(expected)
    assert seg.stats() == ref.stats()
    assert seg.take_dirty() == ref.take_dirty()
    assert seg.model_state() == ref.model_state()


def test_one_batch_reports_rejections_by_index() -> None:
    seg = Segmenter(CFG)
    base = {"customer_id": "c1", "type": "session_start"}
    events = [
        to_events([{**base, "event_id": "a", "ts": "2026-03-10T00:00:00Z"}])[0],
        to_events([{**base, "event_id": "b", "ts": "2026-03-01T00:00:00Z"}])[0],  # 9 days before: late
        to_events([{**base, "event_id": "a", "ts": "2026-03-10T00:00:00Z"}])[0],  # duplicate: no output, no error
        to_events([{**base, "event_id": "c", "ts": "2026-03-10T01:00:00Z"}])[0],
    ]
    result = seg.process_batch(events)
    assert [(i, e.reason) for i, e in result.errors] == [(1, "late")]
    stats = seg.stats()
    assert (stats.events, stats.late, stats.duplicates) == (2, 1, 1)
    with pytest.raises(ValueError, match="2 events but 1 sources"):
        seg.process_batch(events[:2], [None])


def test_erasure_inside_a_batch_starts_the_customer_afresh() -> None:
    seg = Segmenter(CFG)
    base = {"customer_id": "c1", "type": "purchase", "amount": 10.0}
    raw: list[dict[str, Any]] = [
        {**base, "event_id": "p1", "ts": "2026-03-01T00:00:00Z"},
        {"customer_id": "c1", "type": "erasure_request", "event_id": "x", "ts": "2026-03-01T01:00:00Z"},
        {**base, "event_id": "p1", "ts": "2026-03-01T02:00:00Z"},  # same id again: new customer, not a duplicate
    ]
    seg.process_batch(to_events(raw))
    store = seg.store
    row = store.row_of("c1")
    assert row is not None
    assert seg.stats().duplicates == 0 and seg.stats().erasures == 1
    assert float(store.f[row, 7]) == 1.0  # one lifetime purchase: the erased one is gone


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_compiled_features_equal_the_reference_store(seed: int) -> None:
    """Features after the compiled loop equal :meth:`FeatureStore.ingest` applied to the same events."""
    cfg = small_config(features__lateness_hours=24.0 * 30, inactivity__check_interval_hours=1e6)
    events = to_events(make_events(25, 6, seed=seed % 1000, disorder_s=7200, dup_rate=0.05, erase=2))
    seg = Segmenter(cfg)
    seg.process_batch(events)
    ref = FeatureStore(cfg.features, n_lenses=len(cfg.lenses))
    for e in events:
        if e.type is EventType.ERASURE_REQUEST:
            ref.remove(e.customer_id)
            continue
        row = ref.ingest(e.customer_id, e.event_id, event_kind(e.type), ref.to_seconds(e.epoch), e.amount)
        if row >= 0:
            ref.set_scored(row, ref.last_time(row))
    store = seg.store
    assert sorted(store.customer_ids()) == sorted(ref.customer_ids())
    for cid in ref.customer_ids():
        a, b = store.row_of(cid), ref.row_of(cid)
        assert a is not None and b is not None
        assert np.array_equal(store.f[a], ref.f[b]), cid
        assert np.array_equal(store.t[a], ref.t[b]), cid
        assert np.array_equal(store.h[a], ref.h[b]), cid
        assert store.vector(a, store.last_time(a)) == ref.vector(b, ref.last_time(b))
