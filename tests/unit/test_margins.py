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

    def columns(rows: int, ln: Any) -> Any:
        nonlocal used
        if not skips:
            margins.forget()
        mg = follow(rows, ln)
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


def _lens(rng: np.random.Generator, k: int) -> LensColumns:
    """One ready lens over _LENS_FEATURES with ``k`` random centers; its rule follows the nearest segment."""
    d = len(_LENS_FEATURES)
    none = np.zeros(1, np.int64)
    return LensColumns(
        idx=np.array([_LENS_FEATURES]), dims=np.array([d]), heavy=np.array([[False, True, True, False]]),
        inv=_INV * rng.uniform(0.8, 1.2, (1, d)), off=_OFF * rng.uniform(0.8, 1.2, (1, d)),
        centers=rng.uniform(-1.5, 1.5, (1, k, d)),
        nlive=np.array([k]), live=np.arange(1, k + 1).reshape(1, k), rule=np.array([[0.0, 1.0, 0.0, 0.0, 1.0, np.inf]]),
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


def _passes(seed: int, skips: bool) -> list[tuple[np.ndarray[Any, Any], ...]]:
    """Random customers and centers re-scored daily for 60 days, centers drifting, a few events between passes.

    Each pass's state (segments, dwell, pending starts, entry times, times) and moves; without ``skips`` every
    pass starts without budgets.
    """
    rng = np.random.default_rng(seed)
    n = 1000
    store, ln = _customers(rng, n), _lens(rng, 4)
    margins = Margins(1)
    fp = store.kernel_rates()
    rows = np.arange(n, dtype=np.int64)
    got: list[tuple[np.ndarray[Any, Any], ...]] = []
    for day in range(60):
        now = 61 * 86_400 + day * 86_400
        if rng.random() < 0.5:
            ln.centers[0] += rng.normal(0.0, 0.05, ln.centers[0].shape)
        for row in rng.choice(n, 2, replace=False):
            _event(store, rng, int(row), now)
        if not skips:
            margins.forget()
        buf = MoveBuffer(n)
        at = np.maximum(store.t[:n, 1].astype(np.int64), now)
        bad = rescore((rows, at, np.array([True]), True), store_columns(store), ln, fp, buf.columns,
                      margins.columns(n, ln))  # fmt: skip
        assert bad == -1
        state = (store.seg[:n].copy(), store.dwell[:n].copy(), store.pend[:n].copy(), store.since[:n].copy(),
                 store.t[:n].copy(), buf.ints[: len(buf)].copy(), buf.dist[: len(buf)].copy())  # fmt: skip
        got.append(state)
    return got


def test_a_pass_with_budgets_decides_as_one_that_evaluates_everyone() -> None:
    """Nearest-segment rule, drifting centers, events between passes: the same state and moves after every pass."""
    for seed in range(4):
        got, want = _passes(seed, skips=True), _passes(seed, skips=False)
        assert sum(len(w[5]) for w in want) > 100  # customers do change nearest segment
        for g, w in zip(got, want, strict=True):
            for a, b in zip(g, w, strict=True):
                assert np.array_equal(a, b, equal_nan=True)
