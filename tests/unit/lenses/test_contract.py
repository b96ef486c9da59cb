"""Contract tests run against every algorithm (in the spirit of river's test_estimators.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics import adjusted_rand_score

from segmenter import codec
from segmenter.lenses import Lens
from segmenter.lenses.models import make_model
from segmenter.outputs import Explanation, SegmentLifecycle

from .helpers import ALGOS, BLOBS, PARAMS, blobs, config, feed, make_lens

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_warmup_gates_readiness(algorithm: str) -> None:
    lens = make_lens(algorithm, warmup=300)
    X, _ = blobs(400)
    for i, x in enumerate(X[:299]):
        assert lens.observe(x) == []
        assert not lens.ready, i
        a = lens.assign(x, None, 0)
        assert (a.segment, a.nearest, a.distance, a.moved) == (None, None, None, False)
    messages = lens.observe(X[299])
    assert lens.ready
    assert lens.model_version == 1
    assert messages and {m.action for m in messages} == {"born"}
    assert all(isinstance(m, SegmentLifecycle) and m.model_version == 1 for m in messages)


@pytest.mark.parametrize("algorithm", ALGOS)
def test_assignments_in_range_and_ids(algorithm: str) -> None:
    lens = make_lens(algorithm)
    X, _ = blobs(1500)
    messages = feed(lens, X)
    live = lens.registry.live()
    assert 1 <= len(live) <= lens.config.max_segments
    born = [m.segment.id for m in messages if m.action == "born"]
    assert len(born) == len(set(born)), "a segment was born twice"
    for x in X[:300]:
        a = lens.assign(x, None, 0)
        assert a.segment in live and a.nearest == a.segment and a.moved
        assert a.distance is not None and a.distance >= 0.0
        ref = lens.ref(a.segment)
        assert ref.id == f"t-{a.segment}" and ref.name
        assert lens.is_live(a.segment)
    names = [p.name for p in lens.profiles()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("algorithm", ALGOS)
def test_ari_against_ground_truth_and_batch_kmeans(algorithm: str) -> None:
    lens = make_lens(algorithm)
    X, truth = blobs(3000, seed=1)
    feed(lens, X)
    lens.refine(X[-1000:])
    pred = [lens.assign(x, None, 0).segment for x in X]
    assert adjusted_rand_score(truth, pred) >= 0.9
    batch = SkKMeans(n_clusters=4, n_init=10, random_state=0).fit_predict(X)
    assert adjusted_rand_score(batch, pred) >= 0.9


@pytest.mark.parametrize("algorithm", ALGOS)
def test_ids_stable_under_slow_drift(algorithm: str) -> None:
    """Blobs drift slowly; each blob keeps its segment id across many refreshes."""
    lens = make_lens(algorithm, refresh_every=100)
    rng = np.random.default_rng(5)
    X, _ = blobs(600, seed=2)
    feed(lens, X)
    lens.refine(X)
    probes = BLOBS.copy()
    first = [lens.assign(p, None, 0).segment for p in probes]
    assert len(set(first)) == 4
    versions = lens.model_version
    shift = np.array([0.0, 0.0, 0.0])
    for step in range(20):
        shift += np.array([0.05, 0.03, 0.0])
        idx = rng.integers(0, 4, 200)
        batch = BLOBS[idx] + shift + rng.normal(0.0, 0.5, (200, 3))
        feed(lens, batch)
        if step % 5 == 4:
            lens.refine(batch)
        now = [lens.assign(p + shift, None, 0).segment for p in probes]
        assert now == first, (step, now, first)
    # k-means lenses publish at every refresh; summarising ones at their refinements (segments stay between)
    assert lens.model_version > versions + (3 if lens.model.summarises else 5)


@pytest.mark.parametrize("algorithm", [a for a in ALGOS if make_lens(a).model.summarises])
def test_summarised_segments_stay_at_the_refinement_until_the_next(algorithm: str) -> None:
    """Between refinements the summary learns a shifted population; the segments wait for the next refinement."""
    lens = make_lens(algorithm, refresh_every=100)
    X, _ = blobs(600, seed=2)
    feed(lens, X)
    lens.refine(X)
    refined = [p.centroid for p in lens.profiles()]
    rng = np.random.default_rng(5)
    moved = BLOBS[rng.integers(0, 4, 800)] + np.array([0.6, 0.4, 0.0]) + rng.normal(0.0, 0.5, (800, 3))
    assert [m.action for m in feed(lens, moved)] == []
    assert [p.centroid for p in lens.profiles()] == refined
    lens.refine(moved)
    after = np.array([[p.centroid[f] for f in "abc"] for p in lens.profiles()])
    assert np.abs(np.sort(after[:, 0]) - (np.sort(BLOBS[:, 0]) + 0.6)).max() < 0.3


def _refined_with_a_blob_to_move(algorithm: str, retire_after: int) -> tuple[Lens, int, np.ndarray]:
    """A lens refined on the four blobs, the segment of blob 3, and the blobs with blob 3 moved far away."""
    lens = make_lens(algorithm, refresh_every=100, retire_after=retire_after)
    X, _ = blobs(1000, seed=3)
    feed(lens, X)
    lens.refine(X)
    old_seg = lens.assign(BLOBS[3], None, 0).segment
    assert old_seg is not None
    moved = BLOBS.copy()
    moved[3] = [-12.0, -12.0, 12.0]
    return lens, old_seg, moved


@pytest.mark.parametrize("algorithm", ALGOS)
def test_ids_never_reused_and_lifecycle_on_moving_population(algorithm: str) -> None:
    """One blob vanishes and a far new one appears: a new segment is born, the old one goes.

    "Far" means beyond the drift a segment may follow between two refreshes
    (``CONTINUITY_FACTOR`` match thresholds, in scaled units): the new blob is
    about 4.8 scaled units from the old one.
    """
    lens, old_seg, moved = _refined_with_a_blob_to_move(algorithm, retire_after=2)
    messages = []
    for round_ in range(8):
        Y, _ = blobs(500, seed=10 + round_, centers=moved)
        messages += feed(lens, Y)
        messages += lens.refine(Y)
    new_seg = lens.assign(moved[3], None, 0).segment
    assert new_seg is not None and new_seg > old_seg
    actions = {(m.action, m.segment.id) for m in messages}
    assert ("born", f"t-{new_seg}") in actions
    assert not lens.is_live(old_seg)
    assert ("retired", f"t-{old_seg}") in actions or ("merged", f"t-{old_seg}") in actions
    born = [m.segment.id for m in messages if m.action == "born"]
    assert len(born) == len(set(born))
    assert f"t-{old_seg}" not in born
    numbers = sorted(lens.registry.segments)
    assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("algorithm", ALGOS)
def test_refine_merges_collapsed_segments(algorithm: str) -> None:
    """Two blobs fuse into one: refinement collapses their segments and reports a merge."""
    lens = make_lens(algorithm)
    X, _ = blobs(800, seed=4)
    feed(lens, X)
    lens.refine(X)
    a = lens.assign(BLOBS[1], None, 0).segment
    b = lens.assign(BLOBS[2], None, 0).segment
    assert a is not None and b is not None and a != b
    fused = BLOBS.copy()
    fused[1] = fused[2] = [3.0, 3.0, 0.0]
    Y, _ = blobs(800, seed=5, centers=fused, spread=0.3)
    messages = lens.refine(Y)
    merged = [m for m in messages if m.action == "merged"]
    assert merged, [m.action for m in messages]
    loser, winner = max(a, b), min(a, b)
    assert merged[0].segment.id == f"t-{loser}" and merged[0].related == [f"t-{winner}"]
    assert not lens.is_live(loser) and lens.is_live(winner)
    after = lens.assign(np.array([3.0, 3.0, 0.0]), loser, 10)
    assert after.segment == winner and after.moved


@pytest.mark.parametrize("algorithm", ALGOS)
def test_hysteresis_prevents_flapping_at_a_boundary(algorithm: str) -> None:
    lens = make_lens(algorithm, margin=0.2, min_dwell=2)
    X, _ = blobs(800, seed=6)
    feed(lens, X)
    lens.refine(X)
    a = lens.assign(BLOBS[0], None, 0).segment
    b = lens.assign(BLOBS[1], None, 0).segment
    assert a is not None and b is not None
    mid = (BLOBS[0] + BLOBS[1]) / 2.0
    rng = np.random.default_rng(0)
    current: int | None = a
    dwell, moves, raw_moves, last_nearest = 5, 0, 0, None
    for _ in range(200):
        x = mid + np.array([rng.uniform(-0.3, 0.3), 0.0, 0.0])
        res = lens.assign(x, current, dwell)
        if last_nearest is not None and res.nearest != last_nearest:
            raw_moves += 1
        last_nearest = res.nearest
        if res.moved:
            moves += 1
            current, dwell = res.segment, 0
        else:
            dwell += 1
    assert raw_moves > 20, "the probe does not straddle the boundary"
    assert moves == 0
    # A clearly better segment wins once the dwell is satisfied, not before.
    assert lens.assign(BLOBS[1], a, 1).segment == a
    res = lens.assign(BLOBS[1], a, 2)
    assert res.segment == b and res.moved and res.nearest == b


@pytest.mark.parametrize("algorithm", ALGOS)
def test_explanation(algorithm: str) -> None:
    lens = make_lens(algorithm)
    X, _ = blobs(800, seed=7)
    feed(lens, X)
    lens.refine(X)
    a = lens.assign(BLOBS[0], None, 0).segment
    b = lens.assign(BLOBS[1], None, 0).segment
    assert a is not None and b is not None
    x = np.array([5.5, 0.2, 0.1])
    ex = lens.explain(x, a, b)
    assert isinstance(ex, Explanation)
    assert ex.top_features and ex.top_features[0]["feature"] == "a"
    top = ex.top_features[0]
    assert top["value"] == pytest.approx(5.5) and top["contribution"] > 0 and top["z"] > 0
    assert ex.distance_to_new is not None and ex.distance_to_old is not None
    assert ex.distance_to_new < ex.distance_to_old
    assert ex.distance_to_new == pytest.approx(lens.assign(x, None, 0).distance)
    assert ex.runner_up is not None and ex.runner_up.id != f"t-{b}"
    assert ex.distance_to_runner_up is not None and ex.distance_to_runner_up >= ex.distance_to_new
    entering = lens.explain(x, None, b)
    assert entering.distance_to_old is None and entering.top_features
    leaving = lens.explain(x, a, None)
    assert leaving.distance_to_new is None


@pytest.mark.parametrize("algorithm", ALGOS)
def test_non_finite_rejected(algorithm: str) -> None:
    lens = make_lens(algorithm, warmup=50)
    X, _ = blobs(300)
    feed(lens, X)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.array([0.0, bad, 1.0])
        with pytest.raises(ValueError):
            lens.observe(x)
        with pytest.raises(ValueError):
            lens.assign(x, None, 0)
        with pytest.raises(ValueError):
            lens.refine(np.array([x]))
    # the lens still works
    assert lens.assign(BLOBS[0], None, 0).segment is not None


def _run(lens: Lens, ops: list[tuple[str, int]], X: np.ndarray) -> list[object]:
    out: list[object] = []
    current: int | None = None
    for op, i in ops:
        x = X[i % len(X)]
        if op == "observe":
            out += [m.model_dump() for m in lens.observe(x)]
        elif op == "assign":
            a = lens.assign(x, current, i % 4)
            lens.membership(current, a.segment)
            current = a.segment
            out.append((a.segment, a.nearest, a.distance, a.moved))
        else:
            out += [m.model_dump() for m in lens.refine(X[i % 50 : i % 50 + 60])]
    out.append([p.as_dict() for p in lens.profiles()])
    out.append(lens.model_version)
    return out


_OPS = st.lists(
    st.tuples(st.sampled_from(["observe"] * 8 + ["assign"] * 3 + ["refine"]), st.integers(0, 10_000)),
    min_size=20,
    max_size=250,
)


@pytest.mark.parametrize("algorithm", ALGOS)
@settings(max_examples=8, deadline=None)
@given(split=st.integers(0, 400), ops=_OPS, seed=st.integers(0, 3))
def test_state_round_trip_is_exact(algorithm: str, split: int, ops: list[tuple[str, int]], seed: int) -> None:
    X, _ = blobs(600, seed=seed)
    cfg = config(algorithm, warmup=60, refresh_every=40, batch_size=8)
    a = Lens(cfg, seed=seed)
    prefix = [("observe", i) for i in range(split)]
    _run(a, prefix, X)
    state = codec.decode(codec.encode("lens", 1, a.state()), "lens", 1)
    b = Lens(cfg, seed=seed)
    b.load_state(state)
    twin = Lens(cfg, seed=seed)
    _run(twin, prefix, X)
    out_a = _run(a, ops, X)
    assert _run(b, ops, X) == out_a
    assert _run(twin, ops, X) == out_a  # same config + seed + calls => same results
    # River objects may differ in sharing (CluStream micro-clusters share river's default ``x``), not in content.
    sa, sb = a.state(), b.state()
    sa.pop("model")
    sb.pop("model")
    assert codec.encode("lens", 1, sa) == codec.encode("lens", 1, sb)


@pytest.mark.parametrize("algorithm", ALGOS)
@pytest.mark.parametrize("n", [0, 7, 150, 900])
def test_river_model_round_trip_predicts_and_learns_identically(algorithm: str, n: int) -> None:
    """A model encoded and decoded predicts like the original and keeps learning exactly like it."""
    X, _ = blobs(1500, seed=3)
    X = X / 3.0
    params = PARAMS[algorithm]
    original = make_model(algorithm, params, dim=3, seed=11)
    original.learn_many(X[:n])
    restored = make_model(algorithm, params, dim=3, seed=11)
    restored.load_state(codec.decode(codec.encode("model", 1, original.state()), "model", 1))
    assert np.array_equal(restored.centers(), original.centers())
    for x in X[n : n + 300]:
        row = dict(enumerate(x.tolist()))
        original.model.learn_one(row)
        restored.model.learn_one(dict(row))
        assert restored.model.predict_one(dict(row)) == original.model.predict_one(dict(row))
    assert np.array_equal(restored.centers(), original.centers())
    assert codec.encode("model", 1, restored.state()) == codec.encode("model", 1, original.state())


def test_refined_kmeans_segments_are_retired_and_born_only_by_refinements() -> None:
    """A blob vanishes and a far one appears: the model's centers follow at once, the lifecycle waits for
    the next refinement (between refinements a k-means lens with its k segments only moves them)."""
    lens, old_seg, moved = _refined_with_a_blob_to_move("kmeans", retire_after=1)
    Y, _ = blobs(2000, seed=10, centers=moved)
    assert {m.action for m in feed(lens, Y)} <= {"renamed"}
    assert lens.is_live(old_seg) and len(lens.registry.live()) == 4
    actions = [m.action for m in lens.refine(Y)]
    assert "born" in actions and not lens.is_live(old_seg)


def test_refined_kmeans_lens_with_fewer_segments_than_k_gains_them_between_refinements() -> None:
    """A warm-up that found 2 of k = 4 groups: segments are born from the model's other centers, up to k."""
    lens = make_lens("kmeans", refresh_every=100)
    four = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 6.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0]])
    X, _ = blobs(200, seed=4, centers=four[:2], spread=0.05)  # the warm-up, then no refresh before the refinement
    feed(lens, X)
    lens.refine(X)
    assert len(lens.registry.live()) == 2
    Y, _ = blobs(1600, seed=5, centers=four, spread=0.05)
    actions = [m.action for m in feed(lens, Y)]
    assert actions.count("born") == 2 and not {"retired", "merged"} & set(actions)  # a birth may be a split
    assert len(lens.registry.live()) == 4
    lens.refine(Y)
    assert len({lens.assign(b, None, 0).segment for b in four}) == 4
