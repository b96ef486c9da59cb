"""The re-scorer's exact skips (segmenter.margins): the travel bound holds, and skipping changes nothing."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.batching import store_columns
from segmenter.features import FEATURE_NAMES, FeatureStore
from segmenter.kernel import LensColumns, feature_vector
from segmenter.lenses.hysteresis import Hysteresis
from segmenter.margins import NO_BUDGET, Margins, travel
from segmenter.moves import MoveBuffer
from segmenter.outputs import encode
from segmenter.pipeline import Segmenter
from segmenter.rescoring import rescore
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import CFG

_ACC = st.floats(0.0, 1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    acc=st.lists(_ACC, min_size=11, max_size=11),
    first=st.integers(0, 400 * 86_400),
    since_first=st.integers(0, 400 * 86_400),
    bought=st.booleans(),
    wait=st.integers(0, 800 * 86_400),
    more=st.integers(0, 800 * 86_400),
)
def test_no_feature_moves_further_than_its_travel(
    acc: list[float], first: int, since_first: int, bought: bool, wait: int, more: int
) -> None:
    """Between two times after the latest event, each feature (raw and log1p) moves by at most its travel."""
    store = FeatureStore(CFG.features, capacity=1, n_lenses=1)
    last = first + since_first
    store.f[0] = np.array(acc, np.float32)
    store.t[0, :3] = (first, last, last if bought else -(2**31))
    fp = store.kernel_rates()
    t0, t1 = last + wait, last + wait + more
    v0, v1 = np.empty(len(FEATURE_NAMES)), np.empty(len(FEATURE_NAMES))
    feature_vector(store.f, store.t, 0, t0, fp, v0)
    feature_vector(store.f, store.t, 0, t1, fp, v1)
    for k in range(len(FEATURE_NAMES)):
        idx, inv = np.array([k], np.int64), np.array([1.0])
        room = travel(store.f, store.t, 0, t1, fp, idx, inv, 1) - travel(store.f, store.t, 0, t0, fp, idx, inv, 1)
        tol = 1e-9 * (1.0 + abs(v0[k]) + abs(v1[k]))
        assert abs(v1[k] - v0[k]) <= room + tol, FEATURE_NAMES[k]
        assert abs(math.log1p(v1[k]) - math.log1p(v0[k])) <= room + tol, FEATURE_NAMES[k]


def _shifted(events: list[dict[str, Any]], days: float) -> list[dict[str, Any]]:
    """The same events ``days`` later (returning customers: the ids are make_events' own)."""
    out = []
    for e in events:
        ts = datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) + timedelta(days=days)
        out.append({**e, "ts": ts.isoformat().replace("+00:00", "Z"), "event_id": f"{e['event_id']}-{days}"})
    return out


def _run(skips: bool) -> tuple[list[bytes], bytes, int]:
    """A stream, 40 quiet days, the customers back, 30 quiet days: outputs, snapshot and budgets used.

    Without ``skips`` every pass starts without budgets (every customer evaluated in full).
    """
    seg = Segmenter(CFG)
    margins: Margins = seg._rescorer._margins
    used = 0
    follow = margins.columns

    def columns(st: Any, ln: Any, fp: Any) -> Any:
        nonlocal used
        if not skips:
            margins.forget()
        mg = follow(st, ln, fp)
        used += int((mg.budget > NO_BUDGET).sum())
        return mg

    margins.columns = columns  # type: ignore[method-assign]
    first = make_events(120, 40, seed=5, disorder_s=1800)
    last = datetime.fromisoformat(first[-1]["ts"].replace("Z", "+00:00")).timestamp()
    out = list(seg.process_batch(to_events(first)).outputs)
    for day in range(1, 41):
        out += seg.advance_to(last + day * 86_400)
    back = [e for e in _shifted(make_events(60, 20, seed=6), 85.0) if e["type"] != "erasure_request"]
    last = datetime.fromisoformat(back[-1]["ts"].replace("Z", "+00:00")).timestamp()
    out += seg.process_batch(to_events(back)).outputs
    for day in range(1, 31):
        out += seg.advance_to(last + day * 86_400)
    return [encode(m) for m in out], seg.snapshot(), used


