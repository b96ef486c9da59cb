"""The per-lens quality gauges follow the core's lenses at their latest refinement, through the loop's Gauges."""

from __future__ import annotations

import re

from consumer.explorer import Explorer
from consumer.gauges import Gauges
from consumer.metrics import Metrics
from segmenter.config import SegmenterConfig, default_config
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events

_GAUGE = re.compile(r'^segmenter_lens_(sse_ratio|silhouette)\{lens="([^"]+)"\} (\S+)$', re.M)


def _exported(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {(m[2], m[1]): float(m[3]) for m in _GAUGE.finditer(metrics.exposition().decode())}


def _small_config() -> SegmenterConfig:
    data = default_config().model_dump()
    for lens in data["lenses"]:
        lens.update(warmup=60, learn_every=2, batch_size=8, refresh_every=64)
    data["refine"].update(every_events=400, sample_size=200)
    return SegmenterConfig.model_validate(data)


def test_gauges_export_each_refined_lens_quality() -> None:
    config = _small_config()
    seg = Segmenter(config)
    metrics = Metrics()
    gauges = Gauges(metrics, Explorer(), every_s=0.0)
    events = to_events(make_events(120, 12.0, seed=3))
    seg.process_batch(events[:50], [None] * 50)
    assert seg.lens_quality() == {}  # nothing refined yet
    gauges.update(None, {}, seg)
    assert _exported(metrics) == {}

    seg.process_batch(events[50:], [None] * (len(events) - 50))
    quality = seg.lens_quality()
    assert set(quality) == {lens.name for lens in config.lenses}
    gauges.update(None, {}, seg)
    expected = {(lens, "sse_ratio"): q.sse_ratio for lens, q in quality.items()}
    expected |= {(lens, "silhouette"): q.silhouette for lens, q in quality.items()}
    assert _exported(metrics) == expected
    assert all(q.sse_ratio > 0.0 and -1.0 <= q.silhouette <= 1.0 for q in quality.values())
