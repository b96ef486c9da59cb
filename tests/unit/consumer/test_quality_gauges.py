"""The per-lens quality gauges follow Lens.quality (set at each refinement)."""

from __future__ import annotations

from consumer.metrics import Metrics
from tests.unit.lenses.helpers import blobs, feed, make_lens


def test_quality_gauges_follow_the_last_refinement() -> None:
    metrics = Metrics()
    lens = make_lens("kmeans")
    X, _ = blobs(1500, seed=8)
    feed(lens, X)
    metrics.set_lens_quality([lens])  # not refined yet: nothing exported
    assert "segmenter_lens_sse_ratio{" not in metrics.exposition().decode()
    lens.refine(X)
    metrics.set_lens_quality([lens])
    q = lens.quality
    assert q is not None
    body = metrics.exposition().decode()
    assert f'segmenter_lens_sse_ratio{{lens="t"}} {q.sse_ratio}' in body
    assert f'segmenter_lens_silhouette{{lens="t"}} {q.silhouette}' in body
