"""The membership record's bytes: the reference (:mod:`tests.reference.membership_record`) and the many-customer
writer :func:`segmenter.membership.membership_values` that must match it."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from segmenter.features import BASE_EPOCH
from segmenter.membership import MembershipRecord, membership_values
from segmenter.pipeline import Segmenter
from tests.reference.membership_record import membership_value
from tests.unit.test_pipeline import CFG, EVENTS


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


@dataclass(frozen=True)
class _Ref:
    id: str
    name: str


def test_many_values_from_columns_are_the_bytes_of_membership_value() -> None:
    """Odd ids and names (quotes, backslashes, non-ASCII), lenses out of name order, customers without a segment."""
    rnd = random.Random(11)
    names = {"value": ['high "spend"', "caf\u00e9 \\ fans", "\u4e2d"], "engagement": ["many", "few\n"], "a": ["x"]}

    def refs(lens: str) -> Callable[[int], _Ref]:
        return lambda n: _Ref(f"{lens}-{n}", names[lens][n])

    lenses = [(lens, refs(lens)) for lens in ("value", "engagement", "a")]
    ids = [rnd.choice(['c"1', "c\\2", "\u00e9t\u00e9", "plain"]) + str(i) for i in range(400)]
    held = [rnd.random() > 0.1 for _ in ids]
    n = sum(held)
    seg = np.array([[rnd.randrange(-1, len(names[lens])) for lens, _ in lenses] for _ in range(n)], np.int16)
    since = np.array([[rnd.randrange(-560_000_000, 3_700_000_000) for _ in lenses] for _ in range(n)], np.int64)
    version = np.array([[rnd.randrange(0, 2**31) for _ in lenses] for _ in range(n)], np.int32)
    at = [rnd.choice(["2026-01-05T00:00:00.123456+00:00", "2026-01-06T00:00:00+00:00"]) for _ in ids]
    got = membership_values(ids, held, (seg, since, version), lenses, at)
    rows = iter(range(n))
    expected: list[bytes | None] = []
    for cid, is_held, stamp in zip(ids, held, at, strict=True):
        if not is_held:
            expected.append(None)
            continue
        k = next(rows)
        entries = {lens: (ref(int(seg[k, li])).id, ref(int(seg[k, li])).name, int(since[k, li]), int(version[k, li]))
                   for li, (lens, ref) in enumerate(lenses) if seg[k, li] >= 0}  # fmt: skip
        expected.append(membership_value(cid, entries, stamp))
    assert got == expected
    assert None in got and any(v is not None and b'"segments":{}' in v for v in got), "tombstones and no segment"


def test_a_cores_values_are_its_columns_and_registries_as_membership_value_writes_them() -> None:
    seg = Segmenter(CFG)
    seg.process_batch(EVENTS, [0] * len(EVENTS))
    store = seg.store
    ids = [*sorted(store.ids_of(np.flatnonzero(store.live))), "never-seen"]
    at = [f"2026-02-01T00:00:{i % 60:02d}+00:00" for i in range(len(ids))]
    expected: list[bytes | None] = []
    for cid, stamp in zip(ids, at, strict=True):
        rows = store.rows_of([cid])
        if rows[0] < 0:
            expected.append(None)
            continue
        row = int(rows[0])
        entries = {}
        for li, lens in enumerate(seg.lenses):
            n = int(store.seg[row, li])
            if n >= 0:
                ref = lens.ref(n)
                entries[lens.name] = (
                    ref.id,
                    ref.name,
                    int(store.since[row, li]) + BASE_EPOCH,
                    int(store.mver[row, li]),
                )
        expected.append(membership_value(cid, entries, stamp))
    assert len(ids) > 50 and seg.membership_values(ids, at) == expected


def membership_entries(core: Segmenter, ids: Sequence[str]) -> dict[str, dict[str, tuple[str, str, int, int]] | None]:
    """The customers' membership records as ``{lens: (id, name, since epoch, model version)}`` (``None``: erased)."""
    values = core.membership_values(ids, ["2026-02-01T00:00:00+00:00"] * len(ids))
    out: dict[str, dict[str, tuple[str, str, int, int]] | None] = {}
    for cid, value in zip(ids, values, strict=True):
        segments = None if value is None else orjson.loads(value)["segments"]
        out[cid] = None if segments is None else {
            lens: (e["id"], e["name"], int(datetime.fromisoformat(e["since"]).timestamp()), e["model_version"])
            for lens, e in segments.items()
        }  # fmt: skip
    return out
