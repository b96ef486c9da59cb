"""Erasure is complete: per store, nothing of an erased customer is left (id, its hashes, its values).

Each store's serialised form is searched for the id's bytes, its blake2b marker
hash, its crc32 (the key of the clock samples, vectors and trainer sample)
and, where a store holds values, the customer's raw values as float64 bytes.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from segmenter import codec
from segmenter.config import default_config
from segmenter.erasures import ErasureMarkers, id_hash
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, validate_event
from segmenter.features import BASE_EPOCH
from segmenter.id_index import IdIndex
from segmenter.outputs import SegmentChange
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer, decode_vectors
from segmenter.triggers.engine import TriggerEngine
from tests.unit.test_membership_value import membership_entries
from tests.unit.test_pipeline import CFG, EVENTS, RULES
from tests.unit.triggers.helpers import FEATURES, HIGH, LOW, change, rule, ruleset

VICTIM = "cust-000001"
C = "cust-erased-7"
T0 = 1_772_323_200.0  # 2026-03-01T00:00:00Z
HOUR = 3600.0


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def traces(customer_id: str) -> dict[str, bytes]:
    """The byte patterns that would betray the customer: its id, its marker hash and its crc32."""
    crc = zlib.crc32(customer_id.encode())
    return {"id": customer_id.encode(), "blake2b": struct.pack("<Q", id_hash(customer_id)),
            "crc32": struct.pack("<I", crc), "crc32 as int64": struct.pack("<q", crc),
            "crc32 in a [time, key] pair": f",{crc}]".encode()}  # fmt: skip


def assert_absent(blob: bytes, patterns: dict[str, bytes], where: str) -> None:
    found = [name for name, p in patterns.items() if p in blob]
    assert not found, f"{where} still holds the erased customer's {found}"


def values_of(vectors: Any) -> dict[str, bytes]:
    """Byte patterns (in the values' own dtype) of the non-trivial raw values (0 and 1 are everyone's)."""
    arr = np.asarray(vectors)
    return {f"value {v!r}": v.tobytes() for v in arr.ravel() if v not in (0.0, 1.0)}


def ev(
    event_id: str, at: float, etype: str = "session_start", customer: str = "cust-erased-7", amount: float | None = None
) -> CustomerEvent:
    ts = np.datetime64(int(at), "s").astype(str) + "Z"
    body: dict[str, Any] = {"event_id": event_id, "customer_id": customer, "type": etype, "ts": ts}
    if amount is not None:
        body["amount"] = amount
    return validate_event(body)


@pytest.fixture(scope="module")
def erased() -> tuple[Segmenter, dict[str, bytes], dict[str, bytes]]:
    """A learning core with rules, warmed up, after erasing ``VICTIM``; its serialised forms before the erasure."""
    seg = Segmenter(CFG, RULES)
    for e in EVENTS[:1500]:
        with contextlib.suppress(EventError):
            seg.process(e)
    seg.take_dirty()
    row = seg.store.row_of(VICTIM)
    assert row is not None
    raw = values_of(seg.store.f[row])
    before = {"snapshot": seg.snapshot(), "model_state": seg.model_state()}
    assert traces(VICTIM)["id"] in before["snapshot"], "the test must be able to see the id"
    out = seg.process(ev("erase-1", EVENTS[1499].epoch, "erasure_request", VICTIM))
    assert out and all(isinstance(m, SegmentChange) and m.to_segment is None for m in out)
    return seg, raw, before


def test_the_core_serialises_nothing_of_the_erased_customer(
    erased: tuple[Segmenter, dict[str, bytes], dict[str, bytes]],
) -> None:
    seg, raw, before = erased
    assert raw and any(p in before["snapshot"] for p in raw.values()), "the snapshot held the customer's values"
    dirty = seg.take_dirty()
    assert dirty == {VICTIM: None}, "the only record naming the customer is its tombstone's key"
    patterns = {**traces(VICTIM), **raw}
    assert_absent(seg.snapshot(), {k: v for k, v in patterns.items() if k != "blake2b"}, "snapshot()")
    ids = {"id": patterns["id"], "crc32": patterns["crc32"], "crc32 as int64": patterns["crc32 as int64"]}
    assert_absent(seg.model_state(), ids, "model_state()")
    assert struct.pack("<Q", id_hash(VICTIM)) in seg.model_state(), "the marker (a hash, never the id) is kept"
    assert seg.customer_view(VICTIM) is None and seg.store.row_of(VICTIM) is None


def test_the_feature_store_row_and_the_id_index_forget(
    erased: tuple[Segmenter, dict[str, bytes], dict[str, bytes]],
) -> None:
    seg, raw, _ = erased
    store = seg.store
    assert VICTIM not in set(store.customer_ids())
    arrays = b"".join(np.ascontiguousarray(getattr(store, name)).tobytes()
                      for name in ("f", "t", "h", "crc", "seg", "since", "prev"))  # fmt: skip
    assert_absent(arrays, {**raw, "crc32": traces(VICTIM)["crc32"]}, "the store's columns")
    assert_absent(store._index._arena.tobytes(), {"id": VICTIM.encode()}, "the id index's arena")


def test_the_clock_samples_forget_the_customer() -> None:
    seg = Segmenter(CFG)
    for i, customer in enumerate(["first-one", "second-one", C]):
        seg.process(ev(f"e{i}", T0 + i * 60, customer=customer))
    pair = traces(C)["crc32 in a [time, key] pair"]
    assert pair in seg.model_state(), "the test must see the customer in the clock's sample"
    seg.erase(C)
    kept = {"blake2b"}  # the erasure marker, on purpose
    assert_absent(seg.model_state(), {k: v for k, v in traces(C).items() if k not in kept}, "model_state()")
    assert seg.watermark is not None, "the clock itself stays"


def test_the_id_index_zeroes_removed_ids_and_compacts() -> None:
    index = IdIndex()
    index.add("keep", 0)
    index.add("secret-customer", 1)
    assert index.remove("secret-customer") == 1
    assert b"secret-customer" not in index._arena.tobytes() and index.get("secret-customer") is None
    for i in range(20_000):  # churn: the garbage is compacted away, the arena stays near the live bytes
        index.add(f"churn-{i:08d}", 2)
        index.remove(f"churn-{i:08d}")
    assert len(index) == 1 and index.get("keep") == 0
    assert index._used - index._garbage == len(b"keep") and index._used <= (1 << 17)


def test_an_erased_customers_redelivered_and_late_events_are_dropped_and_counted_and_later_ones_start_anew() -> None:
    seg = Segmenter(CFG)
    seg.process(ev("e1", T0))
    seg.process(ev("e2", T0 + HOUR))
    seg.process(ev("x", T0 + 2 * HOUR, "erasure_request"))
    assert seg.store.row_of(C) is None
    assert seg.process(ev("e1", T0)) == []  # re-delivered (the dedup ring went with the profile)
    assert seg.process(ev("e9", T0 + 1.5 * HOUR)) == []  # late, within the lateness
    assert seg.process(ev("e10", T0 + 2 * HOUR)) == []  # at the erasure's time
    assert seg.store.row_of(C) is None
    assert seg.stats().after_erasure == 3 and seg.stats().late == 0
    seg.process(ev("e11", T0 + 3 * HOUR))  # after the erasure: a new profile
    row = seg.store.row_of(C)
    assert row is not None and seg.store.last_time(row) == int(T0 + 3 * HOUR) - BASE_EPOCH
    seg.process(ev("e1", T0))  # an old event never joins the new profile either
    assert seg.stats().after_erasure == 4 and seg.store.t[row, 0] == int(T0 + 3 * HOUR) - BASE_EPOCH


def test_within_one_batch_events_after_the_erasure_are_judged_by_its_time() -> None:
    seg = Segmenter(CFG)
    batch = [ev("e1", T0), ev("x", T0 + HOUR, "erasure_request"), ev("e1", T0), ev("e2", T0 + 0.5 * HOUR),
             ev("e3", T0 + 2 * HOUR)]  # fmt: skip
    result = seg.process_batch(batch)
    assert result.dropped == [2, 3] and result.errors == []
    row = seg.store.row_of(C)
    assert row is not None and seg.store.t[row, 0] == int(T0 + 2 * HOUR) - BASE_EPOCH


def test_a_tombstone_of_an_unknown_customer_marks_it_too() -> None:
    seg = Segmenter(CFG)
    seg.process(ev("o", T0 + HOUR, customer="other"))
    assert seg.erase(C) == []  # its events may still be on their way: marked at the latest time seen
    assert seg.process(ev("e1", T0)) == [] and seg.store.row_of(C) is None
    assert seg.stats().after_erasure == 1


def test_markers_survive_a_model_state_restore_without_the_id_and_expire_behind_the_watermark() -> None:
    seg = Segmenter(CFG)
    seg.process(ev("e1", T0))
    seg.process(ev("x", T0 + HOUR, "erasure_request"))
    state = seg.model_state()
    assert_absent(state, {"id": C.encode(), "crc32": traces(C)["crc32"]}, "model_state()")
    assert traces(C)["blake2b"] in state
    restored = Segmenter(CFG)
    restored.load_model_state(state)
    restored.process(ev("e1", T0))
    assert restored.store.row_of(C) is None and restored.stats().after_erasure == 1
    lateness = CFG.features.lateness_hours * HOUR
    restored.advance_to(T0 + HOUR + lateness + 2 * restored.config.inactivity.check_interval_hours * HOUR)
    assert len(restored._eraser.markers) == 0, "past the lateness window the marker goes"
    restored.process(ev("e1", T0))
    assert restored.store.row_of(C) is not None, "documented: an event older than the window starts anew"


def test_marker_state_is_checked() -> None:
    markers = ErasureMarkers()
    markers.add(5, 10)
    markers.add(3, 20)
    markers.add(5, 30)
    state = markers.state()
    assert state["keys"].tolist() == [3, 5] and state["times"].tolist() == [20, 30]
    bad = {"keys": np.array([5, 3], np.uint64), "times": np.array([1, 2], np.int64)}
    with pytest.raises(Exception, match="sorted"):
        ErasureMarkers().load_state(bad)


def test_the_trigger_engine_forgets_customer_state_and_held_triggers() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours={"start": "21:00", "end": "08:00", "timezone": "UTC",
                                                     "action": "hold"})))  # fmt: skip
    at = utc(2026, 3, 2, 22, 0)
    assert engine.evaluate(change(at, HIGH, LOW, customer=VICTIM), FEATURES, None) == []
    assert engine.evaluate(change(at, HIGH, LOW, customer="other"), FEATURES, None) == []
    assert engine.pending() == 2
    engine.erase(VICTIM)
    assert all(entry[1] != VICTIM for entry in engine._heap)
    assert_absent(repr(engine.state()).encode(), {"id": VICTIM.encode()}, "the engine state")
    released = engine.release(utc(2026, 3, 3, 9, 0))
    assert [t.customer_id for t in released] == ["other"]


def test_membership_forgets_an_erased_customer() -> None:
    seg = Segmenter(CFG, RULES)
    for e in EVENTS[:1500]:
        with contextlib.suppress(EventError):
            seg.process(e)
    before = membership_entries(seg, [VICTIM, "never-seen"])
    assert before[VICTIM], "the victim holds a segment before its erasure"
    assert before["never-seen"] is None
    seg.process(ev("erase-1", EVENTS[1499].epoch, "erasure_request", VICTIM))
    assert membership_entries(seg, [VICTIM]) == {VICTIM: None}, "an erased customer's membership record is a tombstone"


# ------------------------------------------------------------------------------------------- shared mode
def _shared_config() -> Any:
    base = default_config()
    return base.model_copy(update={"lenses": [lens.model_copy(update={"warmup": 50}) for lens in base.lenses]})


def test_shared_mode_pending_vectors_and_the_trainers_sample_forget_the_customer() -> None:
    config = _shared_config()
    core = Segmenter(config, shared=True)
    trainer = ModelTrainer(config)
    for i in range(40):
        core.process(ev(f"a{i}", T0 + i * 60, "purchase", customer=f"cust-{i % 8:06d}", amount=10.0 + i))
    trainer.apply(core.take_vectors() or b"")
    crc = zlib.crc32(VICTIM.encode())
    assert crc in trainer._sample, "the sample held the customer"
    others = {v for k, rows in trainer._sample.items() if k != crc for v in rows[0]}
    sampled = values_of([v for v in trainer._sample[crc][0] if v not in others])  # its own values only
    assert sampled
    assert any(p in trainer.state() for p in sampled.values())
    core.process(ev("late-1", T0 + 50 * 60, "purchase", customer=VICTIM, amount=77.0))
    core.process(ev("x", T0 + 51 * 60, "erasure_request", customer=VICTIM))
    blob = core.take_vectors()
    assert blob is not None
    keys, _, gone = decode_vectors(blob, ["value", "engagement"])
    assert crc not in keys.tolist() and gone.tolist() == [crc], "pending vectors dropped, the trainer told"
    trainer.apply(blob)
    assert crc not in trainer._sample
    state = trainer.state()
    assert_absent(state, traces(VICTIM), "the trainer state")
    # the lenses' learning buffers (warm-up, mini-batch; in the view) hold unkeyed vectors by design (docs)
    assert_absent(state.replace(trainer.view(), b""), sampled, "the trainer's sample")
    assert core.take_vectors() is None, "the erased hash is sent once"


def test_a_vectors_record_of_the_previous_version_still_loads_without_erased_hashes() -> None:
    old = codec.encode("vectors", 2, {"keys": np.array([7], np.uint32),
                                      "lenses": {"value": np.ones((1, 4)), "engagement": np.ones((1, 4))}})  # fmt: skip
    keys, _, gone = decode_vectors(old, ["value", "engagement"])
    assert keys.tolist() == [7] and gone.tolist() == []


def test_a_thousand_erasures_of_unknown_customers_add_nothing_but_hashed_markers() -> None:
    seg = Segmenter(CFG, RULES)
    seg.process(ev("e1", T0, customer="known"))
    for i in range(1000):
        assert seg.erase(f"unknown-{i}") == []
    assert len(seg.store) == 1 and len(seg.store._index) == 1 and seg.store._index._used == len(b"known")
    assert set(seg.take_dirty()) == {"known"}, "no tombstone for customers never held"
    assert len(seg._eraser.markers) == 1000 and b"unknown-" not in seg.model_state()
