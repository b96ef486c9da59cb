"""Event time on real streams: per-customer lateness, the robust per-source clock, isolation, idleness, restore."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.config import default_config
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, parse_event
from segmenter.features import FEATURE_NAMES, NO_PENDING
from segmenter.lenses.hysteresis import Hysteresis
from segmenter.outputs import SegmentChange, SegmentRef, encode
from segmenter.pipeline import Segmenter
from segmenter.triggers.engine import TriggerEngine
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import CFG, RULES

STREAM = to_events(make_events(60, 30, seed=5))  # in order per customer
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ev(i: int, customer: str, hours: float) -> CustomerEvent:
    ts = (T0 + timedelta(hours=hours)).isoformat()
    return parse_event(
        json.dumps({"event_id": f"e{i}", "customer_id": customer, "type": "page_view", "ts": ts}).encode()
    )


def _source(ev: CustomerEvent) -> int:
    return zlib.crc32(ev.customer_id.encode()) % 3


def _lines(seg: Segmenter, events: list[CustomerEvent], sources: list[int | None]) -> list[bytes]:
    out: list[bytes] = []
    for lo in range(0, len(events), 97):
        result = seg.process_batch(events[lo : lo + 97], sources[lo : lo + 97])
        out.extend(encode(m) for m in result.outputs)
    return out


# -------------------------------------------------------------------------------------------- lateness


@settings(max_examples=8, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(1, 600)), max_size=40))
def test_interleaved_partitions_refuse_nothing_that_one_partition_accepts(runs: list[tuple[int, int]]) -> None:
    """Each customer's in-order history in its partition; partitions read in any interleaving: nothing is late."""
    queues: list[list[CustomerEvent]] = [[], [], []]
    for ev in STREAM:
        queues[_source(ev)].append(ev)
    events: list[CustomerEvent] = []
    for p, n in [*runs, (0, len(STREAM)), (1, len(STREAM)), (2, len(STREAM))]:  # then drain what is left
        events.extend(queues[p][:n])
        del queues[p][:n]
    single = Segmenter(CFG)
    _lines(single, STREAM, [None] * len(STREAM))
    multi = Segmenter(CFG)
    _lines(multi, events, [_source(ev) for ev in events])
    s, m = single.stats(), multi.stats()
    assert (m.late, s.late) == (0, 0)
    assert (m.events, m.duplicates, m.customers) == (s.events, s.duplicates, s.customers)


def test_a_backlog_read_one_partition_after_another_is_accepted_whole() -> None:
    events = sorted(STREAM, key=_source)  # partition 0 to its end, then 1, then 2: days apart
    seg = Segmenter(CFG)
    _lines(seg, events, [_source(ev) for ev in events])
    assert (seg.stats().late, seg.stats().events) == (0, len(STREAM))


def test_lateness_is_judged_against_the_customer_own_latest_time() -> None:
    seg = Segmenter(default_config())  # 24 h
    seg.process(_ev(1, "a", 100))
    seg.process(_ev(2, "b", 10))  # another customer far behind: fine
    seg.process(_ev(3, "a", 77))  # 23 h before a's latest: within lateness
    with pytest.raises(EventError, match=r"customer 'a'.s latest event time 2026-01-05T04:00:00") as err:
        seg.process(_ev(4, "a", 75))
    assert err.value.reason == "late"
    assert seg.stats().late == 1


# ------------------------------------------------------------------------------------------- bad clock


def _others(lines: list[bytes], customer: str) -> list[bytes]:
    """Every message but ``customer``'s; a segment's ``profile.size`` dropped, since it counts that customer too."""
    out = []
    for line in lines:
        m = json.loads(line)
        if "customer_id" not in m and "size" in (m.get("profile") or {}):
            del m["profile"]["size"]
            out.append(json.dumps(m).encode())
        elif m.get("customer_id") != customer:
            out.append(line)
    return out


def _year_ahead(ev: CustomerEvent) -> CustomerEvent:
    return ev.model_copy(update={"event_id": "from-the-future", "ts": ev.ts + timedelta(days=365)})


