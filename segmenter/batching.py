"""The arrays :func:`segmenter.kernel.run` works on, built from Python objects and written back.

:class:`EventColumns`
    One poll batch or file chunk as columns: the customer's row (or a
    placeholder for a customer first seen in the batch, whose row is
    allocated for all of them in one call before the loop runs), effect, time,
    amount, event-id hash, customer-id hash, source index and input partition
    per event.
:class:`LensArrays`
    The lenses' assignment values (scaled live centers, scaler snapshot,
    hysteresis), their observation counters and a buffer of sampled vectors,
    packed into fixed-shape arrays; rebuilt only when a lens's caches change.

Both are owned by one :class:`~segmenter.pipeline.Segmenter` and never shared.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from segmenter import kernel
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, EventType
from segmenter.features import BASE_EPOCH, FeatureStore, event_kind

if TYPE_CHECKING:
    from segmenter.lenses.lens import Lens
    from segmenter.outputs import SegmentLifecycle

__all__ = ["SAMPLE_CAPACITY", "EventColumns", "LensArrays", "Moved", "store_columns"]


_Ints = np.ndarray[Any, np.dtype[np.int64]]
_Parts = np.ndarray[Any, np.dtype[np.int16]]

SAMPLE_CAPACITY = 256
"""Sampled vectors buffered per lens between two hand-overs to the lens."""


class EventColumns:
    """The events of one batch as the compiled loop's input columns.

    Parameters
    ----------
    events
        Validated events, in order.
    sources
        Per event, its source (input partition) or ``None``.
    store
        The feature store (known customers' rows).
    source_index
        A source's index in the clock's arrays (:meth:`~segmenter.clock.EventClock.index`; adds new sources).

    Attributes
    ----------
    errors
        ``(index, EventError)`` for events rejected here (time out of range).
    moved
        The events of known customers that came from another input partition than before, or ``None``.
    """

    def __init__(self, events: Sequence[CustomerEvent], sources: Sequence[int | None], store: FeatureStore,
                 source_index: Callable[[int | None], int]) -> None:  # fmt: skip
        self.events = events
        self._pending: dict[str, int] = {}
        self._ids: list[str] = []
        ids = [ev.customer_id for ev in events]
        kinds = np.array([_KINDS[ev.type] for ev in events], np.int64)
        self.times, self.errors = _times(events, kinds >= 0, store)
        for i, _ in self.errors:
            kinds[i] = kernel.K_SKIP
        valid = kinds >= 0
        known = store.rows_of(ids)
        rows = np.where(valid, known, 0)
        for i in np.flatnonzero(valid & (known < 0)).tolist():
            rows[i] = self._placeholder(ids[i])
        crc = zlib.crc32
        self.rows = rows
        self.kinds = kinds
        self.amounts = np.where(valid, [0.0 if ev.amount is None else ev.amount for ev in events], 0.0)
        self.hashes = np.array([crc(ev.event_id.encode()) or 1 for ev in events], np.uint32) * valid
        self.chashes = np.array([crc(cid.encode()) for cid in ids], np.int64) * valid
        self.srcs, self.parts = _source_columns(sources, valid, source_index)
        self.newrows = np.full(max(1, len(self._ids)), -1, np.int64)
        self.newfirst = np.ones(max(1, len(self._ids)), np.uint8)
        if self._ids:
            self.newrows[: len(self._ids)] = store.new_rows(self._ids, live=False)
        self.moved = _moved(store, self.rows, self.kinds, self.parts, events)

    def release(self, i: int, store: FeatureStore) -> None:
        """Event ``i`` (an erasure) comes before its customer's first applied event: free the row kept for it."""
        k = self._pending.get(self.events[i].customer_id)
        if k is not None and self.newrows[k] >= 0 and self.newfirst[k]:
            store.drop_rows(self.newrows[k : k + 1].copy())
            self.newrows[k] = -1

    def release_unused(self, store: FeatureStore) -> None:
        """Free the rows allocated for customers none of whose events was applied (all refused)."""
        unused = self.newrows[(self.newrows >= 0) & (self.newfirst != 0)]
        store.release_unused(unused)

    def _placeholder(self, customer_id: str) -> int:
        k = self._pending.get(customer_id)
        if k is None:
            k = self._pending[customer_id] = len(self._ids)
            self._ids.append(customer_id)
        return -k - 2

    def row(self, i: int) -> int:
        """Event ``i``'s row (``-1``: its customer has none yet)."""
        row = int(self.rows[i])
        return row if row >= 0 else int(self.newrows[-row - 2])

    def set_new_row(self, i: int, row: int) -> None:
        """Event ``i``'s customer, first seen in this batch, now owns ``row``."""
        self.newrows[-int(self.rows[i]) - 2] = row

    def forget(self, i: int) -> None:
        """Event ``i`` erased its customer: later events of that customer start a new row."""
        cid = self.events[i].customer_id
        placeholder = None
        for j in range(i + 1, len(self.events)):
            if self.kinds[j] >= 0 and self.events[j].customer_id == cid:
                if placeholder is None:
                    self._pending.pop(cid, None)
                    placeholder = self._placeholder(cid)
                    self.newrows = np.append(self.newrows, -1)
                    self.newfirst = np.append(self.newfirst, np.uint8(1))
                self.rows[j] = placeholder


_TS = attrgetter("ts")
_KINDS = {t: kernel.K_ERASE if t is EventType.ERASURE_REQUEST else int(event_kind(t)) for t in EventType}
"""The loop's event kind of each event type."""


def _times(events: Sequence[CustomerEvent], timed: np.ndarray[Any, np.dtype[np.bool_]], store: FeatureStore
           ) -> tuple[np.ndarray[Any, np.dtype[np.int64]], list[tuple[int, EventError]]]:  # fmt: skip
    """The ``timed`` events' times (:meth:`FeatureStore.to_seconds`, 0 for the others) and the out-of-range ones."""
    # CustomerEvent.epoch of each, without a Python call per event
    epochs = np.fromiter(map(datetime.timestamp, map(_TS, events)), np.float64, len(events))
    times = np.where(timed, np.floor(epochs) - BASE_EPOCH, 0.0).astype(np.int64)
    errors: list[tuple[int, EventError]] = []
    if not timed.any():
        return times, errors
    idx = np.flatnonzero(timed)
    extremes = [int(idx[np.argmin(epochs[idx])]), int(idx[np.argmax(epochs[idx])])]
    try:  # the range is an interval: when its extremes are in it, every time is
        for i in extremes:
            store.to_seconds(float(epochs[i]))
    except EventError:
        for i in idx.tolist():
            try:
                store.to_seconds(float(epochs[i]))
            except EventError as exc:
                errors.append((i, exc))
                times[i] = 0
    return times, errors


def _source_columns(sources: Sequence[int | None], valid: np.ndarray[Any, np.dtype[np.bool_]],
                    source_index: Callable[[int | None], int]) -> tuple[_Ints, _Parts]:  # fmt: skip
    """Each ``valid`` event's source index in the clock's arrays (0 for the others), and each event's input
    partition (``-1``: none).

    ``source_index`` (which adds a source it has not seen) is called once per distinct source of a valid event;
    a batch of one source (an offline run, a poll of one partition) makes one call, not a look-up per event.
    """
    n = len(sources)
    if n and sources.count(sources[0]) == n:
        s = sources[0]
        srcs = np.where(valid, source_index(s), 0) if valid.any() else np.zeros(n, np.int64)
        return srcs, np.repeat(np.array([-1 if s is None else s], np.int16), n)
    index: dict[int | None, int] = {}
    out = [0] * n
    for i in np.flatnonzero(valid).tolist():
        s = sources[i]
        si = index.get(s)
        if si is None:
            si = index[s] = source_index(s)
        out[i] = si
    return np.array(out, np.int64), np.array([-1 if s is None else s for s in sources], np.int16)


def store_columns(store: FeatureStore) -> kernel.StoreColumns:
    """The store's columns as the compiled code takes them (rebuild after the store grew)."""
    s = store
    return kernel.StoreColumns(
        s.f, s.t, s.h, s.hpos, s.dirty, s.seg, s.dwell, s.since, s.prev, s.mver, s.part, s.live, s.pend
    )


class Moved(NamedTuple):
    """Events of known customers that came from another input partition than their customer's before."""

    events: int
    customer_id: str
    """The first such event's customer, from input partition ``before`` to ``after``."""
    before: int
    after: int


def _moved(
    store: FeatureStore,
    rows: np.ndarray[Any, np.dtype[np.int64]],
    kinds: np.ndarray[Any, np.dtype[np.int64]],
    parts: np.ndarray[Any, np.dtype[np.int16]],
    events: Sequence[CustomerEvent],
) -> Moved | None:
    """The batch's events of known customers from another input partition than before (``None``: none)."""
    held = np.flatnonzero((rows >= 0) & (kinds >= 0))
    if not len(held):
        return None
    before = store.part[rows[held]]
    moved = held[(before >= 0) & (parts[held] >= 0) & (before != parts[held])]
    if not len(moved):
        return None
    first = int(moved[0])
    return Moved(len(moved), events[first].customer_id, int(store.part[rows[first]]), int(parts[first]))


class LensArrays:
    """The lenses packed for the compiled loop (see :mod:`segmenter.kernel`).

    Parameters
    ----------
    lenses
        The segmenter's lenses, in config order.
    feature_index
        Per lens, the indices of its features in :data:`~segmenter.features.FEATURE_NAMES`.
    """

    def __init__(self, lenses: Sequence[Lens], feature_index: Sequence[Sequence[int]]) -> None:
        self._lenses = list(lenses)
        nl = len(self._lenses)
        dim = max(1, max((len(ix) for ix in feature_index), default=1))
        self.dims = np.array([len(ix) for ix in feature_index], np.int64)
        self.idx = np.zeros((nl, dim), np.int64)
        for li, ix in enumerate(feature_index):
            self.idx[li, : len(ix)] = ix
        self.heavy = np.zeros((nl, dim), np.bool_)
        self.inv = np.zeros((nl, dim), np.float64)
        self.off = np.zeros((nl, dim), np.float64)
        self.centers = np.zeros((nl, 1, dim), np.float64)
        self.nlive = np.zeros(nl, np.int64)
        self.live = np.zeros((nl, 1), np.int64)
        self.rule = np.array([lens.rule for lens in self._lenses], np.float64).reshape(nl, -1)
        self.ready = np.zeros(nl, np.bool_)
        self.warmup = np.array([lens.config.warmup for lens in self._lenses], np.int64)
        self.learn_every = np.array([lens.config.learn_every for lens in self._lenses], np.int64)
        self.batch_size = np.array([lens.config.batch_size for lens in self._lenses], np.int64)
        self.version = np.zeros(nl, np.int64)
        self.nobs = np.zeros(nl, np.int64)
        self.bfill = np.zeros(nl, np.int64)
        self.sbuf = np.zeros((nl, SAMPLE_CAPACITY, dim), np.float64)
        self.sn = np.zeros((nl, SAMPLE_CAPACITY), np.int64)
        self.scount = np.zeros(nl, np.int64)
        self._epochs: list[int] = [-1] * nl

    def sync(self, counters: bool) -> None:
        """Copy the lenses' model versions, their assignment values when changed, and their counters if ``counters``.

        Between two hand-overs (:meth:`flush`) the loop's counters run ahead of
        the lenses' and are the ones that count: pass ``counters=True`` only
        when nothing is buffered (at the start of a batch).
        """
        if counters:
            self.scount[:] = 0  # only an exception leaves samples behind; that batch is void anyway
        for li, lens in enumerate(self._lenses):
            self.version[li] = lens.model_version
            if counters:
                self.nobs[li] = lens.n_observed
                self.bfill[li] = lens.pending_batch
            if lens.cache_epoch != self._epochs[li]:
                self._epochs[li] = lens.cache_epoch
                self._pack(li, lens)

    def columns(self) -> kernel.LensColumns:
        """The packed lenses as the compiled code takes them."""
        a = self
        return kernel.LensColumns(a.idx, a.dims, a.heavy, a.inv, a.off, a.centers, a.nlive, a.live, a.rule, a.ready,
                                  a.nobs, a.warmup, a.learn_every, a.batch_size, a.version, a.bfill, a.sbuf, a.sn,
                                  a.scount)  # fmt: skip

    def _pack(self, li: int, lens: Lens) -> None:
        live, centers, inv, offset, heavy = lens.kernel_view()
        k = len(live)
        if k > self.centers.shape[1]:
            grown = np.zeros((self.centers.shape[0], k, self.centers.shape[2]), np.float64)
            grown[:, : self.centers.shape[1]] = self.centers
            self.centers = grown
            wider = np.zeros((self.live.shape[0], k), np.int64)
            wider[:, : self.live.shape[1]] = self.live
            self.live = wider
        d = len(inv)
        self.nlive[li] = k
        self.ready[li] = lens.ready
        if k:
            self.centers[li, :k, :d] = centers
            self.live[li, :k] = live
        self.inv[li, :d] = inv
        self.off[li, :d] = offset
        self.heavy[li, :d] = heavy

    def flush(self) -> list[tuple[int, list[SegmentLifecycle]]]:
        """Hand the buffered samples and counts to their lenses, in order; ``(lens index, lifecycle messages)``.

        Needed before anything reads or changes a lens's scaler or model: a
        completed micro-batch (``LEARN``), a refinement, the end of the batch.
        """
        out: list[tuple[int, list[SegmentLifecycle]]] = []
        for li, lens in enumerate(self._lenses):
            c = int(self.scount[li])
            n_obs = int(self.nobs[li])
            if not c and n_obs == lens.n_observed:
                continue
            d = int(self.dims[li])
            msgs = lens.take_samples(self.sbuf[li, :c, :d], self.sn[li, :c], n_obs)
            self.scount[li] = 0
            self.bfill[li] = lens.pending_batch  # a completed micro-batch was learnt
            if msgs:
                out.append((li, msgs))
        return out