def test_skipping_within_budgets_changes_no_output_and_no_state() -> None:
    """Outputs and the whole saved state are byte-identical with the skips and without."""
    got, state, used = _run(skips=True)
    want, want_state, none = _run(skips=False)
    assert none == 0
    assert used > 10_000  # the skips were taken (budgets held at the passes)
    assert sum(b'"inactivity"' in line for line in want) > 50
    assert got == want
    assert state == want_state


_LENS_FEATURES = [FEATURE_NAMES.index(n) for n in ("recency_days", "sessions", "orders", "tenure_days")]


_INV = np.array([1 / 20, 1.0, 1.0, 1 / 30])
_OFF = np.array([2.0, 1.5, 2.0, 2.5])
"""Standardisation of _LENS_FEATURES that spreads _customers over a few units."""

_NEAREST = Hysteresis(margin=0.0, min_dwell=0).params()
"""A move rule that follows the nearest segment."""
_DAY = 86_400
_HELD = Hysteresis(margin=0.25, min_dwell=6, dwell_time_s=2 * _DAY, min_dwell_s=7 * _DAY, return_window_s=7 * _DAY,
                   return_margin=0.85, hold_s=4 * _DAY, shrink=True).params()  # fmt: skip
"""The packaged rule's shape: event and time dwells, a week before a move back, a shrinking pending margin."""


def _lens(rng: np.random.Generator, k: int, rule: Any = _NEAREST) -> LensColumns:
    """One ready lens over _LENS_FEATURES with ``k`` random centers and the move rule ``rule``."""
    d = len(_LENS_FEATURES)
    return _lens_of(_LENS_FEATURES, [False, True, True, False], _INV * rng.uniform(0.8, 1.2, (1, d)),
                    _OFF * rng.uniform(0.8, 1.2, (1, d)), rng.uniform(-1.5, 1.5, (1, k, d)), rule)  # fmt: skip


def _lens_of(
    features: list[int], heavy: list[bool], inv: Any, off: Any, centers: Any, rule: Any = _NEAREST
) -> LensColumns:
    """One ready lens over ``features`` (``inv``, ``off``: ``(1, d)``; ``centers``: ``(1, k, d)``), rule ``rule``."""
    k, d = centers.shape[1], len(features)
    none = np.zeros(1, np.int64)
    return LensColumns(
        idx=np.array([features]), dims=np.array([d]), heavy=np.array([heavy]), inv=np.array(inv, np.float64),
        off=np.array(off, np.float64), centers=np.array(centers, np.float64), nlive=np.array([k]),
        live=np.arange(1, k + 1).reshape(1, k), rule=np.array([rule]),
        ready=np.array([True]), nobs=none, warmup=none, learn_every=none, batch_size=none, version=none.copy(),
        bfill=none, sbuf=np.zeros((1, 1, d)), sn=np.zeros((1, 1), np.int64), scount=none,
    )  # fmt: skip


def _customers(rng: np.random.Generator, n: int) -> FeatureStore:
    store = FeatureStore(CFG.features, n_lenses=1, capacity=n)
    store.f[:n] = rng.uniform(0.0, 20.0, (n, store.f.shape[1])).astype(np.float32)
    store.f[:n, 2] = rng.uniform(0.0, 0.3, n) * (rng.random(n) < 0.3)  # few sessions: budgets have room
    first = rng.integers(0, 30 * 86_400, n)
    store.t[:n, 0] = first
    store.t[:n, 1] = store.t[:n, 2] = store.t[:n, 3] = first + rng.integers(0, 30 * 86_400, n)
    store.live[:n] = True
    return store