def test_a_new_customer_a_year_ahead_changes_nothing_for_anyone_else() -> None:
    """Its first event a year ahead, then its ordinary events: isolated, so the others see the stream without it."""
    victim = STREAM[0].customer_id
    rest = [ev for ev in STREAM if ev.customer_id != victim]
    own = [ev for ev in STREAM if ev.customer_id == victim]
    mid = len(rest) // 2
    poisoned = [*rest[:mid], _year_ahead(own[0]), *rest[mid:]]
    for k, ev in enumerate(own):  # its ordinary events, spread over the second half
        poisoned.insert(mid + 2 + k * (len(rest) - mid) // len(own), ev)
    clean = Segmenter(CFG, RULES)  # refinement every 400 events: the isolated row must stay out of it too
    expected = _lines(clean, rest, [None] * len(rest))
    seg = Segmenter(CFG, RULES)
    got = _lines(seg, poisoned, [None] * len(poisoned))
    assert _others(got, victim) == _others(expected, victim)
    assert (seg.stats().late, seg.stats().isolated, seg.stats().events) == (0, 1 + len(own), len(poisoned))
    assert seg.watermark == clean.watermark
    assert any(json.loads(line).get("customer_id") == victim for line in got)  # it is segmented, alone


def test_an_isolated_customer_sends_no_vectors_to_the_shared_trainer() -> None:
    victim = STREAM[0].customer_id
    rest = [ev for ev in STREAM if ev.customer_id != victim]
    own = [ev for ev in STREAM if ev.customer_id == victim]
    mid = len(rest) // 2
    poisoned = [*rest[:mid], _year_ahead(own[0]), *own[1:], *rest[mid:]]
    clean, seg = Segmenter(CFG, shared=True), Segmenter(CFG, shared=True)
    _lines(clean, rest, [None] * len(rest))
    _lines(seg, poisoned, [None] * len(poisoned))
    expected = clean.take_vectors()
    assert expected is not None
    assert seg.take_vectors() == expected
    assert seg.stats().isolated == len(own)


def test_one_event_a_year_ahead_isolates_its_customer_and_nobody_else() -> None:
    """``--bad-clock-at``: the customer's later ordinary events are accepted, and kept out of everything shared.

    The others' outputs are those of the stream without that customer's events from the bad one on: its features
    hold the year-ahead event, so its later events can no longer teach the lenses. Refinement is off here, since
    its sample leaves the isolated customer out where the reference still holds its earlier features (the test
    above covers refinement).
    """
    cfg = CFG.model_copy(update={"refine": CFG.refine.model_copy(update={"every_events": 0, "every_days": 0.0})})
    events = list(STREAM)
    mid = len(events) // 2
    victim = events[mid].customer_id
    poisoned = [*events[:mid], _year_ahead(events[mid]), *events[mid:]]
    reference = [*events[:mid], *(ev for ev in events[mid:] if ev.customer_id != victim)]
    clean = Segmenter(cfg, RULES)
    expected = _lines(clean, reference, [None] * len(reference))
    seg = Segmenter(cfg, RULES)
    got = _lines(seg, poisoned, [None] * len(poisoned))
    later = len(poisoned) - len(reference)  # the year-ahead event and the customer's ordinary ones after it
    assert later > 1
    assert _others(got, victim) == _others(expected, victim)
    assert (seg.stats().late, seg.stats().isolated, seg.stats().events) == (0, later, len(poisoned))
    assert seg.watermark == clean.watermark


def test_an_isolated_customer_survives_a_restore() -> None:
    """The isolation count paces refinement: a restored core goes on exactly as the one that never stopped."""
    events = list(STREAM)
    mid = len(events) // 2
    poisoned = [*events[:mid], _year_ahead(events[mid]), *events[mid:]]
    cut = mid + 300
    whole = Segmenter(CFG, RULES)
    expected = _lines(whole, poisoned, [None] * len(poisoned))
    first = Segmenter(CFG, RULES)
    head = _lines(first, poisoned[:cut], [None] * cut)
    again = Segmenter.from_snapshot(CFG, first.snapshot(), RULES)
    tail = _lines(again, poisoned[cut:], [None] * (len(poisoned) - cut))
    assert head + tail == expected
    assert again.stats().isolated == whole.stats().isolated > 1


def test_a_real_gap_in_the_stream_isolates_the_first_customers_back_until_a_quorum() -> None:
    seg = Segmenter(default_config())  # quorum 5, max_future 24 h
    for c in range(10):
        seg.process(_ev(c, f"c{c}", c / 10))
    for c in range(10):  # everyone comes back 10 days later: nothing refused
        seg.process(_ev(100 + c, f"c{c}", 240 + c / 10))
    assert (seg.stats().isolated, seg.stats().late, seg.stats().events) == (4, 0, 20)  # the 5th makes the quorum
    assert seg.watermark is not None and seg.watermark >= (T0 + timedelta(hours=240 - 24)).timestamp()
    for c in range(4):  # the four isolated ones have rejoined
        seg.process(_ev(200 + c, f"c{c}", 241 + c / 10))
    assert seg.stats().isolated == 4


def test_a_customer_the_clock_caught_up_with_does_not_count_towards_a_later_quorum() -> None:
    seg = Segmenter(default_config())
    for c in range(10):
        seg.process(_ev(c, f"c{c}", c / 10))
    seg.process(_ev(50, "x", 30))  # ahead by 29 h: isolated, in the ahead sample
    for hours in (20, 40):  # the stream walks past x: x rejoins
        for c in range(10):
            seg.process(_ev(int(100 * hours) + c, f"c{c}", hours + c / 10))
    assert seg.stats().isolated == 1
    for c in range(10):  # a real gap; x (no longer ahead) must not make a quorum with the first four back
        seg.process(_ev(9000 + c, f"c{c}", 300 + c / 10))
    assert (seg.stats().isolated, seg.stats().late) == (1 + 4, 0)


# ---------------------------------------------------------------------------------- sources and idleness


def _wm(seg: Segmenter) -> float | None:
    return seg.watermark


def test_an_assigned_partition_holds_the_watermark_until_it_has_events_or_is_idle() -> None:
    seg = Segmenter(default_config())
    seg.open_source(0)
    seg.open_source(1)
    seg.process(_ev(1, "a", 100), source=0)
    assert _wm(seg) is None  # partition 1 not read yet
    seg.set_idle(1, True)  # read to its end offset: empty
    assert _wm(seg) == (T0 + timedelta(hours=100 - 24)).timestamp()
    seg.set_idle(0, True)
    seg.set_idle(1, False)  # data again: it holds, but the watermark never moves back
    seg.process(_ev(2, "b", 50), source=1)
    assert _wm(seg) == (T0 + timedelta(hours=100 - 24)).timestamp()
    seg.process(_ev(3, "b", 130), source=1)  # partition 0 is idle: partition 1 alone moves it
    assert _wm(seg) == (T0 + timedelta(hours=130 - 24)).timestamp()
    seg.process(_ev(4, "a", 101), source=0)  # an event makes partition 0 active again
    seg.process(_ev(5, "b", 200), source=1)
    assert _wm(seg) == (T0 + timedelta(hours=130 - 24)).timestamp()


def test_revoking_a_partition_never_moves_the_watermark_back() -> None:
    seg = Segmenter(default_config())
    seg.process(_ev(1, "a", 100), source=0)
    seg.process(_ev(2, "b", 200), source=1)
    wm = seg.watermark
    seg.drop_sources(lambda s: s == 0)
    assert seg.watermark == wm
    seg.drop_sources(lambda s: s == 1)
    assert seg.watermark == wm


def test_a_poisoned_clock_from_old_state_is_repaired_on_restore() -> None:
    old = Segmenter(default_config())
    for c in range(8):
        old.process(_ev(c, f"c{c}", 10 + c), source=0)
    records = old.take_dirty()
    core = Segmenter(default_config())
    for cid, rec in records.items():
        assert rec is not None
        core.load_customer(cid, rec)
    core.load_clock(0, (T0 + timedelta(days=365 * 60)).timestamp())  # what the old code wrote after 2087
    core.process(_ev(50, "c0", 20), source=0)
    assert core.watermark is not None and core.watermark < (T0 + timedelta(hours=20)).timestamp()
    assert core.take_dirty_clocks()[0] <= (T0 + timedelta(hours=20)).timestamp()


# ---------------------------------------------------------------------------------------- trigger state


def change_at(at: datetime, event_id: str) -> SegmentChange:
    low, high = SegmentRef(id="value-1", name="low"), SegmentRef(id="value-2", name="high")
    return SegmentChange(
        customer_id="c1",
        lens="value",
        from_segment=low,
        to_segment=high,
        cause="event",
        cause_event_id=event_id,
        event_ts=at.isoformat(),
        model_version=1,
        distance=0.1,
        features={},
        explanation=None,
    )


def test_cooldowns_hold_for_a_customer_behind_the_watermark() -> None:
    """Delivery history is trimmed by the customer's own floor, not by another partition's watermark."""
    engine = TriggerEngine(RULES)  # cooldown 2 d
    engine.release((T0 + timedelta(days=100)).timestamp())  # a fast partition's watermark
    day1, day2 = (T0 + timedelta(days=1)), (T0 + timedelta(days=2))
    floor = (day1 - timedelta(hours=24)).timestamp()
    assert engine.evaluate(change_at(day1, "e1"), {}, None, floor)
    assert engine.evaluate(change_at(day2, "e2"), {}, None, floor) == []  # within the cooldown


# ---------------------------------------------------------------------------------- stability in time


def test_a_move_back_to_the_segment_just_left_comes_at_least_the_dwell_after_leaving_it() -> None:
    seg = Segmenter(CFG)  # the default min_dwell_hours
    lines = _lines(seg, STREAM, [None] * len(STREAM))
    last: dict[tuple[str, str], tuple[float, str, str | None]] = {}  # time, cause, the segment it left
    gaps = []
    for line in lines:
        m = json.loads(line)
        if m["kind"] != "segment_change":
            continue
        key, ts = (m["customer_id"], m["lens"]), datetime.fromisoformat(m["event_ts"]).timestamp()
        left = None if m["from_segment"] is None else m["from_segment"]["id"]
        to = None if m["to_segment"] is None else m["to_segment"]["id"]
        prev = last.get(key)
        if prev is not None and m["cause"] != "model" and left is not None and to == prev[2] and prev[1] != "model":
            gaps.append(ts - prev[0])
        if m["cause"] != "model":  # a model move (its segment died) does not change the segment it left
            last[key] = (ts, m["cause"], left)
    assert gaps and min(gaps) >= CFG.lenses[0].min_dwell_hours * 3600 - 1


def test_a_quick_move_back_needs_the_return_margin() -> None:
    h = Hysteresis(margin=0.25, min_dwell=0, min_dwell_s=3600, return_window_s=7 * 86_400, return_margin=0.85)

    def move(d_nearest: float, age: int, previous: int | None) -> bool:
        return h.decide(
            current=1,
            current_live=True,
            d_current=1.0,
            nearest=2,
            d_nearest=d_nearest,
            dwell=9,
            age=age,
            previous=previous,
        )

    assert move(0.5, 1800, None)  # onwards: the dwell in time holds only a move back
    assert not move(0.5, 1800, 2)  # back, within the dwell
    assert move(0.5, 7200, None)
    assert not move(0.5, 7200, 2)  # back to where it came from
    assert move(0.1, 7200, 2)
    assert move(0.5, 8 * 86_400, 2)  # long after leaving it


# ------------------------------------------------------------------------------------ time-driven path


def test_one_inactivity_step_rescores_everyone_as_the_per_customer_rule_does() -> None:
    seg = Segmenter(CFG)
    _lines(seg, STREAM, [None] * len(STREAM))
    snap = seg.snapshot()
    cfg = CFG.model_copy(update={"refine": CFG.refine.model_copy(update={"every_days": 0.0})})  # no tick
    fast, ref = Segmenter.from_snapshot(cfg, snap), Segmenter.from_snapshot(cfg, snap)
    until = max(ev.epoch for ev in STREAM) + 20 * 86_400
    t = ref.store.to_seconds(until)
    store = ref.store
    expected = {}
    for row in store.stale_rows(t).tolist():
        at = max(t, store.last_time(row))
        vals = store.vector(row, at)
        for li, lens in enumerate(ref.lenses):
            if not lens.ready:
                continue
            pick = [FEATURE_NAMES.index(f) for f in lens.feature_names]
            raw = np.array([vals[j] for j in pick])
            later = store.clock_ahead(vals, lens.guard_s)
            cur, dwell = store.segment(row, li), store.dwell_of(row, li)
            since, prev = store.entered(row, li)
            pend = int(store.pend[row, li])  # a pending move matures in the step as in the event loop
            a = lens.assign(raw, cur if cur >= 0 else None, dwell, at - since, prev if prev >= 0 else None,
                            -1 if pend == NO_PENDING else at - pend, np.array([later[j] for j in pick]))  # fmt: skip
            stays = a.segment == (cur if cur >= 0 else None)
            expected[store.id_of(row), lens.name] = (a.segment, min(dwell + 1, 65535) if stays else 0)
    assert expected
    fast.advance_to(until, full=True)
    got = {}
    for cid, name in expected:
        row, li = fast.store.row_of(cid), [lens.name for lens in fast.lenses].index(name)
        assert row is not None
        n = fast.store.segment(row, li)
        got[cid, name] = (None if n < 0 else n, fast.store.dwell_of(row, li))
    assert got == expected
    scored = fast.store.t[fast.store.live, 3]
    assert (scored >= t).all()  # nobody left unscored (no per-step cap)
