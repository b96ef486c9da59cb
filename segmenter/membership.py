"""The membership table: every customer's current segment per lens, as a compacted topic holds it.

A record (key = customer id) is
``{"customer_id", "segments": {lens: {"id", "name", "since", "model_version"}}, "updated_at"}``;
``since`` is when the customer entered that segment (the core's event time of
the move, whole seconds, ISO-8601 UTC), ``model_version`` the lens's model
version at that move and ``updated_at`` the ``emitted_at`` of the customer's
last change in the batch. An erasure writes a tombstone (no value). Reading the
topic from the beginning and keeping the last value per key rebuilds the
table, which then equals the last ``segment_change`` per customer and lens.

The values come from the core (:meth:`segmenter.pipeline.Segmenter.membership_values`,
which holds segment, ``since`` and model version per customer and lens in its
columns), for the customers that had a ``segment_change`` in the batch: the
edge keeps nothing per customer. (The same record written from one customer's
entries, the reference the tests compare against, is
``tests/reference/membership_record.py``.)

Examples
--------
>>> from segmenter.outputs import SegmentRef
>>> ref = SegmentRef(id="value-1", name="high spend")
>>> columns = (np.array([[1]]), np.array([[1767225600]]), np.array([[3]]))
>>> value, gone = membership_values(["c1", "c2"], [True, False], columns, [("value", lambda n: ref)],
...                                 ["2026-01-05T00:00:00+00:00"] * 2)
>>> orjson.loads(value)["segments"]["value"]["id"], orjson.loads(value)["updated_at"], gone
('value-1', '2026-01-05T00:00:00+00:00', None)
>>> MembershipRecord.model_validate_json(value).segments["value"].since
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
from pydantic import BaseModel, ConfigDict

__all__ = [
    "MembershipEntry",
    "MembershipRecord",
    "Table",
    "comparable",
    "membership_values",
    "table_from_changes",
]


class Named(Protocol):
    """A segment as a membership record names it (:class:`segmenter.outputs.SegmentRef`)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class MembershipEntry(BaseModel):
    """A customer's current segment in one lens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    since: str
    """When the customer entered this segment (event time, whole seconds, ISO-8601 UTC)."""
    model_version: int


class MembershipRecord(BaseModel):
    """One value of the membership topic (a tombstone has no value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str
    segments: dict[str, MembershipEntry]
    """Per lens; a lens in which the customer has no segment is absent."""
    updated_at: str
    """``emitted_at`` of the customer's last segment change written with this record."""


def membership_values(
    customer_ids: Sequence[str],
    held: Sequence[bool],
    columns: tuple[npt.NDArray[np.integer[Any]], npt.NDArray[np.int64], npt.NDArray[np.integer[Any]]],
    lenses: Sequence[tuple[str, Callable[[int], Named]]],
    updated_at: Sequence[str],
) -> list[bytes | None]:
    """The record values of many customers at once, from the core's columns.

    ``held``: whether each customer is held (``None``, a tombstone, if not); ``columns``: the held customers'
    segment, ``since`` (epoch seconds) and model version per lens (one row per held customer, in order, one
    column per lens of ``lenses``); ``lenses``: each lens's name and the id and name of a segment number.
    The times are formatted in one numpy call and each segment's JSON text once, so a customer costs a join.
    """
    seg, since, version = columns
    iso = np.char.add(np.datetime_as_string(since.astype("datetime64[s]"), unit="s"), '+00:00","model_version":')
    segs, isos, versions = seg.tolist(), iso.tolist(), version.tolist()
    order = sorted(range(len(lenses)), key=lambda li: lenses[li][0])
    heads: list[dict[int, str]] = [{} for _ in lenses]
    out: list[bytes | None] = []
    k = 0
    dumps = orjson.dumps
    for cid, is_held, at in zip(customer_ids, held, updated_at, strict=True):
        if not is_held:
            out.append(None)
            continue
        row_seg, row_iso, row_version = segs[k], isos[k], versions[k]
        k += 1
        parts = []
        for li in order:
            n = row_seg[li]
            if n < 0:
                continue
            head = heads[li].get(n)
            if head is None:
                ref = lenses[li][1](n)
                head = heads[li][n] = (
                    f'{dumps(lenses[li][0]).decode()}:{{"id":{dumps(ref.id).decode()},"name":{dumps(ref.name).decode()},'
                    '"since":"'
                )
            parts.append(f"{head}{row_iso[li]}{row_version[li]}}}")
        segments = ",".join(parts)
        text = f'{{"customer_id":{dumps(cid).decode()},"segments":{{{segments}}},"updated_at":{dumps(at).decode()}}}'
        out.append(text.encode())
    return out


Table = dict[str, dict[str, dict[str, Any]] | None]
"""Customer id -> lens -> entry fields (None: erased)."""


def table_from_changes(messages: Iterable[Mapping[str, Any]]) -> Table:
    """What the membership topic must hold after these published messages, in the fields it guarantees.

    The last ``segment_change`` per customer and lens gives the segment id and the model version of the move,
    and ``since`` (whole seconds) where an event caused it (a move by inactivity or a model change dates from
    the customer's scoring); ``name`` is left out (the record carries the segment's current name, which
    follows its profile).
    An ``erasure`` change makes the customer ``None`` (a tombstone).
    """
    table: Table = {}
    for m in messages:
        if m.get("kind") != "segment_change":
            continue
        cid = m["customer_id"]
        if m["cause"] == "erasure":
            table[cid] = None
            continue
        segments = table.get(cid) or {}
        if m["to_segment"] is None:
            segments.pop(m["lens"], None)
        else:
            entry: dict[str, Any] = {"id": m["to_segment"]["id"], "model_version": m["model_version"]}
            if m["cause"] == "event":  # the record holds whole seconds of event time
                entry["since"] = datetime.fromisoformat(m["event_ts"]).replace(microsecond=0).isoformat()
            segments[m["lens"]] = entry
        table[cid] = segments
    return table


def comparable(records: Mapping[str, Mapping[str, Mapping[str, Any]] | None], like: Table) -> Table:
    """The membership ``records`` (customer -> segments) cut to the fields each entry of ``like`` has."""
    out: Table = {}
    for cid, segments in records.items():
        want = like.get(cid) or {}
        out[cid] = (
            None
            if segments is None
            else {lens: {k: e[k] for k in want.get(lens, {"id": None})} for lens, e in segments.items()}
        )
    return out
