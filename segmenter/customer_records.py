"""The per-customer changelog: one record per changed customer, and its restore.

Each record (:meth:`CustomerRecords.take_changes`) holds the customer's
columns and its trigger state, in the binary version 2 of
:mod:`segmenter.customer_codec` (built for a part of customers at once); an
erased customer's is ``None`` (a Kafka tombstone). Each travels with the
customer's source (input partition), its changelog route. A restore reads
version 2 and the JSON version 1 written before it (the object
:func:`segmenter.customer_codec.decode` also returns; its writer is now the
tests' reference, ``tests/reference/v1_records.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from segmenter.customer_codec import VERSION, decode, encode_rows
from segmenter.errors import StateError
from segmenter.features import FeatureStore
from segmenter.lenses.lens import Lens

if TYPE_CHECKING:
    from segmenter.triggers.engine import TriggerEngine

__all__ = ["CustomerRecords", "known_segments"]

logger = logging.getLogger(__name__)

_JSON_VERSION = 1
"""The version of a JSON record (as written before version 2); still restored."""
_BINARY = bytes((VERSION,))

Change = tuple[str, bytes | None, int | None]
"""A changed customer: its id, its changelog record (``None``: erased) and its source (input partition)."""
_ALL = 2**62
"""A part size that takes every change in one part."""


def known_segments(lenses: Sequence[Lens], started: bool) -> list[dict[int, Any]] | None:
    """Per lens, the segment numbers its registry knows (a restored customer may only name these).

    ``None`` while the core has neither a model nor an event (``started``
    false; customer records may come before the model state, which checks
    them then: :meth:`CustomerRecords.forget_unknown_segments`).
    """
    if not started and not any(lens.model_version or lens.registry.segments for lens in lenses):
        return None
    return [lens.registry.segments for lens in lenses]


class CustomerRecords:
    """Takes the records of changed customers and restores customers from them.

    Parameters
    ----------
    store
        The core's feature store (its dirty rows are the changed customers).
    lenses
        The core's lenses, in config order.
    engine
        Returns the core's current trigger engine (``None``: no rules).
    erased
        Customers erased since the last :meth:`take_changes`, with their
        source; the core adds to it, this object empties it.
    """

    def __init__(
        self,
        store: FeatureStore,
        lenses: Sequence[Lens],
        engine: Callable[[], TriggerEngine | None],
        erased: dict[str, int],
    ) -> None:
        self._store = store
        self._lenses = list(lenses)
        self._names = [lens.name for lens in lenses]
        self._engine = engine
        self._erased = erased

    def take_changes(self) -> list[Change]:
        """Changed customers since the last call, sorted by id: ``(id, record or None if erased, source)``."""
        return [change for part in self.take_change_parts(_ALL) for change in part]

    def take_change_parts(self, size: int) -> Iterator[list[Change]]:
        """:meth:`take_changes` in parts of ``size``, each part's records built when it is reached.

        Which customers changed is taken at the call (a mass move makes most of them dirty); the records
        of a part are built from the columns when the iteration reaches it, so at most ``size`` records and
        their intermediates are held at once. Consume it before the core changes again.
        """
        store = self._store
        rows = store.take_dirty_rows()
        # erased since (a customer erased and seen again is changed: its record wins)
        gone = list(self._erased)
        again = np.isin(store.rows_of(gone), rows) if gone else np.zeros(0, np.bool_)
        erased = [(cid, self._erased[cid]) for cid, seen in zip(gone, again.tolist(), strict=True) if not seen]
        self._erased.clear()
        # the order by id, without a string per changed customer (a mass move changes most of them)
        return self._parts(rows, erased, store.order_by_id(rows, [cid for cid, _ in erased]), size)

    def _parts(self, rows: npt.NDArray[np.int64], erased: list[tuple[str, int]], order: npt.NDArray[np.int64],
               size: int) -> Iterator[list[Change]]:  # fmt: skip
        """The changes in ``order`` (indexes into ``rows``, then into ``erased``: (id, source)), ``size`` at a time."""
        n = len(rows)
        parts = self._store.part[rows]
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            held = chunk[chunk < n]
            held_ids = self._store.ids_of(rows[held])
            ids, records, srcs = iter(held_ids), iter(self._records(held_ids, rows[held])), iter(parts[held].tolist())
            out: list[Change] = []
            for i in chunk.tolist():
                if i < n:
                    cid, record, p = next(ids), next(records), next(srcs)
                else:
                    (cid, p), record = erased[i - n], None
                out.append((cid, record, None if p < 0 else p))
            yield out

    def _records(self, ids: list[str], rows: npt.NDArray[np.int64]) -> list[bytes]:
        """The changelog records (version 2, :mod:`segmenter.customer_codec`) of the customers ``ids`` held in
        ``rows``, in order, with each one's trigger state."""
        engine = self._engine()
        if engine is None:
            return encode_rows(self._store, rows, self._names)
        state = engine.customer_state
        return encode_rows(self._store, rows, self._names, lambda i: state(ids[i]))

    def load(self, customer_id: str, record: bytes, source: int | None, known: list[dict[int, Any]] | None) -> None:
        """Restore one customer from its record (see :meth:`~segmenter.pipeline.Segmenter.load_customer`).

        ``known``: :func:`known_segments`. On a :class:`StateError` the
        customer is not held (it starts afresh).
        """
        rec, triggers = _decode(customer_id, record)
        try:
            row = self._store.load_record(customer_id, rec, self._names, known)
        except StateError:
            self.forget(customer_id)
            raise
        self._store.part[row] = -1 if source is None else source
        self._erased.pop(customer_id, None)
        engine = self._engine()
        if engine is None:
            return
        engine.erase(customer_id)
        if triggers is not None:
            try:
                engine.load_customer_state(customer_id, triggers)
            except StateError:
                self.forget(customer_id)
                raise

    def forget(self, customer_id: str) -> None:
        """Drop one customer without output."""
        self._store.remove(customer_id)
        engine = self._engine()
        if engine is not None:
            engine.erase(customer_id)

    def forget_unknown_segments(self) -> None:
        """Customers naming a segment the lenses do not know start afresh (after a model state was loaded)."""
        store = self._store
        rows = np.flatnonzero(store.live)
        bad = np.zeros(len(rows), dtype=np.bool_)
        for li, lens in enumerate(self._lenses):
            seg = store.seg[rows, li]
            known = np.fromiter(lens.registry.segments, dtype=np.int64)
            bad |= (seg >= 0) & ~np.isin(seg, known)
        if bad.any():
            gone = [store.id_of(int(r)) for r in rows[bad].tolist()]
            logger.error("%d customers name segments the loaded model state does not know; they start afresh "
                         "(first: %r)", len(gone), sorted(gone)[0])  # fmt: skip
            for cid in gone:
                self.forget(cid)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget (without output) every customer whose latest event came from one of ``partitions``; how many."""
        store = self._store
        rows = store.rows_of_partitions(sorted(set(partitions)))
        engine = self._engine()
        if engine is not None:
            for row in rows.tolist():
                engine.erase(store.id_of(row))
        store.drop_rows(rows)
        return len(rows)


def _decode(customer_id: str, record: bytes) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A record's object (version 1: its JSON; version 2: :func:`segmenter.customer_codec.decode`) and its trigger
    state, with the version and types checked."""
    if record[:1] == _BINARY:
        rec = decode(customer_id, record)
    else:
        try:
            rec = orjson.loads(record)
        except orjson.JSONDecodeError as exc:
            raise StateError(f"customer {customer_id!r}: record is not JSON: {exc}") from None
        if not isinstance(rec, dict) or rec.get("v") != _JSON_VERSION:
            version = rec.get("v") if isinstance(rec, dict) else None
            raise StateError(f"customer {customer_id!r}: unsupported record version {version!r}")
    triggers = rec.get("e")
    if triggers is not None and not isinstance(triggers, dict):
        raise StateError(f"customer {customer_id!r}: trigger state must be an object")
    return rec, triggers
