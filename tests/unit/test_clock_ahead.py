"""The move rule's clock veto: a move the clock alone would undo by the end of the move-back guard is not made.

Only the clock features (``recency_days``, ``tenure_days``) run ahead; decayed, ratio and lifetime features keep
their value now (silence is no prediction of an active customer's rates).
"""

from __future__ import annotations

import math

import numpy as np

from segmenter.features import CLOCK_FEATURES, FEATURE_NAMES
from segmenter.lenses import Hysteresis, LensConfig
from segmenter.lenses.lens import Lens
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import CFG

DAY = 86_400
WEEK = 7 * DAY


def test_only_the_clock_features_run_ahead() -> None:
    seg = Segmenter(CFG)
    seg.process_batch(to_events(make_events(20, 10, seed=3)))
    store = seg.store
    assert CLOCK_FEATURES == FEATURE_NAMES[: len(CLOCK_FEATURES)] == ("recency_days", "tenure_days")
    checked = 0
    for cid in sorted({ev.customer_id for ev in to_events(make_events(20, 10, seed=3))}):
        row = store.row_of(cid)
        assert row is not None
        t = store.last_time(row)
        now, silent = store.vector(row, t), store.vector(row, t + WEEK)
        ahead = store.clock_ahead(now, WEEK)
        for j, name in enumerate(FEATURE_NAMES):
            want = silent[j] if name in CLOCK_FEATURES else now[j]
            assert math.isclose(ahead[j], want, rel_tol=1e-12, abs_tol=1e-12), (cid, name)
        checked += now[FEATURE_NAMES.index("sessions")] > silent[FEATURE_NAMES.index("sessions")]
    assert checked  # a week of silence would have decayed someone's activity: the test can tell the two apart


def test_recency_runs_ahead_up_to_its_cap() -> None:
    seg = Segmenter(CFG)
    cap = CFG.features.recency_cap_days
    vals = [cap - 2.0, 10.0] + [1.0] * (len(FEATURE_NAMES) - 2)
    assert seg.store.clock_ahead(vals, WEEK)[:2] == [cap, 17.0]


def _lens() -> Lens:
    """Two segments on (recency_days, frequency): recent buyers and quiet ones, of equal frequency."""
    cfg = LensConfig(
        name="value", features=["recency_days", "frequency"], algorithm="kmeans",
        params={"n_clusters": 2, "halflife": 0.1}, warmup=50, refresh_every=64, margin=0.1, min_dwell=1,
        min_dwell_hours=168,
    )  # fmt: skip
    lens = Lens(cfg, seed=7)
    rng = np.random.default_rng(1)
    for i in range(400):
        base = np.array([0.5, 3.0]) if i % 2 else np.array([25.0, 3.0])
        lens.observe(base * rng.uniform(0.9, 1.1, 2))
    assert lens.ready
    return lens


def test_a_move_the_clock_alone_would_undo_is_not_made() -> None:
    lens = _lens()
    quiet = lens.assign(np.array([25.0, 3.0]), current=None, dwell=0).segment
    recent = lens.assign(np.array([0.5, 3.0]), current=None, dwell=0).segment
    assert quiet is not None and recent is not None and quiet != recent
    bought = np.array([0.0, 3.0])  # a quiet customer's purchase: recency 0, nearest the recent buyers
    week_on = np.array([7.0, 3.0])  # a week later with no event: nearer the quiet segment again
    free = lens.assign(bought, current=quiet, dwell=5, age=30 * DAY)
    assert free.moved and free.segment == recent  # without the prediction it moves
    held = lens.assign(bought, current=quiet, dwell=5, age=30 * DAY, ahead=week_on)
    assert not held.moved and held.segment == quiet and held.nearest == recent
    assert held.distance is not None and free.distance is not None and held.distance > free.distance
    still = np.array([0.5, 3.0])  # ahead the same as now (a lens without clock features): the move is made
    assert lens.assign(still, current=quiet, dwell=5, age=30 * DAY, ahead=still).segment == recent


