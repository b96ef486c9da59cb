"""The membership table: every customer's current segment per lens, as a compacted topic holds it.

A record (key = customer id) is
``{"customer_id", "segments": {lens: {"id", "name", "since", "model_version"}}, "updated_at"}``;
``since`` is when the customer entered that segment (the core's event time of
the move, whole seconds, ISO-8601 UTC), ``model_version`` the lens's model
version at that move and ``updated_at`` the ``emitted_at`` of the customer's
last change in the batch. An erasure writes a tombstone (no value). Reading the
topic from the beginning and keeping the last value per key rebuilds the
table, which then equals the last ``segment_change`` per customer and lens.

The entries come from the core (:meth:`segmenter.pipeline.Segmenter.membership`,
which holds segment, ``since`` and model version per customer and lens in its
columns), for the customers that had a ``segment_change`` in the batch: the
edge keeps nothing per customer.

Examples
--------
>>> value = membership_value("c1", {"value": ("value-1", "high spend", 1767225600, 3)}, "2026-01-05T00:00:00+00:00")
>>> orjson.loads(value)["segments"]["value"]["id"], orjson.loads(value)["updated_at"]
('value-1', '2026-01-05T00:00:00+00:00')
>>> MembershipRecord.model_validate_json(value).segments["value"].since
'2026-01-01T00:00:00+00:00'
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel, ConfigDict

__all__ = ["Entries", "MembershipEntry", "MembershipRecord", "membership_value"]

Entries = Mapping[str, tuple[str, str, int, int]]
"""A customer's segments per lens: ``{lens: (segment id, name, since epoch seconds, model version)}``."""


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


def membership_value(customer_id: str, entries: Entries, updated_at: str) -> bytes:
    """The record value of a customer with ``entries`` (lenses sorted by name)."""
    return orjson.dumps(
        {
            "customer_id": customer_id,
            "segments": {
                lens: {
                    "id": sid,
                    "name": name,
                    "since": datetime.fromtimestamp(since, UTC).isoformat(),
                    "model_version": version,
                }
                for lens, (sid, name, since, version) in sorted(entries.items())
            },
            "updated_at": updated_at,
        }
    )
