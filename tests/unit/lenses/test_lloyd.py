"""The compiled Lloyd iterations: numpy's results bit for bit, and an early stop that changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter.lenses.lloyd import REFINE_TOL, _Closer, _lloyd_steps, kmeans_plus_plus, lloyd, lloyd_sse, nearest, sse

from .helpers import BLOBS, blobs


def _numpy_lloyd(
    points: np.ndarray, centers: np.ndarray, iterations: int, weights: np.ndarray | None, reseed_empty: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The Lloyd loop in plain numpy (bincount sums), the readable twin of the compiled one."""
    centers = np.array(centers, dtype=np.float64, copy=True)
    w = np.ones(len(points)) if weights is None else weights
    k, d = centers.shape
    labels, d2 = nearest(points, centers)
    for _ in range(iterations):
        mass = np.bincount(labels, weights=w, minlength=k)
        if reseed_empty:
            taken: set[int] = set()
            for c in np.flatnonzero(mass <= 0.0).tolist():
                order = np.argsort(-d2, kind="stable")
                idx = next((int(i) for i in order.tolist() if int(i) not in taken and d2[i] > 0.0), None)
                if idx is None:
                    break
                taken.add(idx)
                centers[c] = points[idx]
                labels, d2 = nearest(points, centers)
            mass = np.bincount(labels, weights=w, minlength=k)
        sums = np.stack([np.bincount(labels, weights=points[:, j] * w, minlength=k) for j in range(d)], axis=1)
        new = centers.copy()
        new[mass > 0.0] = sums[mass > 0.0] / mass[mass > 0.0][:, None]
        done = bool(np.allclose(new, centers, rtol=0.0, atol=1e-9))
        centers = new
        labels, d2 = nearest(points, centers)
        if done:
            break
    return centers, labels


@pytest.mark.parametrize("seed", range(40))
def test_compiled_lloyd_equals_numpy_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d, k = int(rng.integers(1, 400)), int(rng.integers(1, 5)), int(rng.integers(1, 8))
    points = rng.normal(size=(n, d)) * 3.0
    if seed % 3 == 0:
        points = np.round(points)  # duplicate rows: ties, and centers that empty
    centers = points[rng.integers(0, n, k)].copy()
    if seed % 4 == 0:
        centers[:] = centers[0]  # every center on one point: all but one empty at the first step
    weights = None if seed % 2 else rng.uniform(0.1, 3.0, n)
    iterations = int(rng.integers(1, 30))
    for reseed in (True, False):
        got = lloyd(points, centers, iterations, weights, reseed)
        want = _numpy_lloyd(points, centers, iterations, weights, reseed)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_lloyd_stops_once_no_assignment_changes() -> None:
    points, _ = blobs(3000, seed=11, centers=BLOBS, spread=0.6)
    seeds = BLOBS + 1.5
    w = np.ones(len(points))
    labels, d2 = np.zeros(len(points), np.int64), np.zeros(len(points))
    centers = seeds.copy()
    steps = _lloyd_steps(points, w, centers, 100, True, 0.0, labels, d2)
    assert 1 < steps < 20  # separated blobs settle in a few steps, far below the limit
    # the steps it skipped would not have moved anything
    longer, longer_labels = _numpy_lloyd(points, seeds, 100, None, True)
    assert np.array_equal(centers, longer) and np.array_equal(labels, longer_labels)
    again = centers.copy()
    assert _lloyd_steps(points, w, again, 100, True, 0.0, labels, d2) == 1  # a settled start: one step
    assert np.array_equal(again, centers)


@pytest.mark.parametrize("seed", range(12))
def test_lloyd_sse_is_sse_at_the_centers_it_returns_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n, d, k = int(rng.integers(1, 500)), int(rng.integers(1, 6)), int(rng.integers(1, 7))
    points = rng.lognormal(size=(n, d))
    weights = None if seed % 2 else rng.uniform(0.1, 3.0, n)
    seeds = points[rng.integers(0, n, k)]
    centers, labels, total = lloyd_sse(points, seeds, int(rng.integers(1, 25)), weights, seed % 3 != 0)
    assert total == sse(points, centers, weights)
    assert np.array_equal(labels, nearest(points, centers)[0])


def test_lloyd_tolerance_stops_a_creeping_run_early_and_zero_keeps_the_exact_stop() -> None:
    # overlapping blobs from a poor start: Lloyd creeps towards its optimum for many steps
    points, _ = blobs(3000, seed=5, centers=BLOBS, spread=1.5)
    seeds = BLOBS[:, ::-1] * 0.3
    w = np.ones(len(points))
    labels, d2 = np.zeros(len(points), np.int64), np.zeros(len(points))
    exact = seeds.copy()
    steps_exact = _lloyd_steps(points, w, exact, 100, True, 0.0, labels, d2)
    early = seeds.copy()
    steps_early = _lloyd_steps(points, w, early, 100, True, REFINE_TOL, labels, d2)
    assert steps_early < steps_exact
    assert np.array_equal(exact, _numpy_lloyd(points, seeds, 100, None, True)[0])  # tol 0: the exact stop
    # stopped where a further step would move the centers by at most the tolerance: the SSE hardly differs
    assert sse(points, early) <= sse(points, exact) * (1.0 + 1e-3)
    assert sse(points, early) >= sse(points, exact)


def _numpy_kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator, trials: int) -> np.ndarray:
    """The greedy k-means++ seeding with numpy's distance updates, the readable twin of the compiled one."""
    n = len(points)
    w = np.ones(n)
    chosen = [int(rng.choice(n, p=w / w.sum()))]
    d2 = ((points - points[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(1, k):
        p = d2 * w
        if float(p.sum()) <= 0.0:
            break
        best: tuple[float, int, np.ndarray] | None = None
        for idx in rng.choice(n, size=trials, p=p / float(p.sum())).tolist():
            nd2 = np.minimum(d2, ((points - points[idx]) ** 2).sum(axis=1))
            if best is None or float((nd2 * w).sum()) < best[0]:
                best = (float((nd2 * w).sum()), int(idx), nd2)
        assert best is not None
        chosen.append(best[1])
        d2 = best[2]
    return points[chosen].copy()


@pytest.mark.parametrize("d", [1, 2, 4, 7, 8, 11])
def test_kmeans_plus_plus_seeds_as_numpy_does_bit_for_bit(d: int) -> None:
    rng = np.random.default_rng(d)
    points = rng.lognormal(size=(700, d)) * rng.uniform(0.1, 50.0, d)
    for trials in (1, 3):
        got = kmeans_plus_plus(points, 6, np.random.default_rng(7), trials=trials)
        if trials == 3:
            assert np.array_equal(got, _numpy_kmeans_plus_plus(points, 6, np.random.default_rng(7), 3))
        assert len(np.unique(got, axis=0)) == 6


@pytest.mark.parametrize("d", [1, 3, 5, 7, 8, 9, 13])
def test_kmeans_plus_plus_distance_update_is_numpy_s_bit_for_bit(d: int) -> None:
    rng = np.random.default_rng(50 + d)
    points = rng.lognormal(size=(2000, d)) * rng.uniform(0.1, 50.0, d)
    closer = _Closer(points)
    first = ((points - points[3]) ** 2).sum(axis=1)
    assert np.array_equal(closer(3, None), first)
    assert np.array_equal(closer(1999, first), np.minimum(first, ((points - points[1999]) ** 2).sum(axis=1)))
