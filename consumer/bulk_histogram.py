"""A Prometheus histogram observed a batch of values at a time, in one numpy pass.

``prometheus_client.Histogram.observe`` takes one value, in Python, walking
the buckets; the end-to-end lag is observed once per output (about half a
million values per million events), which cost about 1.5% of the consumer's
CPU. :class:`BulkHistogram` counts a whole batch's values with one
``searchsorted`` and exports the same samples (``_bucket`` with ``le``,
``_count``, ``_sum``) through the public collector interface.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString


class BulkHistogram:
    """A histogram of ``buckets`` (upper bounds; ``+Inf`` is added) registered in ``registry`` as ``name``.

    A value goes to the first bucket whose bound it does not exceed, as with
    ``prometheus_client.Histogram``.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = np.array([*sorted(buckets), float("inf")], dtype=np.float64)
        self._counts = np.zeros(len(self._bounds), dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()  # the HTTP server's threads collect while the loop observes
        registry.register(self)

    def observe_many(self, values: Any, floor: float | None = None) -> None:
        """Observe every value of ``values`` (a buffer of doubles or a sequence of floats), raised to ``floor``."""
        if isinstance(values, Sequence) and not isinstance(values, memoryview):
            array = np.asarray(values, dtype=np.float64)
        else:
            array = np.frombuffer(values, dtype=np.float64)
        if not array.size:
            return
        if floor is not None:
            array = np.maximum(array, floor)
        counts = np.bincount(np.searchsorted(self._bounds, array, side="left"), minlength=len(self._bounds))
        total = float(array.sum())
        with self._lock:
            self._counts += counts[: len(self._bounds)]  # NaN sorts past +Inf: no bucket, as observe() counts it
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """The histogram's samples (the collector interface of ``prometheus_client``)."""
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        le = [floatToGoString(bound) for bound in self._bounds]  # type: ignore[no-untyped-call]  # the le labels of Histogram
        buckets = [(label, float(n)) for label, n in zip(le, cumulative, strict=True)]
        yield HistogramMetricFamily(self._name, self._documentation, buckets=buckets, sum_value=total)

    def describe(self) -> Iterator[HistogramMetricFamily]:
        """The metric's name and type, without samples (so the registry checks the name once)."""
        yield HistogramMetricFamily(self._name, self._documentation)
