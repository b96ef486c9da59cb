"""A refinement's quality is computed when read, equal to assessing at once; the restart check has a cadence."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import segmenter.lenses.lens as lens_module
import segmenter.lenses.quality as quality_module
from consumer.metrics import Metrics
from segmenter.lenses.lloyd import batch_kmeans, nearest, sse
from segmenter.lenses.metrics import silhouette
from segmenter.lenses.quality import (
    N_INIT,
    QUALITY_SAMPLE,
    RESTART_CHECK_EVERY,
    SILHOUETTE_SAMPLE,
    Assessment,
    assess,
)

from .helpers import blobs, feed, make_lens


def _count_batch_kmeans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the assessments' batch k-means runs (``N_INIT`` starts; the screen's single start is not counted)."""
    calls: list[int] = []
    real = batch_kmeans

    def counted(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("n_init") == N_INIT:
            calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(quality_module, "batch_kmeans", counted)
    return calls


def _assess_in_steps(xs: np.ndarray, centers: np.ndarray, seed: int) -> tuple[float, float, np.ndarray]:
    """The comparison spelled out in its order of draws: sample, batch k-means, silhouette."""
    rng = np.random.default_rng(seed)
    part = xs[np.sort(rng.choice(len(xs), QUALITY_SAMPLE, replace=False))]
    batch, _, batch_sse = batch_kmeans(part, len(centers), rng, n_init=N_INIT)
    labels, _ = nearest(part, centers)
    return sse(part, centers) / batch_sse, silhouette(part, labels, SILHOUETTE_SAMPLE, rng), batch


def test_an_assessment_read_late_equals_assessing_at_once() -> None:
    xs, _ = blobs(6000, seed=3)  # more rows than the sample: every part draws from the generator
    centers = xs[:4].copy()
    ratio, sil, batch = _assess_in_steps(xs, centers, 9)
    later = Assessment(xs, centers, np.random.default_rng(9))
    centers[:] = 0.0  # the assessment keeps its own copy of the centers
    q = later.quality()
    assert (q.sse_ratio, q.silhouette, q.customers) == (ratio, sil, len(xs)) and np.array_equal(later.batch(), batch)
    assert later.quality() is q  # computed once
    at_once, at_once_batch = assess(xs, xs[:4], np.random.default_rng(9))
    assert at_once == q and np.array_equal(at_once_batch, batch)


def test_refinements_without_a_check_or_a_read_run_no_batch_kmeans(monkeypatch: pytest.MonkeyPatch) -> None:
    lens = make_lens("kmeans")
    X, _ = blobs(1500, seed=8)
    feed(lens, X)
    calls = _count_batch_kmeans(monkeypatch)
    for _ in range(RESTART_CHECK_EVERY):
        lens.refine(X)
    assert len(calls) == 1  # the first refinement's restart check only
    q = lens.quality
    assert q is not None and len(calls) == 2  # the last refinement's quality, computed when read
    assert lens.quality is q and len(calls) == 2


def test_gauges_show_the_latest_refinement_not_an_earlier_one() -> None:
    metrics = Metrics()
    lens = make_lens("kmeans")
    X, _ = blobs(1500, seed=8)
    feed(lens, X)
    lens.refine(X)
    first = lens.quality
    moved, _ = blobs(1500, seed=9, spread=1.5)  # another population: another quality
    lens.refine(moved)
    q = lens.quality
    assert q is not None and first is not None and q != first
    metrics.set_lens_quality({"t": q})
    body = metrics.exposition().decode()
    assert f'segmenter_lens_sse_ratio{{lens="t"}} {q.sse_ratio}' in body
    assert f'segmenter_lens_silhouette{{lens="t"}} {q.silhouette}' in body


def _bad_optimum_runs(lens: Any, X: np.ndarray, refinements: int) -> list[bool]:
    """After one refinement, ``refinements`` more, each from a bad optimum: whether each one restarted."""
    lens.refine(X)
    bad = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [3.0, 3.0, 0.0], [0.0, 0.0, 6.0]])
    restarted = []
    for _ in range(refinements):
        snap = lens.snapshot
        assert snap is not None and len(lens.registry.live()) == len(bad)
        lens.registry.set_centers(lens.registry.live(), snap.scale_matrix(bad), snap, merge_within=0.0)
        lens.refine(X)
        q = lens.quality
        assert q is not None
        restarted.append(q.restarted)
        if q.restarted:
            assert q.sse_ratio < 1.02
    return restarted


