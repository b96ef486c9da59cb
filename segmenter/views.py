"""Read-only views of a core: segment sizes, counters, one customer's segments and features, the membership table.

Nothing here changes the core; :class:`~segmenter.pipeline.Segmenter` returns
these values from :meth:`~segmenter.pipeline.Segmenter.stats`,
:meth:`~segmenter.pipeline.Segmenter.customer_view`,
:meth:`~segmenter.pipeline.Segmenter.customer_views` and
:meth:`~segmenter.pipeline.Segmenter.membership`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segmenter.features import BASE_EPOCH, FeatureStore
from segmenter.lenses.lens import Lens
from segmenter.membership import membership_values
from segmenter.outputs import SegmentRef

__all__ = ["CustomerView", "CustomerViews", "SegmentSize", "SegmenterStats", "segment_sizes"]


@dataclass(frozen=True)
class SegmentSize:
    """One segment's id, name and current number of customers."""

    id: str
    name: str
    size: int


@dataclass(frozen=True)
class SegmenterStats:
    """Counters and segment sizes (see :meth:`~segmenter.pipeline.Segmenter.stats`)."""

    events: int
    """Accepted events (not late, not duplicates; erasure requests included)."""
    late: int
    duplicates: int
    erasures: int
    customers: int
    changes: dict[str, int]
    """Segment changes per cause."""
    triggers: dict[str, int]
    """Campaign triggers emitted per campaign."""
    suppressed: dict[str, dict[str, int]]
    """Triggers suppressed per campaign and control (from the trigger engine)."""
    segments: dict[str, list[SegmentSize]]
    """Per lens, the segments that currently hold customers (by id)."""
    watermark: str | None
    isolated: int = 0
    """Accepted events (in ``events``) applied to an isolated customer: one more than
    ``features.max_future_hours`` ahead of its source's clock, kept out of all shared work."""
    after_erasure: int = 0
    """Events of an erased customer at or before its erasure, dropped (see :mod:`segmenter.erasures`)."""
    moved_partition: int = 0
    """Events of known customers that came from another input partition than their customer's before (an
    input not keyed by customer id): logged once as a WARNING, then counted here."""


@dataclass(frozen=True)
class CustomerView:
    """One customer's segments and the features each lens clustered."""

    customer_id: str
    segments: dict[str, SegmentRef | None]
    features: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``replay --snapshot`` line for this customer."""
        return {
            "customer_id": self.customer_id,
            "segments": {k: (None if v is None else v.model_dump()) for k, v in self.segments.items()},
            "features": self.features,
        }


def segment_sizes(lenses: Sequence[Lens], store: FeatureStore) -> dict[str, list[SegmentSize]]:
    """Per lens (by name), the segments that currently hold customers, by segment number."""
    segments: dict[str, list[SegmentSize]] = {}
    for li, lens in enumerate(lenses):
        sizes = []
        for n, count in sorted(store.segment_counts(li).items()):
            ref = lens.ref(n)
            sizes.append(SegmentSize(ref.id, ref.name, count))
        segments[lens.name] = sizes
    return segments


class CustomerViews:
    """Customers' segments and features as the lenses see them.

    Parameters
    ----------
    store
        The core's feature store.
    lenses
        The core's lenses, in config order.
    columns
        Per lens, the indices of its features in the store's feature vector.
    """

    def __init__(self, store: FeatureStore, lenses: Sequence[Lens], columns: Sequence[Sequence[int]]) -> None:
        self._store = store
        self._lenses = list(lenses)
        self._columns = [list(c) for c in columns]

    def view(self, customer_id: str) -> CustomerView | None:
        """The customer's segment per lens and the features each lens last clustered (``None``: not held)."""
        row = self._store.row_of(customer_id)
        return None if row is None else self._view(customer_id, row)

    def all(self) -> Iterator[CustomerView]:
        """Every customer's view, ordered by customer id."""
        store = self._store
        for cid in sorted(store.customer_ids()):
            row = store.row_of(cid)
            assert row is not None
            yield self._view(cid, row)

    def _view(self, customer_id: str, row: int) -> CustomerView:
        store = self._store
        vals = store.vector(row, store.scored_time(row))
        segments: dict[str, SegmentRef | None] = {}
        features: dict[str, dict[str, float]] = {}
        for li, lens in enumerate(self._lenses):
            n = store.segment(row, li)
            segments[lens.name] = lens.ref(n) if n >= 0 else None
            features[lens.name] = {
                f: round(vals[i], 6) for f, i in zip(lens.feature_names, self._columns[li], strict=True)
            }
        return CustomerView(customer_id, segments, features)

    def membership_values(self, customer_ids: Sequence[str], updated_at: Sequence[str]) -> list[bytes | None]:
        """The customers' membership records (see :meth:`~segmenter.pipeline.Segmenter.membership_values`)."""
        store = self._store
        rows = store.rows_of(customer_ids)
        held = rows >= 0
        held[held] = store.live[rows[held]]
        rows, n = rows[held], len(self._lenses)
        columns = (store.seg[rows, :n], store.since[rows, :n].astype(np.int64) + BASE_EPOCH, store.mver[rows, :n])
        lenses = [(lens.name, lens.ref) for lens in self._lenses]
        return membership_values(customer_ids, held.tolist(), columns, lenses, updated_at)
