"""FeatureStore: event-time features, exact late events, dedup, erasure, state and memory."""

from __future__ import annotations

import math
import random
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.config import FeatureConfig
from segmenter.errors import EventError, StateError
from segmenter.features import BASE_EPOCH, DAY, FEATURE_NAMES, HEAVY_TAILED, NO_PENDING, EventKind, FeatureStore
from segmenter.kernel import N_FEATURES, _vector
from segmenter.lenses.scaling import HEAVY_TAILED as LENS_HEAVY_TAILED
from tests.reference.v1_records import v1_record

T0 = FeatureStore.to_seconds(BASE_EPOCH + 2000 * DAY)
CFG = FeatureConfig()


def feats(store: FeatureStore, cid: str, t: int) -> dict[str, float]:
    row = store.row_of(cid)
    assert row is not None
    return dict(zip(FEATURE_NAMES, store.vector(row, t), strict=True))


def test_feature_names_are_the_documented_ones() -> None:
    assert FEATURE_NAMES == (
        "recency_days", "tenure_days", "frequency", "spend", "aov", "sessions", "product_views",
        "cart_adds", "cart_abandonment", "conversion", "email_engagement", "refund_rate", "orders", "net_spend",
    )  # fmt: skip
    assert HEAVY_TAILED == LENS_HEAVY_TAILED  # one meaning of "heavy-tailed" across the core


def test_decay_recency_ratios_by_hand() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    s.ingest("c", "e1", EventKind.OTHER, T0, None)  # first seen
    s.ingest("c", "e2", EventKind.PRODUCT_VIEW, T0 + 10 * DAY, None)
    s.ingest("c", "e3", EventKind.PRODUCT_VIEW, T0 + 10 * DAY, None)
    s.ingest("c", "e4", EventKind.CART_ADD, T0 + 10 * DAY, None)
    s.ingest("c", "e5", EventKind.PURCHASE, T0 + 10 * DAY, 100.0)
    s.ingest("c", "e6", EventKind.EMAIL_CLICK, T0 + 10 * DAY, None)
    s.ingest("c", "e7", EventKind.REFUND, T0 + 10 * DAY, 40.0)
    f = feats(s, "c", T0 + 40 * DAY)
    assert f["recency_days"] == pytest.approx(30.0)
    assert f["tenure_days"] == pytest.approx(40.0)
    assert f["frequency"] == pytest.approx(0.5, rel=1e-6)  # 30 days = one half-life
    assert f["spend"] == pytest.approx(30.0, rel=1e-6)  # (100 - 40) / 2
    assert f["aov"] == pytest.approx(100.0)
    assert f["product_views"] == pytest.approx(2 * 2 ** (-30 / CFG.activity_half_life_days), rel=1e-6)
    assert f["cart_abandonment"] == pytest.approx(0.0)  # one purchase per cart add
    assert f["conversion"] == pytest.approx(0.5, rel=1e-6)  # both decay alike: ratio kept
    assert f["email_engagement"] == pytest.approx(2 * 2 ** (-30 / CFG.activity_half_life_days), rel=1e-6)
    assert f["refund_rate"] == pytest.approx(1.0)
    assert f["sessions"] == 0.0


def test_lifetime_value_survives_silence() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    s.ingest("c", "e1", EventKind.PURCHASE, T0, 100.0)
    s.ingest("c", "e2", EventKind.PURCHASE, T0 + DAY, 50.0)
    s.ingest("c", "e3", EventKind.REFUND, T0 + 2 * DAY, 30.0)
    f = feats(s, "c", T0 + 540 * DAY)  # 18 months later
    assert f["frequency"] < 1e-4 and f["spend"] < 1e-3  # the decayed ones forget
    assert f["orders"] == 2.0
    assert f["net_spend"] == pytest.approx(120.0)
    s.ingest("c", "e4", EventKind.REFUND, T0 + 3 * DAY, 500.0)
    assert feats(s, "c", T0 + 540 * DAY)["net_spend"] == 0.0  # floored


def test_records_without_the_refund_amount_still_load() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    s.ingest("c", "e1", EventKind.PURCHASE, T0, 80.0)
    s.ingest("c", "e2", EventKind.REFUND, T0, 30.0)
    rec = v1_record(s, s.row_of("c") or 0, ["l"])
    rec["f"] = rec["f"][:10]  # a record written before net_spend existed
    fresh = FeatureStore(CFG, n_lenses=1)
    fresh.load_record("c", rec, ["l"])
    assert feats(fresh, "c", T0)["net_spend"] == pytest.approx(80.0)  # the old refund amount is unknown


