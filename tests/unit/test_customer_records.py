"""The changelog records of :class:`segmenter.customer_records.CustomerRecords`, built from columns in bulk."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from segmenter import customer_codec, customer_records
from segmenter.customer_codec import decode
from segmenter.errors import StateError
from segmenter.features import FeatureStore
from segmenter.pipeline import Segmenter
from segmenter.triggers.rules import RuleSet
from tests.reference.v1_records import v1_record
from tests.unit.test_pipeline import CFG, EVENTS, RULES


def _expected(seg: Segmenter) -> dict[str, dict[str, Any]]:
    """Each dirty customer's record as :func:`tests.reference.v1_records.v1_record` gives it, plus ``v`` and ``e``."""
    store = seg.store
    names = [lens.name for lens in seg._lenses]
    engine = seg._engine
    out = {}
    for row in np.flatnonzero(store.dirty).tolist():
        cid = store.id_of(row)
        rec = v1_record(store, row, names)
        rec["v"] = 2
        rec["e"] = None if engine is None else engine.customer_state(cid)
        out[cid] = rec
    return out


@pytest.mark.parametrize("rules", [None, RULES], ids=["no-rules", "rules"])
def test_take_changes_writes_each_customer_as_itsv1_record(rules: RuleSet | None) -> None:
    seg = Segmenter(CFG, rules=rules)
    half = len(EVENTS) // 2
    tombstones = 0
    for part in (EVENTS[:half], EVENTS[half:]):  # two commits: the second's dirty rows are a subset
        seg.process_batch(part, [3] * len(part))
        expected = _expected(seg)
        erased = dict(seg._erased)
        changes = seg.take_changes()
        assert [(cid, p) for cid, record, p in changes if record is None] == sorted(
            (cid, p) for cid, p in erased.items() if cid not in expected
        ), "a tombstone per customer erased and not seen again, with its source"
        tombstones += sum(1 for _, record, _ in changes if record is None)
        got = {cid: decode(cid, record) for cid, record, _ in changes if record is not None}
        assert len(expected) > 50 and got == expected, "the bulk records hold the per-row records' values"
        if rules is not None:
            assert any(rec["e"] for rec in got.values()), "trigger states travel with their customers"
        assert [cid for cid, _, _ in changes] == sorted(cid for cid, _, _ in changes)
        assert {p for _, record, p in changes if record is not None} == {3}
        assert any(r["t"][2] is None for r in got.values()), "a customer without purchase"
        assert any(r["h"] for r in got.values()), "remembered event ids"
        assert any(len(r["h"]) < seg.store.dedup_size for r in got.values()), "a ring not yet full"
    assert tombstones > 0


def test_a_restored_customer_writes_the_record_it_was_restored_from() -> None:
    seg = Segmenter(CFG)
    seg.process_batch(EVENTS, [1] * len(EVENTS))
    records = [(cid, record) for cid, record, _ in seg.take_changes() if record is not None]
    other = Segmenter(CFG)
    other.load_model_parts(seg.model_parts())  # the segments the records name
    for cid, record in records:
        other.load_customer(cid, record, 1)
    other.store.dirty[:] = other.store.live
    assert {cid: r for cid, r, _ in other.take_changes()} == dict(records)


@pytest.mark.parametrize("rules", [None, RULES], ids=["no-rules", "rules"])
def test_a_customer_restored_from_a_json_record_of_version_1_is_the_customer_it_was(rules: RuleSet | None) -> None:
    """Changelogs written before version 2 still restore: the same columns and trigger states as its record's."""
    seg = Segmenter(CFG, rules=rules)
    seg.process_batch(EVENTS, [2] * len(EVENTS))
    names = [lens.name for lens in seg._lenses]
    engine = seg._engine
    v1 = {}
    for row in np.flatnonzero(seg.store.live).tolist():
        cid = seg.store.id_of(row)
        rec = {
            **v1_record(seg.store, row, names),
            "v": 1,
            "e": None if engine is None else engine.customer_state(cid),
        }
        v1[cid] = orjson.dumps(rec)
    seg.store.dirty[:] = seg.store.live
    v2 = {cid: record for cid, record, _ in seg.take_changes() if record is not None}
    old, new = Segmenter(CFG, rules=rules), Segmenter(CFG, rules=rules)
    for other, records in ((old, v1), (new, v2)):
        other.load_model_parts(seg.model_parts())
        for cid, record in records.items():
            other.load_customer(cid, record, 2)
        other.store.dirty[:] = other.store.live
    assert len(v1) > 50 and {c: r for c, r, _ in old.take_changes()} == v2 == {c: r for c, r, _ in new.take_changes()}


@pytest.mark.parametrize("cut", [1, 12, 30, -1])
def test_a_binary_record_cut_short_is_a_state_error(cut: int) -> None:
    seg = Segmenter(CFG)
    seg.process_batch(EVENTS, [0] * len(EVENTS))
    cid, record = next((cid, record) for cid, record, _ in seg.take_changes() if record is not None)
    with pytest.raises(StateError, match="malformed binary record"):
        Segmenter(CFG).load_customer(cid, record[:cut], 0)


def test_the_changelog_in_parts_is_the_whole_one_each_part_built_when_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    whole, parted = Segmenter(CFG, rules=RULES), Segmenter(CFG, rules=RULES)
    for seg in (whole, parted):
        seg.process_batch(EVENTS, [3] * len(EVENTS))
    want = whole.take_changes()
    built: list[int] = []
    records = customer_codec.encode_rows

    def counted(store: FeatureStore, rows: Any, names: Any, triggers: Any = None) -> Any:
        built.append(len(rows))
        return records(store, rows, names, triggers)

    monkeypatch.setattr(customer_records, "encode_rows", counted)  # as customer_records calls it
    parts = parted.take_change_parts(7)
    assert built == [], "nothing is built before its part is reached"
    got = []
    for part in parts:
        assert 0 < len(part) <= 7 and max(built) <= 7
        got.append(part)
    assert [change for part in got for change in part] == want
    assert len(got) == -(-len(want) // 7) > 10
    assert any(record is None for _, record, _ in want), "tombstones among the parts, in id order"
    assert parted.take_changes() == []
