"""BulkHistogram exports the samples prometheus_client's Histogram exports for the same observations."""

from __future__ import annotations

import random
from array import array

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from consumer.bulk_histogram import BulkHistogram

BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 86400.0)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_the_same_samples_as_one_observe_per_value() -> None:
    rnd = random.Random(7)
    values = [rnd.choice([-1.0, 0.0, *BUCKETS, 1e9]) for _ in range(300)]  # on the bounds, below and past them
    values += [rnd.uniform(-2, 100_000) for _ in range(300)]
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lag_seconds", "doc", buckets=BUCKETS, registry=theirs)
    bulk = BulkHistogram("lag_seconds", "doc", BUCKETS, ours)
    for v in values:
        reference.observe(max(0.0, v))
    bulk.observe_many(array("d", values[:250]), floor=0.0)  # a tally's packed doubles, in two batches
    bulk.observe_many(values[250:], floor=0.0)
    bulk.observe_many(array("d"))
    want, got = _samples(theirs), _samples(ours)
    assert got.keys() == want.keys()
    total = ("lag_seconds_sum", ())
    assert got.pop(total) == pytest.approx(want.pop(total), rel=1e-12)
    assert got == want  # every bucket and the count
    assert b'lag_seconds_bucket{le="+Inf"} 600.0' in generate_latest(ours)