def test_columns_without_the_refund_amount_still_load() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    s.ingest("c", "e1", EventKind.PURCHASE, T0, 80.0)
    cols = s.columns(["l"])
    cols["f"] = cols["f"][:, :10]
    fresh = FeatureStore(CFG, n_lenses=1)
    fresh.load_columns(cols, ["l"])
    assert feats(fresh, "c", T0)["net_spend"] == pytest.approx(80.0)


def _pending_store() -> FeatureStore:
    """Two customers in lens 1 of 2: ``p`` with a pending move since ``T0 + 60``, ``q`` without."""
    s = FeatureStore(CFG, n_lenses=2)
    for cid in ("p", "q"):
        s.ingest(cid, "e1", EventKind.PURCHASE, T0, 10.0)
    s.pend[s.row_of("p") or 0, 1] = T0 + 60
    return s


def test_pending_move_start_survives_records_and_columns() -> None:
    a = _pending_store()
    rp, rq = a.row_of("p") or 0, a.row_of("q") or 0
    rec = v1_record(a, rp, ["l", "m"])
    assert rec["s"]["m"][5] == T0 + 60 + BASE_EPOCH and v1_record(a, rq, ["l", "m"])["s"]["m"][5] is None
    b = FeatureStore(CFG, n_lenses=2)
    b.load_record("p", rec, ["l", "m"])
    assert b.pend[b.row_of("p") or 0].tolist() == [NO_PENDING, T0 + 60]
    c = FeatureStore(CFG, n_lenses=2)
    c.load_columns(a.columns(["l", "m"]), ["l", "m"])
    assert c.pend[c.row_of("p") or 0].tolist() == [NO_PENDING, T0 + 60]
    assert c.pend[c.row_of("q") or 0].tolist() == [NO_PENDING, NO_PENDING]


def test_state_written_before_the_pending_move_loads_without_one() -> None:
    a = _pending_store()
    rec = v1_record(a, a.row_of("p") or 0, ["l", "m"])
    rec["s"] = {name: entry[:5] for name, entry in rec["s"].items()}  # [segment, dwell, since, previous, version]
    b = FeatureStore(CFG, n_lenses=2)
    b.load_record("p", rec, ["l", "m"])
    assert b.pend[b.row_of("p") or 0].tolist() == [NO_PENDING, NO_PENDING]
    cols = a.columns(["l", "m"])
    del cols["pend"]
    c = FeatureStore(CFG, n_lenses=2)
    c.load_columns(cols, ["l", "m"])
    assert (c.pend[: len(c)] == NO_PENDING).all()
    cols = a.columns(["l", "m"])
    cols["pend"][0, 0] = 2**40  # outside int32 seconds
    with pytest.raises(StateError, match="pend"):
        FeatureStore(CFG, n_lenses=2).load_columns(cols, ["l", "m"])


def test_recency_is_capped_and_spend_floored() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    s.ingest("c", "e1", EventKind.REFUND, T0, 50.0)
    f = feats(s, "c", T0 + 1000 * DAY)
    assert f["recency_days"] == CFG.recency_cap_days
    assert f["spend"] == 0.0
    assert f["refund_rate"] == 1.0  # refunds without purchases


def test_amounts_are_clipped_so_values_stay_finite() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    for i in range(5):
        s.ingest("c", f"e{i}", EventKind.PURCHASE, T0 + i, 1e300)
    assert all(math.isfinite(v) for v in feats(s, "c", T0 + 10).values())


def test_out_of_range_time_is_a_schema_error() -> None:
    with pytest.raises(EventError) as err:
        FeatureStore.to_seconds(BASE_EPOCH + 100 * 365 * DAY)
    assert err.value.reason == "schema"
    assert err.value.field == "ts"


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(list(EventKind)),
        st.integers(0, 3 * DAY),
        st.floats(0, 500, allow_nan=False),
    ),
    min_size=1,
    max_size=25,
)


@given(events_strategy, st.randoms(use_true_random=False))
def test_out_of_order_events_are_applied_exactly(
    events: list[tuple[EventKind, int, float]], rnd: random.Random
) -> None:
    ordered = sorted(events, key=lambda e: e[1])
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = FeatureStore(CFG, 1), FeatureStore(CFG, 1)
    for i, (kind, dt, amount) in enumerate(ordered):
        a.ingest("c", f"x{i}-{dt}-{kind}-{amount}", kind, T0 + dt, amount)
    for i, (kind, dt, amount) in enumerate(shuffled):
        b.ingest("c", f"y{i}-{dt}-{kind}-{amount}", kind, T0 + dt, amount)
    at = T0 + 4 * DAY
    fa, fb = feats(a, "c", at), feats(b, "c", at)
    for name in FEATURE_NAMES:
        assert fb[name] == pytest.approx(fa[name], rel=1e-4, abs=1e-4), name