def test_a_rise_in_sse_sends_a_bad_optimum_to_the_restart_check() -> None:
    lens = make_lens("kmeans", refine_iterations=1, match_threshold=0.2)  # the two halves of a blob do not merge
    X, _ = blobs(2000, seed=5)
    feed(lens, X)
    assert _bad_optimum_runs(lens, X, 1) == [True]  # the second refinement: no check due, its SSE rose


def test_without_the_rise_a_bad_optimum_is_left_at_the_next_due_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lens_module, "sse_rose", lambda *args: False)
    lens = make_lens("kmeans", refine_iterations=1, match_threshold=0.2)
    X, _ = blobs(2000, seed=5)
    feed(lens, X)
    assert _bad_optimum_runs(lens, X, RESTART_CHECK_EVERY) == [False] * (RESTART_CHECK_EVERY - 1) + [True]


def test_a_restart_that_moves_many_customers_needs_a_larger_gain(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = []
    for cost in (quality_module.RESTART_MOVE_COST, 10.0):  # 10: no gain pays for moving a tenth of everyone
        monkeypatch.setattr(quality_module, "RESTART_MOVE_COST", cost)
        lens = make_lens("kmeans", refine_iterations=1, match_threshold=0.2)
        X, _ = blobs(2000, seed=5)
        feed(lens, X)
        runs.append(_bad_optimum_runs(lens, X, 1))
    assert runs == [[True], [False]]


def test_sse_rose_and_restart_pays_at_their_bounds() -> None:
    rise = 1.0 + quality_module.SSE_RISE
    assert not quality_module.sse_rose(5.0, None)
    assert not quality_module.sse_rose(rise * 2.0 - 1e-9, 2.0) and quality_module.sse_rose(rise * 2.0 + 1e-9, 2.0)
    gain, cost = quality_module.RESTART_GAIN, quality_module.RESTART_MOVE_COST
    for moved in (0.0, 0.2, 0.5):
        bound = 100.0 * (gain - cost * moved)
        assert quality_module.restart_pays(100.0, bound - 1e-6, moved)
        assert not quality_module.restart_pays(100.0, bound + 1e-6, moved)


def test_the_check_cadence_survives_a_restore() -> None:
    lens = make_lens("kmeans")
    X, _ = blobs(1500, seed=8)
    feed(lens, X)
    lens.refine(X)
    copy = make_lens("kmeans")
    copy.load_state(lens.state())
    assert copy.state()["refinements"] == lens.state()["refinements"] == 1
    assert copy.state()["checked_sse"] == lens.state()["checked_sse"] is not None  # the rise is judged from it
    for _ in range(RESTART_CHECK_EVERY):
        lens.refine(X)
        copy.refine(X)
        assert copy.quality == lens.quality


def test_a_summarising_model_still_screens_between_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lens_module, "sse_rose", lambda *args: False)
    runs = []
    for screened in (True, False):
        if not screened:
            monkeypatch.setattr(lens_module, "screen", lambda *args: 1.0)
        lens = make_lens("streamkmeans", refine_iterations=1, match_threshold=0.2)
        X, _ = blobs(2000, seed=5)
        feed(lens, X)
        runs.append(_bad_optimum_runs(lens, X, 1))
    assert runs == [[True], [False]]  # the screen, not the rise (patched out), sent it to the check


def test_a_summarising_models_restart_pays_no_move_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quality_module, "RESTART_MOVE_COST", 10.0)  # refuses every k-means restart (above)
    lens = make_lens("streamkmeans", refine_iterations=1, match_threshold=0.2)
    X, _ = blobs(2000, seed=5)
    feed(lens, X)
    assert _bad_optimum_runs(lens, X, 1) == [True]  # dragged segments: a restart is their way back
