"""The membership table: every customer's current segment per lens, as a compacted topic holds it.

A record (key = customer id) is
``{"customer_id", "segments": {lens: {"id", "name", "since", "model_version"}}, "updated_at"}``;
``since`` is the ``event_ts`` of the ``segment_change`` that put the customer in
that segment, ``model_version`` that change's model version and ``updated_at``
the ``emitted_at`` of the customer's last change in the batch. An erasure
writes a tombstone (no value). Reading the topic from the beginning and keeping
the last value per key rebuilds the table, which then equals the last
``segment_change`` per customer and lens.

:class:`MembershipTable` derives the records from the ``segment_change``
messages alone, so it needs nothing from the core but its outputs. The edge
keeps one table for the customers it owns (about 0.5 KB per customer with
two lenses), restored from the membership topic with their partitions.

Examples
--------
>>> from segmenter.outputs import SegmentChange, SegmentRef
>>> table = MembershipTable()
>>> table.apply(SegmentChange(customer_id="c1", lens="value", from_segment=None,
...     to_segment=SegmentRef(id="value-1", name="high spend"), cause="event", cause_event_id="e1",
...     event_ts="2026-01-01T00:00:00+00:00", emitted_at="2026-01-05T00:00:00+00:00",
...     model_version=3, distance=0.5, features={}, explanation=None))
>>> [(cid, value[:60]) for cid, value in table.take()]
[('c1', b'{"customer_id":"c1","segments":{"value":{"id":"value-1","nam')]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from segmenter.outputs import SegmentChange

__all__ = ["MembershipEntry", "MembershipRecord", "MembershipTable"]


class MembershipEntry(BaseModel):
    """A customer's current segment in one lens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    since: str
    """``event_ts`` of the segment change that put the customer in this segment."""
    model_version: int


class MembershipRecord(BaseModel):
    """One value of the membership topic (a tombstone has no value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    segments: dict[str, MembershipEntry]
    """Per lens; a lens in which the customer has no segment is absent."""
    updated_at: str
    """``emitted_at`` of the customer's last segment change written with this record."""


class _Entry(NamedTuple):
    id: str
    name: str
    since: str
    model_version: int


_Row = tuple[dict[str, _Entry], str]
"""A customer's segments per lens and ``updated_at``."""


class MembershipTable:
    """Current segments per customer; collects a batch's changes and turns them into records.

    Changes applied since the last :meth:`take` are pending: :meth:`take` makes
    them current and returns their records, :meth:`discard` forgets them (an
    aborted batch).
    """

    def __init__(self) -> None:
        self._current: dict[str, _Row] = {}
        self._pending: dict[str, _Row | None] = {}

    def __len__(self) -> int:
        return len(self._current)

    def _row(self, customer_id: str) -> _Row | None:
        if customer_id in self._pending:
            return self._pending[customer_id]
        return self._current.get(customer_id)

    def apply(self, change: SegmentChange) -> None:
        """Note one (stamped) segment change; an ``erasure`` change makes the customer's record a tombstone."""
        cid = change.customer_id
        if change.cause == "erasure":
            self._pending[cid] = None
            return
        row = self._row(cid)
        segments = dict(row[0]) if row is not None else {}
        to = change.to_segment
        if to is None:
            segments.pop(change.lens, None)
        else:
            segments[change.lens] = _Entry(to.id, to.name, change.event_ts, change.model_version)
        self._pending[cid] = (segments, change.emitted_at or change.event_ts)

    def erase(self, customer_id: str) -> None:
        """Forget an erased customer (a tombstone at the next :meth:`take`), whether or not it had a segment."""
        if self._row(customer_id) is not None:
            self._pending[customer_id] = None

    def take(self) -> list[tuple[str, bytes | None]]:
        """``(customer id, record value or None for a tombstone)`` of every changed customer, by id."""
        out: list[tuple[str, bytes | None]] = []
        for cid in sorted(self._pending):
            row = self._pending[cid]
            if row is None:
                self._current.pop(cid, None)
                out.append((cid, None))
            else:
                self._current[cid] = row
                out.append((cid, _encode(cid, row)))
        self._pending.clear()
        return out

    def discard(self) -> None:
        """Forget the pending changes (their batch was aborted)."""
        self._pending.clear()

    def load(self, customer_id: str, value: bytes | None) -> bool:
        """Restore one record read from the topic (``None``: a tombstone); False if it is not a valid record."""
        if value is None:
            self._current.pop(customer_id, None)
            return True
        try:
            record = MembershipRecord.model_validate_json(value)
        except ValidationError:
            return False
        segments = {lens: _Entry(e.id, e.name, e.since, e.model_version) for lens, e in record.segments.items()}
        self._current[customer_id] = (segments, record.updated_at)
        return True

    def record(self, customer_id: str) -> MembershipRecord | None:
        """The customer's current record (pending changes included), or ``None``."""
        row = self._row(customer_id)
        if row is None:
            return None
        return MembershipRecord.model_validate_json(_encode(customer_id, row))

    def drop(self, customer_ids: Iterable[str]) -> None:
        """Forget customers (their partitions were revoked)."""
        for cid in customer_ids:
            self._current.pop(cid, None)
            self._pending.pop(cid, None)

    def clear(self) -> None:
        """Forget everything."""
        self._current.clear()
        self._pending.clear()


def _encode(customer_id: str, row: _Row) -> bytes:
    segments, updated_at = row
    return orjson.dumps(
        {
            "customer_id": customer_id,
            "segments": {lens: e._asdict() for lens, e in sorted(segments.items())},
            "updated_at": updated_at,
        }
    )