def test_dedup_remembers_the_last_n_event_ids_per_customer() -> None:
    s = FeatureStore(CFG, 1)
    assert s.ingest("c", "e0", EventKind.SESSION, T0, None) >= 0
    assert s.ingest("c", "e0", EventKind.SESSION, T0, None) == -1
    assert s.ingest("other", "e0", EventKind.SESSION, T0, None) >= 0  # per customer
    for i in range(1, CFG.dedup_size + 1):
        assert s.ingest("c", f"e{i}", EventKind.SESSION, T0 + i, None) >= 0
    # e0 fell out of the ring of 8: accepted again (the documented bound); e5 is still remembered
    assert s.ingest("c", "e5", EventKind.SESSION, T0 + 20, None) == -1
    assert s.ingest("c", "e0", EventKind.SESSION, T0 + 20, None) >= 0
    assert feats(s, "c", T0 + 20)["sessions"] == pytest.approx(CFG.dedup_size + 2, rel=1e-3)


def test_remove_frees_the_row_for_reuse_with_clean_state() -> None:
    s = FeatureStore(CFG, 2)
    r = s.ingest("a", "e1", EventKind.PURCHASE, T0, 10.0)
    s.set_segment(r, 1, 3, 5)
    assert s.remove("a") == r
    assert s.remove("a") is None
    assert "a" not in s
    r2 = s.ingest("b", "e1", EventKind.OTHER, T0, None)
    assert r2 == r
    assert s.segment(r2, 1) == -1
    assert feats(s, "b", T0)["aov"] == 0.0


def test_columns_grow_without_losing_state() -> None:
    s = FeatureStore(CFG, 1, capacity=16)
    for i in range(100):
        s.ingest(f"c{i}", "e", EventKind.PURCHASE, T0 + i, float(i))
    assert s.capacity >= 100
    assert feats(s, "c7", T0 + 100)["aov"] == 7.0
    assert s.ingest("c7", "e", EventKind.PURCHASE, T0 + 101, 1.0) == -1


def _fill(store: FeatureStore, ids: list[str]) -> None:
    for k, cid in enumerate(ids):
        row = store.ingest(cid, f"{cid}-1", EventKind.PURCHASE, T0 + (k % 7) * 3600, 20.0 + k)
        store.ingest(cid, f"{cid}-2", EventKind.PRODUCT_VIEW, T0 + (k % 5) * 3600, None)
        store.set_segment(row, 0, k % 3, k % 4)


def test_records_round_trip_exactly() -> None:
    a = FeatureStore(CFG, 1)
    _fill(a, [f"c{i}" for i in range(20)])
    b = FeatureStore(CFG, 1)
    for cid in reversed(list(a.customer_ids())):
        row = a.row_of(cid)
        assert row is not None
        b.load_record(cid, v1_record(a, row, ["value"]), ["value"])
    for cid in a.customer_ids():
        ra, rb = a.row_of(cid), b.row_of(cid)
        assert ra is not None and rb is not None
        assert a.vector(ra, T0 + DAY) == b.vector(rb, T0 + DAY)
        assert (a.segment(ra, 0), a.dwell_of(ra, 0)) == (b.segment(rb, 0), b.dwell_of(rb, 0))
        assert a.ingest(cid, f"{cid}-2", EventKind.OTHER, T0, None) == -1  # dedup ring restored
        assert b.ingest(cid, f"{cid}-2", EventKind.OTHER, T0, None) == -1
    with pytest.raises(StateError):
        b.load_record("x", {"f": [1.0]}, ["value"])


def test_columns_round_trip() -> None:
    a = FeatureStore(CFG, 1)
    _fill(a, [f"c{i}" for i in range(50)])
    a.remove("c3")
    b = FeatureStore(CFG, 1)
    b.load_columns(a.columns(["value"]), ["value"])
    assert sorted(b.customer_ids()) == sorted(a.customer_ids())
    for cid in a.customer_ids():
        ra, rb = a.row_of(cid), b.row_of(cid)
        assert ra is not None and rb is not None
        assert v1_record(a, ra, ["value"]) == v1_record(b, rb, ["value"])
    with pytest.raises(StateError):
        b.load_columns(a.columns(["value"]), ["other"])


