"""Config validation, scaling, naming, hysteresis and the river adapters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from river import cluster

from segmenter.errors import ConfigError, StateError
from segmenter.features import NO_PENDING
from segmenter.lenses import FlapTracker, Hysteresis, LensConfig, OnlineScaler, parse_lens_config
from segmenter.lenses.hysteresis import nearest_with_hysteresis, pending_since, waited
from segmenter.lenses.models import DEFAULT_KMEANS_HALFLIFE, KMeansModel, make_model, validate_params
from segmenter.lenses.naming import derive_name, still_fits, unique_names

from .helpers import ALGOS, PARAMS, blobs


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"algorithm": "kmedoids"}, "algorithm"),
        ({"params": {"n_clusterz": 3}}, "params.n_clusterz"),
        ({"params": {"seed": 3}}, "params.seed"),
        ({"params": {"halflife": 0}}, "params.halflife"),
        ({"params": {"n_clusters": "5"}}, "params.n_clusters"),
        ({"params": {"n_clusters": 40}}, "max_segments"),
        ({"features": ["spend", "spend"]}, "features"),
        ({"log_features": ["aov"]}, "log_features"),
        ({"name": "Value Lens"}, "name"),
        ({"names": {0: "x"}}, "names.0"),
        ({"algorithm": "denstream", "params": {"beta": 0.2, "mu": 2}}, "params.mu"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, object], field: str) -> None:
    data = {"name": "value", "features": ["spend", "frequency"], "algorithm": "kmeans", **overrides}
    with pytest.raises(ConfigError, match=f"'{field}'"):
        LensConfig(**data)


def test_parse_lens_config_turns_type_errors_into_config_errors() -> None:
    with pytest.raises(ConfigError, match="'warmup'"):
        parse_lens_config({"name": "v", "features": ["spend"], "warmup": "soon"})
    with pytest.raises(ConfigError, match="'extra'"):
        parse_lens_config({"name": "v", "features": ["spend"], "extra": 1})
    assert parse_lens_config({"name": "v", "features": ["spend"]}).algorithm == "kmeans"


@pytest.mark.parametrize("algorithm", ALGOS)
def test_every_algorithm_validates_its_defaults(algorithm: str) -> None:
    assert validate_params(algorithm, PARAMS[algorithm]) == PARAMS[algorithm]


def test_scaler_log1p_welford_and_non_finite() -> None:
    sc = OnlineScaler(["spend", "conversion"])
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.lognormal(3, 1, 500), rng.uniform(0, 1, 500)])
    _, first = sc.learn(data[:200])
    transformed, scaled = sc.learn(data[200:])
    t = np.column_stack([np.log1p(data[:, 0]), data[:, 1]])
    assert np.allclose(sc.mean, t.mean(axis=0)) and np.allclose(sc.std, t.std(axis=0))
    assert np.allclose(transformed, t[200:])
    assert np.allclose(scaled[-1], sc.snapshot().scale(t[-1]))  # each row scaled just after its own update
    whole = OnlineScaler(["spend", "conversion"])
    _, scaled_whole = whole.learn(data)
    assert np.array_equal(scaled_whole, np.vstack([first, scaled]))  # hand-over cuts do not matter
    assert np.allclose(sc.transform_matrix(data), t)
    snap = sc.snapshot()
    assert np.allclose(snap.inverse(snap.scale(sc.transform(data[7]))), data[7])
    for bad in ([math.nan, 1.0], [1.0, math.inf], [-math.inf, 0.0]):
        with pytest.raises(ValueError):
            sc.transform(bad)
        with pytest.raises(ValueError):
            sc.transform_matrix(np.array([bad]))
    assert sc.transform([1e308, 1e308]) is not None  # overflowing sum is not a false alarm
    with pytest.raises(StateError):
        sc.load_state({"n": 1, "mean": [0.0], "m2": [0.0]})


def test_names_unique_overridable_and_sticky() -> None:
    assert derive_name({"recency_days": -1.0, "frequency": 2.0, "spend": 0.6}) == "frequent · recent · high spend"
    zs = {1: {"spend": 1.0, "aov": 0.1}, 2: {"spend": 1.1, "aov": -0.2}, 3: {"spend": -1.0, "aov": 0.0}}
    names = unique_names(zs, {3: "bargain hunters"})
    assert names[3] == "bargain hunters" and len(set(names.values())) == 3
    assert still_fits("high spend", {"spend": 0.3, "aov": 0.2})
    assert not still_fits("high spend", {"spend": -0.3, "aov": 0.2})
    assert not still_fits("high spend", {"spend": 0.6, "aov": 1.5})
    assert unique_names({1: {"spend": 0.3}}, {}, {1: "high spend"}) == {1: "high spend"}


def test_names_that_say_the_same_in_another_order_are_not_both_used() -> None:
    # both segments rank the same three features, in a different order
    zs = {
        1: {"spend": 2.0, "aov": 1.9, "frequency": 1.0, "recency_days": -0.4},
        2: {"aov": 2.0, "spend": 1.9, "frequency": 1.0, "recency_days": 0.5},
    }
    names = unique_names(zs, {})
    terms = [frozenset(name.split(" · ")) for name in names.values()]
    assert terms[0] != terms[1], names


@pytest.mark.parametrize("hours", [-1.0, float("inf"), float("nan"), 24 * 365 + 1.0])
def test_pending_move_hours_is_validated(hours: float) -> None:
    data = {"name": "value", "features": ["spend", "frequency"], "pending_move_hours": hours}
    with pytest.raises(ConfigError, match="'pending_move_hours'"):
        parse_lens_config(data)


@pytest.mark.parametrize("days", [-1.0, float("inf"), float("nan"), 366.0, "soon"])
def test_min_dwell_days_is_validated(days: object) -> None:
    data = {"name": "value", "features": ["spend", "frequency"], "min_dwell_days": days}
    with pytest.raises(ConfigError, match="'min_dwell_days'"):
        parse_lens_config(data)


def test_hysteresis_rule_and_flap_tracker() -> None:
    h = Hysteresis(margin=0.25, min_dwell=3)

    def decide(current: int | None, live: bool, d_cur: float | None, d_near: float, dwell: int) -> bool:
        return h.decide(current=current, current_live=live, d_current=d_cur, nearest=2, d_nearest=d_near, dwell=dwell)

    assert decide(None, False, None, 5.0, 0)
    assert decide(1, False, 1.0, 5.0, 0)  # current segment no longer live
    assert not decide(1, True, 1.0, 0.8, 9)
    assert decide(1, True, 1.0, 0.7, 3)
    assert not decide(1, True, 1.0, 0.1, 2)
    t = FlapTracker(window=3)
    assert [t.record("x", s) for s in (1, 2, 1, 2, 3)] == [False, False, True, True, False]
    assert t.moves == 4 and t.rate == 0.5


def test_time_dwell_holds_only_a_move_back_to_the_segment_just_left() -> None:
    """Within ``min_dwell_s`` a customer may move on (its first segment is provisional); it may not go back."""
    h = Hysteresis(margin=0.25, min_dwell=2, min_dwell_s=7 * 86_400, return_window_s=7 * 86_400, return_margin=0.85)
    x = np.array([0.0, 0.0])
    centers = np.array([[3.0, 0.0], [0.5, 0.0]])  # segment 1 far, segment 2 near
    live = np.array([1, 2], np.int64)
    day = 86_400

    def move(prev: int, age: int) -> bool:
        moved = nearest_with_hysteresis(x, centers, live, 2, 2, 1, 5, age, prev, -1, h.params())[0]
        readable = h.decide(
            current=1,
            current_live=True,
            d_current=3.0,
            nearest=2,
            d_nearest=0.5,
            dwell=5,
            age=age,
            previous=None if prev < 0 else prev,
        )
        assert moved == readable
        return bool(moved)

    assert move(prev=-1, age=day)  # from a first assignment: on at once
    assert move(prev=7, age=day)  # onwards to a third segment
    assert not move(prev=2, age=day)  # back to the segment just left: held for the week
    assert not move(prev=2, age=7 * day - 1)
    assert move(prev=2, age=7 * day)


def test_dwell_time_lets_a_quiet_customer_move_on_but_not_back() -> None:
    """Fewer than ``min_dwell`` events: an onward move waits for ``dwell_time_s``; a move back for ``min_dwell_s``."""
    day = 86_400
    h = Hysteresis(margin=0.25, min_dwell=6, dwell_time_s=2 * day, min_dwell_s=7 * day)
    x = np.array([0.0, 0.0])
    centers = np.array([[3.0, 0.0], [0.5, 0.0]])  # own segment 1 far, segment 2 clearly nearer
    live = np.array([1, 2], np.int64)

    def move(dwell: int, age: int, prev: int = -1, rule: Hysteresis = h) -> bool:
        moved = nearest_with_hysteresis(x, centers, live, 2, 2, 1, dwell, age, prev, -1, rule.params())[0]
        readable = rule.decide(
            current=1,
            current_live=True,
            d_current=3.0,
            nearest=2,
            d_nearest=0.5,
            dwell=dwell,
            age=age,
            previous=None if prev < 0 else prev,
        )
        assert moved == readable
        return bool(moved)

    assert not move(dwell=1, age=2 * day - 1)  # neither dwell met yet
    assert move(dwell=1, age=2 * day)  # the dwell time, with one event
    assert move(dwell=0, age=3 * day, prev=7)  # onwards to a third segment, no event since (an inactivity sweep)
    assert move(dwell=6, age=0)  # the event count, whichever comes first
    assert not move(dwell=1, age=2 * day, prev=2)  # back to the segment just left: still the week
    assert not move(dwell=1, age=7 * day - 1, prev=2)
    assert move(dwell=1, age=7 * day, prev=2)
    assert not move(dwell=1, age=10**9, rule=Hysteresis(margin=0.25, min_dwell=6))  # no dwell time: the count alone


def test_pending_move_goes_without_the_margin_after_the_hold() -> None:
    """Nearest elsewhere for ``hold_s``: the customer moves though the margin holds it; a move back still waits."""
    h = Hysteresis(margin=0.25, min_dwell=2, min_dwell_s=7 * 86_400, hold_s=2 * 86_400)
    x = np.array([0.0, 0.0])
    centers = np.array([[1.0, 0.0], [0.9, 0.0]])  # segment 2 nearer than the own segment 1, within the margin
    live = np.array([1, 2], np.int64)
    day = 86_400

    def move(wait: int, prev: int = -1, age: int = day, dwell: int = 5) -> bool:
        moved, segment, nearest, distance = nearest_with_hysteresis(
            x, centers, live, 2, 2, 1, dwell, age, prev, wait, h.params()
        )
        readable = h.decide(
            current=1,
            current_live=True,
            d_current=1.0,
            nearest=2,
            d_nearest=0.9,
            dwell=dwell,
            age=age,
            previous=None if prev < 0 else prev,
            pending=wait,
        )
        assert moved == readable and nearest == 2
        assert (segment, distance) == ((2, 0.9) if moved else (1, 1.0))
        return bool(moved)

    assert not move(wait=-1)  # no stretch yet
    assert not move(wait=2 * day - 1)
    assert move(wait=2 * day)
    assert not move(wait=2 * day, dwell=1)  # the event dwell still holds
    assert not move(wait=2 * day, prev=2)  # back to the segment just left within the week: still held
    assert move(wait=2 * day, prev=2, age=7 * day)
    assert not Hysteresis(margin=0.25).decide(
        current=1, current_live=True, d_current=1.0, nearest=2, d_nearest=0.9, dwell=5, pending=10**9
    )  # no hold set: the margin alone


def test_shrinking_margin_lets_a_clear_pending_move_go_before_the_hold() -> None:
    """With ``shrink`` the margin falls linearly over the hold: half-way, half the margin is asked."""
    day = 86_400
    x = np.array([0.0, 0.0])
    live = np.array([1, 2], np.int64)

    def move(h: Hysteresis, d_near: float, wait: int, prev: int = -1, age: int = day) -> bool:
        centers = np.array([[1.0, 0.0], [d_near, 0.0]])  # own segment 1 at 1.0, segment 2 at d_near
        moved = nearest_with_hysteresis(x, centers, live, 2, 2, 1, 5, age, prev, wait, h.params())[0]
        readable = h.decide(
            current=1,
            current_live=True,
            d_current=1.0,
            nearest=2,
            d_nearest=d_near,
            dwell=5,
            age=age,
            previous=None if prev < 0 else prev,
            pending=wait,
        )
        assert moved == readable
        return bool(moved)

    shrinking = Hysteresis(margin=0.4, min_dwell=2, min_dwell_s=7 * day, hold_s=4 * day, shrink=True)
    fixed = Hysteresis(margin=0.4, min_dwell=2, min_dwell_s=7 * day, hold_s=4 * day)
    assert not move(shrinking, 0.7, wait=-1)  # no pending stretch: the whole margin (0.7 > 0.6)
    assert not move(shrinking, 0.7, wait=0)
    assert not move(shrinking, 0.85, wait=2 * day)  # half-way: keep 0.8
    assert move(shrinking, 0.75, wait=2 * day)
    assert not move(fixed, 0.75, wait=2 * day)  # without shrink: the margin until the hold ends
    assert move(shrinking, 0.94, wait=3 * day + 43_200)  # 7/8 of the hold: keep 0.95
    assert not move(shrinking, 0.99, wait=3 * day)  # keep 0.9
    assert move(shrinking, 0.99, wait=4 * day)  # the hold: no margin at all
    assert not move(shrinking, 0.5, wait=2 * day, prev=2)  # a move back within the week stays held


def test_pending_stretch_starts_once_and_ends_at_the_own_segment() -> None:
    start = pending_since(NO_PENDING, 100, 1, 2)
    assert start == 100 and waited(start, 100) == 0
    assert pending_since(start, 500, 1, 3) == 100 and waited(100, 500) == 400  # nearest elsewhere, still: kept
    assert pending_since(start, 600, 1, 1) == NO_PENDING  # nearest is the own segment again: ended
    assert pending_since(NO_PENDING, 600, 1, -1) == NO_PENDING  # no live segment
    assert waited(NO_PENDING, 600) == -1


_coord = st.floats(-4.0, 4.0, allow_nan=False, width=32)


@st.composite
def _decisions(
    draw: st.DrawFn,
) -> tuple[list[float], list[list[float]], list[int], int, int, int, int, int, Hysteresis]:
    d = draw(st.integers(1, 4))
    n = draw(st.integers(0, 6))
    live = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n, unique=True))
    centers = [draw(st.lists(_coord, min_size=d, max_size=d)) for _ in range(n)]
    if n and draw(st.booleans()):  # duplicate centers: ties must go to the first
        centers[-1] = list(centers[0])
    x = draw(st.lists(_coord, min_size=d, max_size=d))
    cur = draw(st.sampled_from([-1, 41, *live]))
    h = Hysteresis(
        margin=draw(st.sampled_from([0.0, 0.1, 0.5, 0.9])),
        min_dwell=draw(st.integers(0, 4)),
        min_dwell_s=draw(st.sampled_from([0, 100])),
        return_window_s=draw(st.sampled_from([0, 500])),
        return_margin=draw(st.sampled_from([0.0, 0.3, 0.95])),
        hold_s=draw(st.sampled_from([math.inf, 0, 300])),
        shrink=draw(st.booleans()),
        dwell_time_s=draw(st.sampled_from([math.inf, 0, 100, 500])),
    )
    age = draw(st.sampled_from([0, 99, 100, 499, 500, 10_000]))
    prev = draw(st.sampled_from([-1, 41, *live]))
    wait = draw(st.sampled_from([-1, 0, 299, 300, 10_000]))
    return x, centers, live, cur, draw(st.integers(0, 6)), age, prev, wait, h


@given(_decisions())
def test_compiled_move_rule_is_the_hysteresis_rule(
    case: tuple[list[float], list[list[float]], list[int], int, int, int, int, int, Hysteresis],
) -> None:
    """``nearest_with_hysteresis`` (event loop and ``Lens.assign``) decides as ``Hysteresis.decide`` states."""
    x, centers, live, cur, dwell, age, prev, wait, h = case
    d = len(x)
    got = nearest_with_hysteresis(
        np.array(x),
        np.array(centers, np.float64).reshape(len(live), d),
        np.array(live, np.int64),
        len(live),
        d,
        cur,
        dwell,
        age,
        prev,
        wait,
        h.params(),
    )
    moved, segment, nearest, distance = got
    if not live:
        assert (moved, segment, nearest) == (cur >= 0, -1, -1) and math.isnan(distance)
        return
    dists = []
    for c in centers:  # the summation order of the compiled rule
        s = 0.0
        for a, b in zip(x, c, strict=True):
            s += (a - b) * (a - b)
        dists.append(math.sqrt(s))
    best = dists.index(min(dists))
    current_live = cur in live
    expect_moved = h.decide(
        current=None if cur < 0 else cur,
        current_live=current_live,
        d_current=dists[live.index(cur)] if current_live else None,
        nearest=live[best],
        d_nearest=dists[best],
        dwell=dwell,
        age=age,
        previous=None if prev < 0 else prev,
        pending=wait,
    )
    expect_segment = live[best] if expect_moved else cur
    assert (moved, segment, nearest) == (expect_moved, expect_segment, live[best])
    assert distance == pytest.approx(dists[live.index(expect_segment)], rel=1e-12, abs=1e-12)


def test_kmeans_fast_learn_equals_river() -> None:
    X, _ = blobs(500, seed=3)
    model = KMeansModel({"n_clusters": 4, "halflife": 0.3}, dim=3, seed=11)
    model.learn_many(X[:1])
    model.learn_many(X[1:])
    ref = cluster.KMeans(n_clusters=4, halflife=0.3, seed=11)
    for x in X:
        ref.learn_one(dict(enumerate(x.tolist())))  # type: ignore[no-untyped-call]
    expected = np.array([[c[j] for j in range(3)] for c in ref.centers.values()])
    assert np.array_equal(model.centers(), expected)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_adapter_quirks_no_centers_before_learning_and_pure_reads(algorithm: str) -> None:
    model = make_model(algorithm, PARAMS[algorithm], dim=3, seed=1)
    assert model.centers().shape == (0, 3)
    X, _ = blobs(400, seed=1)
    model.learn_many(X)
    first = model.centers()
    assert first.ndim == 2 and first.shape[1] == 3 and len(first) >= 1
    assert len(model.weights()) == len(first)
    assert np.array_equal(model.centers(), first)  # reading does not change the model
    restored = make_model(algorithm, PARAMS[algorithm], dim=3, seed=1)
    restored.load_state(model.state())
    model.learn_many(X[:50])
    restored.learn_many(X[:50])
    assert np.array_equal(model.centers(), restored.centers())


def test_kmeans_defaults_to_a_small_step_but_honours_the_config() -> None:
    assert KMeansModel(dim=2, seed=1, params={"n_clusters": 3}).model.halflife == DEFAULT_KMEANS_HALFLIFE
    assert KMeansModel(dim=2, seed=1, params={"n_clusters": 3, "halflife": 0.3}).model.halflife == 0.3