def test_decide_vetoes_a_move_the_clock_would_undo() -> None:
    h = Hysteresis(margin=0.1, min_dwell=1, min_dwell_s=WEEK)
    args = {"current": 1, "current_live": True, "d_current": 1.0, "nearest": 2, "d_nearest": 0.5, "dwell": 5}
    assert h.decide(**args)  # type: ignore[arg-type]
    assert not h.decide(**args, ahead=(0.4, 0.6))  # type: ignore[arg-type]
    assert h.decide(**args, ahead=(0.6, 0.6))  # type: ignore[arg-type]  # a tie still lets it go
    assert h.decide(**{**args, "current": None, "d_current": None}, ahead=(0.4, 0.6))  # type: ignore[arg-type]


def test_the_event_loop_makes_the_moves_the_rule_makes_with_the_clock_ahead() -> None:
    """Event by event, each lens's decision for the event's customer is :meth:`Lens.assign`'s with ``ahead``."""
    seg = Segmenter(CFG)
    events = to_events(make_events(40, 30, seed=9))
    compared = vetoed = 0
    for ev in events:
        store = seg.store
        row = store.row_of(ev.customer_id)
        before = None
        if row is not None:
            before = [
                (store.segment(row, li), store.dwell_of(row, li), *store.entered(row, li), int(store.pend[row, li]))
                for li in range(len(seg.lenses))
            ]
        versions = [lens.model_version for lens in seg.lenses]
        ready = [lens.ready for lens in seg.lenses]
        seg.process_batch([ev])
        if before is None or row is None:
            continue
        now = store.last_time(row)
        vals = store.vector(row, now)
        for li, lens in enumerate(seg.lenses):
            cur, dwell, since, prev, pend = before[li]
            if not ready[li] or lens.model_version != versions[li] or cur < 0 or not lens.is_live(cur):
                continue
            pick = [FEATURE_NAMES.index(f) for f in lens.feature_names]
            raw = np.array([vals[j] for j in pick])
            later = store.clock_ahead(vals, lens.guard_s)
            wait = -1 if pend == -(2**31) else now - pend
            args = (raw, cur, dwell, now - since, prev if prev >= 0 else None, wait)
            want = lens.assign(*args, ahead=np.array([later[j] for j in pick]))
            vetoed += lens.assign(*args).segment != want.segment
            assert store.segment(row, li) == want.segment, (ev.customer_id, lens.name)
            compared += 1
    assert compared > 100
    assert vetoed  # the stream has moves the clock would undo: the comparison can fail


def test_a_sweep_rescores_with_the_clock_ahead_as_the_rule_does() -> None:
    """A day after the stream, one inactivity step decides each customer as :meth:`Lens.assign` with ``ahead``."""
    stream = to_events(make_events(60, 30, seed=5))
    seg = Segmenter(CFG)
    seg.process_batch(stream)
    snap = seg.snapshot()
    cfg = CFG.model_copy(update={"refine": CFG.refine.model_copy(update={"every_days": 0.0})})  # no tick
    fast, ref = Segmenter.from_snapshot(cfg, snap), Segmenter.from_snapshot(cfg, snap)
    until = max(ev.epoch for ev in stream) + DAY
    store = ref.store
    t = store.to_seconds(until)
    expected, vetoed = {}, 0
    for row in store.stale_rows(t).tolist():
        at = max(t, store.last_time(row))
        vals = store.vector(row, at)
        for li, lens in enumerate(ref.lenses):
            cur = store.segment(row, li)
            if not lens.ready or cur < 0:
                continue
            pick = [FEATURE_NAMES.index(f) for f in lens.feature_names]
            since, prev = store.entered(row, li)
            pend = int(store.pend[row, li])
            args = (np.array([vals[j] for j in pick]), cur, store.dwell_of(row, li), at - since,
                    prev if prev >= 0 else None, -1 if pend == -(2**31) else at - pend)  # fmt: skip
            later = store.clock_ahead(vals, lens.guard_s)
            want = lens.assign(*args, ahead=np.array([later[j] for j in pick])).segment
            vetoed += lens.assign(*args).segment != want
            expected[store.id_of(row), li] = want
    fast.advance_to(until, full=True)
    got = {}
    for cid, li in expected:
        row = fast.store.row_of(cid)
        assert row is not None
        got[cid, li] = fast.store.segment(row, li)
    assert got == expected
    assert vetoed  # a move the clock would undo is among them: the comparison can fail