def test_selection_order_does_not_depend_on_rows() -> None:
    ids = [f"cust-{i}" for i in range(300)]
    a, b = FeatureStore(CFG, 1), FeatureStore(CFG, 1)
    _fill(a, ids)
    shuffled = list(ids)
    random.Random(4).shuffle(shuffled)
    for cid in shuffled:  # same state, other rows
        row = a.row_of(cid)
        assert row is not None
        b.load_record(cid, v1_record(a, row, ["v"]), ["v"])
    for limit in (1, 17, 100, 1000):
        assert [a.id_of(r) for r in a.stalest(T0 + 5 * 3600, limit)] == [
            b.id_of(r) for r in b.stalest(T0 + 5 * 3600, limit)
        ]
    stale = [a.id_of(r) for r in a.stalest(T0 + 5 * 3600, 1000)]
    times = [a.scored_time(a.row_of(c)) for c in stale]  # type: ignore[arg-type]
    assert times == sorted(times) and max(times) < T0 + 5 * 3600
    assert a.rows_in_segment(0, 1) == sorted(a.rows_in_segment(0, 1), key=a.id_of)
    assert a.segment_counts(0) == {0: 100, 1: 100, 2: 100}


def test_matrix_matches_vector() -> None:
    s = FeatureStore(CFG, 1)
    _fill(s, [f"c{i}" for i in range(40)])
    rows = np.array([s.row_of(f"c{i}") for i in range(40)], dtype=np.intp)
    times = np.full(len(rows), T0 + 3 * DAY, dtype=np.int64)
    m = s.matrix(rows, times)
    for k, row in enumerate(rows.tolist()):
        np.testing.assert_allclose(m[k], s.vector(row, T0 + 3 * DAY), rtol=1e-9, atol=1e-12)


def test_memory_per_customer_at_100k() -> None:
    """Everything the store holds per customer (columns, id index) <= 256 bytes; no Python object per customer."""
    n = 100_000
    ids = [f"cust-{i:07d}" for i in range(n)]
    FeatureStore(CFG, n_lenses=2).ingest("warm-up", "e", EventKind.PURCHASE, T0, 1.0)  # loads the compiled index
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    s = FeatureStore(CFG, n_lenses=2)
    for i, cid in enumerate(ids):
        s.ingest(cid, "e", EventKind.PURCHASE, T0 + i, 10.0)
    used, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    per_customer = (used - base) / n
    assert per_customer <= 256, per_customer
    assert per_customer - s.nbytes() / n < 4, (per_customer, s.nbytes() / n)  # all of it in the arrays


def _random_store(rng: random.Random, *, events: int, customers: int, days: int, sigma: float) -> FeatureStore:
    """A store fed ``events`` events of every kind, at random times over ``days`` days, log-normal amounts."""
    s = FeatureStore(CFG, n_lenses=1)
    kinds = list(EventKind)
    for i in range(events):
        s.ingest(f"c{rng.randrange(customers)}", f"e{i}", rng.choice(kinds), T0 + rng.randrange(days * DAY),
                 rng.lognormvariate(3.0, sigma))  # fmt: skip
    return s


def test_compiled_vector_equals_the_reference_bit_for_bit() -> None:
    """``kernel._vector`` (the event loop's features) and :meth:`FeatureStore.vector` agree exactly."""
    rng = random.Random(5)
    s = _random_store(rng, events=400, customers=30, days=90, sigma=1.0)
    assert len(FEATURE_NAMES) == N_FEATURES
    out = np.empty(N_FEATURES, np.float64)
    rates = s.kernel_rates()
    for cid in s.customer_ids():
        row = s.row_of(cid)
        assert row is not None
        at = s.last_time(row) + rng.randrange(400 * DAY)
        _vector(s.f, s.t, row, at, rates, out)
        assert out.tolist() == s.vector(row, at), cid


def test_ids_of_many_rows_matches_id_of_and_refuses_a_free_row() -> None:
    s = FeatureStore(CFG, n_lenses=1)
    for i, cid in enumerate(["a", "bé", "c" * 30]):
        s.ingest(cid, f"e{i}", EventKind.PURCHASE, T0 + i, 10.0)
    rows = np.array([2, 0, 1, 0], np.int64)
    assert s.ids_of(rows) == [s.id_of(r) for r in rows.tolist()] == ["c" * 30, "a", "bé", "a"]
    freed = s.remove("a")
    assert freed is not None
    with pytest.raises(KeyError):
        s.ids_of(np.array([1, freed], np.int64))
    with pytest.raises(KeyError):
        s.ids_of(np.array([99], np.int64))