def _event(store: FeatureStore, rng: np.random.Generator, row: int, now: int) -> None:
    """What an event does to the row's columns here: new accumulators, its times (an older one: no later time)."""
    store.f[row, :] = np.asarray(rng.uniform(0.0, 20.0, store.f.shape[1]), np.float32)
    store.t[row, 1] = max(int(store.t[row, 1]), now - int(rng.integers(0, 3 * 86_400)))
    store.t[row, 3] = store.t[row, 1]


def _rescale(ln: LensColumns, rng: np.random.Generator, spread: float) -> None:
    """A refinement's new scaled space: each column's ``1/std`` and offset change, the centers move in it."""
    d = ln.inv.shape[1]
    ln.inv[0] *= rng.uniform(1.0 - spread, 1.0 + spread, d)
    ln.off[0] += rng.normal(0.0, spread, d)
    ln.centers[0] += rng.normal(0.0, spread, ln.centers[0].shape)


def _passes(
    seed: int, skips: bool, rescale: float = 0.0, rule: Any = _NEAREST
) -> tuple[list[tuple[np.ndarray[Any, Any], ...]], int]:
    """Random customers and centers re-scored daily for 60 days, centers drifting, a few events between passes.

    Each pass's state (segments, dwell, pending starts, entry times, times) and moves, and the budgets held at
    passes after a change of scaled space (``rescale``: its spread, every 7 days; 0: none); without ``skips``
    every pass starts without budgets. ``rule``: the lens's move rule.
    """
    rng = np.random.default_rng(seed)
    n = 1000
    store, ln = _customers(rng, n), _lens(rng, 4, rule)
    margins = Margins(1)
    fp = store.kernel_rates()
    rows = np.arange(n, dtype=np.int64)
    got: list[tuple[np.ndarray[Any, Any], ...]] = []
    rebased = 0
    for day in range(60):
        now = 61 * 86_400 + day * 86_400
        if rng.random() < 0.5:
            ln.centers[0] += rng.normal(0.0, 0.05, ln.centers[0].shape)
        if rescale and day % 7 == 6:
            _rescale(ln, rng, rescale)
        for row in rng.choice(n, 2, replace=False):
            _event(store, rng, int(row), now)
        if not skips:
            margins.forget()
        buf = MoveBuffer(n)
        at = np.maximum(store.t[:n, 1].astype(np.int64), now)
        st = store_columns(store)
        mg = margins.columns(st, ln, fp)
        if rescale and day % 7 == 6:
            rebased += int((mg.budget[:n, 0] > NO_BUDGET).sum())
        bad = rescore((rows, at, np.array([True]), True), st, ln, fp, buf.columns, mg)
        assert bad == -1
        state = (store.seg[:n].copy(), store.dwell[:n].copy(), store.pend[:n].copy(), store.since[:n].copy(),
                 store.t[:n].copy(), buf.ints[: len(buf)].copy(), buf.dist[: len(buf)].copy())  # fmt: skip
        got.append(state)
    return got, rebased


def test_a_pass_with_budgets_decides_as_one_that_evaluates_everyone() -> None:
    """Nearest-segment rule, drifting centers, events between passes: the same state and moves after every pass."""
    for seed in range(4):
        (got, _), (want, _) = _passes(seed, skips=True), _passes(seed, skips=False)
        assert sum(len(w[5]) for w in want) > 100  # customers do change nearest segment
        for g, w in zip(got, want, strict=True):
            for a, b in zip(g, w, strict=True):
                assert np.array_equal(a, b, equal_nan=True)


def test_a_pass_with_budgets_decides_as_a_full_evaluation_under_the_dwell_rules() -> None:
    """The skips assume the rule keeps a customer whose nearest segment is its own, whatever its dwell, age or
    pending start: with the packaged rule's shape (quiet customers moving on after the dwell time) too."""
    for seed in range(3):
        (got, _), (want, _) = _passes(seed, skips=True, rule=_HELD), _passes(seed, skips=False, rule=_HELD)
        assert sum(len(w[5]) for w in want) > 100
        for g, w in zip(got, want, strict=True):
            for a, b in zip(g, w, strict=True):
                assert np.array_equal(a, b, equal_nan=True)


