"""The membership record's bytes (:func:`segmenter.membership.membership_value`)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson

from segmenter.membership import MembershipRecord, membership_value


def test_since_is_written_as_isoformat_whole_seconds_in_utc_and_lenses_sorted() -> None:
    rnd = random.Random(5)
    for _ in range(500):
        since = [rnd.randrange(1_577_836_800, 4_102_444_800) for _ in range(2)]
        entries = {"value": ("value-2", "high spend", since[0], 7), "engagement": ("engagement-1", "many", since[1], 3)}
        value = membership_value("c9", entries, "2026-01-05T00:00:00.123456+00:00")
        expected = orjson.dumps({
            "customer_id": "c9",
            "segments": {
                lens: {"id": sid, "name": name, "since": datetime.fromtimestamp(s, UTC).isoformat(), "model_version": v}
                for lens, (sid, name, s, v) in sorted(entries.items())
            },
            "updated_at": "2026-01-05T00:00:00.123456+00:00",
        })  # fmt: skip
        assert value == expected
        assert MembershipRecord.model_validate_json(value).segments["value"].since.endswith("+00:00")