def test_a_row_costs_the_bytes_of_the_stores_table() -> None:
    """143 bytes per allocated row with two lenses and 8 event-id hashes (the table in FeatureStore's notes)."""
    assert CFG.dedup_size == 8
    small, large = FeatureStore(CFG, n_lenses=2, capacity=10_000), FeatureStore(CFG, n_lenses=2, capacity=20_000)
    assert (large.nbytes() - small.nbytes()) / 10_000 == 143


def _numpy_matrix(s: FeatureStore, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The refinement's features as its numpy pass computed them (numpy's ``exp``), the reference of ``fill``."""
    f = s.f[rows].astype(np.float64)
    tt = s.t[rows].astype(np.int64)
    dt = np.maximum(t - tt[:, 1], 0).astype(np.float64)
    ka, kf, ks, cap = s.kernel_rates().tolist()
    fa = np.exp(-dt * ka)
    npur, nref, cart, pview, pact = f[:, 7], f[:, 9], f[:, 4], f[:, 3], f[:, 6]
    ref = np.where(tt[:, 2] == -(2**31), tt[:, 0], tt[:, 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = [np.minimum((t - ref) / DAY, cap), (t - tt[:, 0]) / DAY, f[:, 0] * np.exp(-dt * kf),
                np.maximum(f[:, 1] * np.exp(-dt * ks), 0.0), np.where(npur > 0, f[:, 8] / npur, 0.0),
                f[:, 2] * fa, pview * fa, cart * fa, np.where(cart > 0, 1.0 - np.minimum(1.0, pact / cart), 0.0),
                np.where(pview > 0, np.minimum(1.0, pact / pview), 0.0), f[:, 5] * fa,
                np.where(npur > 0, np.minimum(1.0, nref / npur), np.where(nref > 0, 1.0, 0.0)), npur,
                np.maximum(f[:, 8] - f[:, 10], 0.0)]  # fmt: skip
    return np.stack(cols, axis=1)


def test_vectors_at_equal_the_numpy_pass_bit_for_bit() -> None:
    """Only the columns asked for, in their order, each exactly as numpy computes it; ``latest_by`` leaves out
    the customers whose latest event is after it; rows ordered by crc32 of the id."""
    s = _random_store(random.Random(8), events=3000, customers=400, days=300, sigma=1.5)
    at = T0 + 200 * DAY
    live = np.flatnonzero(s.live)
    order = live[np.argsort(s.crc[live], kind="stable")]
    full = _numpy_matrix(s, order, np.maximum(s.t[order, 1].astype(np.int64), at))
    for cols in (None, [0, 4, 12, 13], [13, 5, 6, 8, 9, 10], [2, 3, 11, 1, 7]):
        rows, mat = s.vectors_at(at, cols)
        assert rows.tolist() == order.tolist()
        want = full if cols is None else full[:, cols]
        assert mat.tobytes() == want.tobytes(), cols
    rows, mat = s.vectors_at(at, [0, 6], latest_by=at)
    kept = s.t[order, 1] <= at
    assert 0 < kept.sum() < len(order)
    assert rows.tolist() == order[kept].tolist()
    assert mat.tobytes() == full[kept][:, [0, 6]].tobytes()


def test_vectors_by_are_the_column_selections_of_vectors_at_in_their_layout() -> None:
    """Bit for bit and in the selection's layout (Fortran order): the refinement's mean and std sum a contiguous
    column pairwise (:mod:`segmenter.lenses.population`), so the layout decides the numbers too."""
    s = _random_store(random.Random(9), events=3000, customers=400, days=300, sigma=1.5)
    at = T0 + 200 * DAY
    groups = [[0, 4, 12, 13], [13, 5, 6, 8, 9], [7]]
    union = sorted({c for g in groups for c in g})
    for latest_by in (None, at):
        rows, mat = s.vectors_at(at, union, latest_by=latest_by)
        got_rows, mats = s.vectors_by(at, groups, latest_by=latest_by)
        assert got_rows.tolist() == rows.tolist()
        for group, got in zip(groups, mats, strict=True):
            want = mat[:, [union.index(c) for c in group]]
            layout = (want.flags.c_contiguous, want.flags.f_contiguous)
            assert (got.flags.c_contiguous, got.flags.f_contiguous) == layout
            assert got.shape == want.shape and got.tobytes(order="A") == want.tobytes(order="A"), group
