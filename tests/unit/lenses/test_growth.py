"""A lens without a k (DenStream, DBSTREAM) gains the segment its warm-up missed, and only that one."""

from __future__ import annotations

import numpy as np

from segmenter.lenses.growth import grown
from segmenter.lenses.quality import Assessment, fewer_segments, more_segments
from segmenter.lenses.registry import SegmentRegistry
from segmenter.lenses.scaling import ScalerSnapshot

from .helpers import BLOBS, blobs, feed, make_lens


def _check(xs: np.ndarray, centers: np.ndarray) -> Assessment:
    return Assessment(xs, centers, np.random.default_rng(0))


def test_a_group_two_segments_straddle_seeds_a_new_one() -> None:
    xs, _ = blobs(2000, seed=5)
    three = np.vstack([BLOBS[:2], (BLOBS[2] + BLOBS[3]) / 2.0])  # the last one sits between two blobs
    seed = more_segments(_check(xs, three), np.random.default_rng(1))
    assert seed is not None
    assert min(np.linalg.norm(BLOBS[2:] - seed, axis=1)) < 0.3  # at one of the two blobs the segment straddled


def test_the_right_number_and_a_continuum_gain_nothing() -> None:
    xs, _ = blobs(2000, seed=5)
    assert more_segments(_check(xs, BLOBS.copy()), np.random.default_rng(1)) is None
    # one wide blob cut in three: one more cut lowers the SSE, but not by a clear margin (no group is missing)
    wide = np.random.default_rng(2).normal(0.0, 1.0, (2000, 3))
    three = np.array([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.5, 0.0]])
    assert more_segments(_check(wide, three), np.random.default_rng(1)) is None


def test_a_cut_that_lowers_the_sse_but_not_the_silhouette_gains_nothing() -> None:
    # two groups far apart, each long along one axis: a third segment halves one of them (SSE 0.62 of two
    # segments', below MORE_RATIO) and the silhouette falls (0.79 -> 0.70): no group is missing
    rng = np.random.default_rng(4)
    long = [np.c_[rng.normal(x, 0.3, 1000), rng.uniform(-5.0, 5.0, 1000), rng.normal(0.0, 0.3, 1000)] for x in (-8, 8)]
    two = np.array([[-8.0, 0.0, 0.0], [8.0, 0.0, 0.0]])
    assert more_segments(_check(np.vstack(long), two), np.random.default_rng(1)) is None


def test_a_grown_segment_is_not_merged_back_at_the_next_check() -> None:
    xs, _ = blobs(2000, seed=5)
    three = np.vstack([BLOBS[:2], (BLOBS[2] + BLOBS[3]) / 2.0])
    cs, own, check = grown(xs, three, 1e12, _check(xs, three), 20, np.random.default_rng(1))
    assert len(cs) == 4 and own < 1e12 and check.centers.shape == (4, 3)
    assert np.abs(np.sort(cs, axis=0) - np.sort(BLOBS, axis=0)).max() < 0.2
    assert fewer_segments(xs, cs, np.random.default_rng(3)) is None


def test_a_density_lens_missing_a_group_gains_a_segment_at_refinement() -> None:
    X, _ = blobs(3000, seed=3)
    lens = make_lens("denstream")
    feed(lens, X)
    snap = lens.snapshot
    assert snap is not None and len(lens.registry.live()) == 4
    # the warm-up found three groups: two blobs share one segment
    segments = lens.registry.segments
    near = [min(segments, key=lambda n: float(np.linalg.norm(np.asarray(segments[n].center) - b))) for b in BLOBS]
    segments[near[2]].center = ((BLOBS[2] + BLOBS[3]) / 2.0).tolist()
    segments[near[3]].status = "retired"
    live = lens.registry.live()
    assert len(live) == 3
    messages = lens.refine(X)
    born = [m for m in messages if m.action == "born"]
    assert len(born) == 1 and born[0].segment.id not in {f"t-{n}" for n in live}
    assert len(lens.registry.live()) == 4
    centers = np.asarray([lens.registry.segments[n].center for n in lens.registry.live()])
    assert np.abs(np.sort(centers, axis=0) - np.sort(BLOBS, axis=0)).max() < 0.2
    new = lens.registry.segments[lens.registry.live()[-1]]
    assert new.anchor == new.center  # placed by the refinement: it stays there until the next one
    assert lens.quality is not None and lens.quality.sse_ratio < 1.01
    assert not [m for m in lens.refine(X) if m.action == "born"]  # nothing more to gain


def test_the_registry_bears_no_segment_beyond_its_bound() -> None:
    registry = SegmentRegistry(1.0, 2, max_segments=2)
    snap = ScalerSnapshot(heavy=(False,), mean=(0.0,), std=(1.0,))
    events = registry.born(np.array([[0.0], [3.0], [6.0]]), snap, anchored=True)
    assert [(e.action, e.segment) for e in events] == [("born", 1), ("born", 2)]
    assert registry.live() == [1, 2] and registry.segments[2].anchor == [3.0]
