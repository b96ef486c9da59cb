"""The membership-table record of one customer, written from its entries (:mod:`segmenter.membership`).

The reference :func:`segmenter.membership.membership_values` (many customers from the core's columns) must
write byte for byte; also the fake cores' membership records.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

Entries = Mapping[str, tuple[str, str, int, int]]
"""A customer's segments per lens: ``{lens: (segment id, name, since epoch seconds, model version)}``."""


def membership_value(customer_id: str, entries: Entries, updated_at: str) -> bytes:
    """The record value of a customer with ``entries`` (lenses sorted by name)."""
    return orjson.dumps(
        {
            "customer_id": customer_id,
            "segments": {
                lens: {
                    "id": sid,
                    "name": name,
                    "since": datetime.fromtimestamp(since, UTC),  # orjson writes isoformat()'s text, faster
                    "model_version": version,
                }
                for lens, (sid, name, since, version) in sorted(entries.items())
            },
            "updated_at": updated_at,
        }
    )