def test_budgets_re_based_across_a_new_scaled_space_decide_as_a_full_evaluation() -> None:
    """A refinement's change of scaled space every 7 days (scales, offsets, centers): budgets are re-based, not
    dropped, and every pass still decides as one that evaluates everyone."""
    for seed, spread in ((0, 0.02), (1, 0.05), (2, 0.1), (3, 0.01)):
        (got, rebased), (want, _) = (
            _passes(seed, skips=True, rescale=spread),
            _passes(seed, skips=False, rescale=spread),
        )
        assert rebased > 500  # budgets survived the changes of space
        assert sum(len(w[5]) for w in want) > 100
        for g, w in zip(got, want, strict=True):
            for a, b in zip(g, w, strict=True):
                assert np.array_equal(a, b, equal_nan=True)


_STILL = [FEATURE_NAMES.index("orders"), FEATURE_NAMES.index("net_spend")]
"""Features time does not move (no travel): the customer sits at the origin of the scaled space."""


def _after_change(
    centers: list[list[float]], ratio: list[float], moved: list[list[float]], budgets: bool
) -> tuple[int, bool]:
    """One customer at the origin, scored in the space of ``centers``; the space's scales then change by
    ``ratio`` per column and the centers (mapped) by ``moved``; scored again a day later.

    Returns the customer's segment after the second pass and whether a budget was held for it.
    """
    store = FeatureStore(CFG.features, n_lenses=1, capacity=1)
    store.live[0] = True  # every accumulator and time 0: orders and net spend 0, latest event at 0
    c = np.array([centers], np.float64)
    ln = _lens_of(_STILL, [False, False], [[1.0, 1.0]], [[0.0, 0.0]], c)
    margins, fp, rows = Margins(1), store.kernel_rates(), np.zeros(1, np.int64)
    for day in (1, 2):
        if day == 2:
            ln.inv[0] *= ratio  # the origin stays the origin: its offsets are 0
            ln.centers[0] = ln.centers[0] * np.array(ratio) + np.array(moved)
        if not budgets:
            margins.forget()
        st = store_columns(store)
        mg = margins.columns(st, ln, fp)
        held = bool(mg.budget[0, 0] > NO_BUDGET)
        bad = rescore((rows, np.array([day * 86_400]), np.array([True]), True), st, ln, fp,
                      MoveBuffer(1).columns, mg)  # fmt: skip
        assert bad == -1
    return int(store.seg[0, 0]), held


def test_a_re_based_budget_never_skips_a_customer_a_full_evaluation_moves() -> None:
    """Budgets re-based into a new scaled space are never too generous: another center that jumps to the customer,
    its own that jumps away, and a change of scales that brings another center nearer all move it, as evaluating
    it does; a change that moves little keeps its budget."""
    jump = ([[0.5, 0.0], [-1.5, 0.0]], [1.0, 1.01], [[0.0, 0.0], [1.2, 0.0]])  # the other center: 1.5 -> 0.3 away
    away = ([[0.5, 0.0], [-1.5, 0.0]], [1.0, 1.01], [[1.3, 0.0], [0.0, 0.0]])  # its own center: 0.5 -> 1.8 away
    stretch = ([[0.9, 0.0], [0.0, 1.0]], [1.2, 0.9], [[0.0, 0.0], [0.0, 0.0]])  # own 0.9 -> 1.08, other 1.0 -> 0.9
    slight = ([[0.5, 0.0], [-1.5, 0.0]], [1.01, 0.99], [[0.01, 0.0], [0.0, 0.01]])
    for centers, ratio, moved in (jump, away, stretch):
        assert _after_change(centers, ratio, moved, budgets=False) == (2, False)  # a full evaluation moves it
        assert _after_change(centers, ratio, moved, budgets=True) == (2, False)
    assert _after_change(*slight, budgets=False) == (1, False)
    assert _after_change(*slight, budgets=True) == (1, True)
