"""The model topic in parts: only changed parts are written, the newest of each restores the core exactly."""

from __future__ import annotations

import logging
import zlib
from typing import Any

import pytest

import consumer.state as state_module
from consumer.service import Service
from consumer.sink import InRecord, OutRecord, RebalanceHandler
from consumer.state import (
    FORMAT_HEADER,
    MODEL_FORMAT,
    MODEL_PART_FORMAT,
    BadRecords,
    ModelTracker,
    inflate_part,
    restore_model,
)
from segmenter.errors import StateError
from segmenter.pipeline import Segmenter
from tests.unit.consumer.conftest import DrainTransport, Harness, event, make_harness, make_service
from tests.unit.test_pipeline import CFG, EVENTS, RULES, run


def _commit(seg: Segmenter, tracker: ModelTracker, topic: dict[bytes, bytes]) -> None:
    """What the service does at a commit: the changed parts go to the (compacted) topic."""
    records = tracker.records(seg.model_parts(), "g.model")
    topic.update({(r.key or b"").partition(b"/")[2]: r.value or b"" for r in records})


def test_the_newest_part_of_each_kind_restores_the_core_at_the_last_commit() -> None:
    """Parts written at different commits, stitched at restore, continue exactly like the uninterrupted core."""
    split = 900
    whole = Segmenter(CFG, RULES)
    run(whole, EVENTS[:split])
    after = run(whole, EVENTS[split:])
    first = Segmenter(CFG, RULES)
    tracker = ModelTracker("0")
    topic: dict[bytes, bytes] = {}
    changelog: dict[str, bytes | None] = {}
    for k in range(0, split, 7):  # small commits
        run(first, EVENTS[k : min(k + 7, split)])
        changelog.update(first.take_dirty())
        _commit(first, tracker, topic)
    restored = Segmenter(CFG, RULES)
    for cid, rec in changelog.items():
        if rec is not None:
            restored.load_customer(cid, rec)
    restored.load_model_parts({k.decode(): inflate_part(v) for k, v in topic.items()})
    assert restored.model_state() == first.model_state()
    assert run(restored, EVENTS[split:]) == after


def test_model_parts_load_like_the_whole_model_and_refuse_what_is_missing_or_corrupt() -> None:
    seg = Segmenter(CFG, RULES)
    run(seg, EVENTS[:600])
    parts = seg.model_parts()
    assert sorted(parts) == ["core", *sorted(f"lens:{lens.name}" for lens in seg.lenses)]
    other = Segmenter(CFG, RULES)
    other.load_model_parts(parts)
    assert other.model_state() == seg.model_state()
    fresh = Segmenter(CFG, RULES)
    before = fresh.model_state()
    with pytest.raises(StateError, match="differ from the config"):
        fresh.load_model_parts({k: v for k, v in parts.items() if k != "core"})
    name = f"lens:{seg.lenses[0].name}"
    with pytest.raises(StateError, match=name):
        fresh.load_model_parts({**parts, name: parts["core"]})  # a core record where a lens belongs
    assert fresh.model_state() == before  # nothing changed


def _service(h: Harness, cores: list[Segmenter]) -> Service[Any]:
    def make_transport(handler: RebalanceHandler) -> DrainTransport:
        h.transport.handler = handler
        return h.transport

    def make_core(rules: Any) -> Segmenter:
        core = Segmenter(CFG, rules)
        cores.append(core)
        return core

    svc = make_service(h.settings, make_transport, make_core)
    h.transport.service = svc
    return svc


def _keys_of_last_commit(h: Harness, before: int) -> list[bytes]:
    return [r.key or b"" for r in h.transport.records("g.model")[before:]]


def test_a_commit_that_learned_nothing_writes_only_the_small_core_part() -> None:
    h = make_harness()
    cores: list[Segmenter] = []
    for i in range(30):
        h.transport.produce_input(f"c{i % 4}".encode(), event(i, f"c{i % 4}"))
    _service(h, cores).run()
    models = h.transport.records("g.model")
    assert {r.key for r in models} == {b"0/core", *(f"0/lens:{lens.name}".encode() for lens in cores[0].lenses)}
    assert all(dict(r.headers)[FORMAT_HEADER] == MODEL_PART_FORMAT for r in models)
    before = len(models)
    for _ in range(3):  # a repeated event: only the duplicate counter moves
        h.transport.produce_input(b"c1", event(1, "c1"))
    _service(h, cores).run()
    assert cores[-1].stats().duplicates == 3
    assert _keys_of_last_commit(h, before) == [b"0/core"]
    core_bytes = len(h.transport.records("g.model")[-1].value or b"")
    assert core_bytes * 5 < max(len(r.value or b"") for r in models)


def test_a_restart_continues_with_the_same_outputs_as_an_uninterrupted_run() -> None:
    values = [(f"c{i % 5}".encode(), event(i, f"c{i % 5}", minutes=i * 7)) for i in range(160)]
    whole = make_harness()
    for key, value in values:
        whole.transport.produce_input(key, value)
    _service(whole, []).run()
    parts = make_harness()
    cores: list[Segmenter] = []
    for key, value in values[:90]:
        parts.transport.produce_input(key, value)
    _service(parts, cores).run()
    for key, value in values[90:]:
        parts.transport.produce_input(key, value)
    _service(parts, cores).run()
    assert cores[-1].stats().events == 160
    assert [r.value for r in parts.transport.records("out")] == [r.value for r in whole.transport.records("out")]


def test_a_whole_model_record_of_the_older_format_still_restores_then_parts_take_over() -> None:
    source = Segmenter(CFG, RULES)
    run(source, EVENTS[:300])
    h = make_harness()
    h.transport.append(OutRecord("g.model", b"0", source.model_state(), ((FORMAT_HEADER, MODEL_FORMAT),), 0))
    h.transport.produce_input(b"c1", event(0, "c1", minutes=60 * 23))
    cores: list[Segmenter] = []
    _service(h, cores).run()
    assert cores[0].stats().events == source.stats().events + 1
    assert {r.key for r in h.transport.records("g.model")} >= {b"0", b"0/core"}  # every part written after it


def _part(offset: int, name: str, value: bytes | None, writer: str = "0") -> InRecord:
    return InRecord("g.model", 0, offset, f"{writer}/{name}".encode(), value, ((FORMAT_HEADER, MODEL_PART_FORMAT),))


def test_restore_takes_the_newest_of_each_part_honours_tombstones_and_reports_bad_parts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seg = Segmenter(CFG, RULES)
    run(seg, EVENTS[:300])
    old = seg.model_parts()
    run(seg, EVENTS[300:600])
    new = seg.model_parts()
    lens = f"lens:{seg.lenses[0].name}"
    records = [_part(i, n, zlib.compress(v)) for i, (n, v) in enumerate(sorted(old.items()))]
    records += [_part(10, "core", zlib.compress(new["core"])), _part(11, lens, zlib.compress(new[lens]))]
    records += [_part(12, "lens:gone", b"x"), _part(13, "lens:gone", None)]  # deleted before the restore
    target = Segmenter(CFG, RULES)
    tracker = ModelTracker("0")
    chosen = restore_model(target, records, tracker, BadRecords())
    assert chosen is not None and chosen.offset == 11
    expected = Segmenter(CFG, RULES)
    expected.load_model_parts({**old, "core": new["core"], lens: new[lens]})
    assert target.model_state() == expected.model_state()
    assert tracker.records({**old, "core": new["core"], lens: new[lens]}, "g.model") == []  # held: not rewritten
    bad = [*records[:11], _part(20, lens, b"not zlib")]
    with caplog.at_level(logging.ERROR):
        assert restore_model(Segmenter(CFG, RULES), bad, ModelTracker("0"), BadRecords()) is None
    assert any("g.model[0]@20" in r.getMessage() and "zlib" in r.getMessage() for r in caplog.records)


def test_a_part_that_inflates_beyond_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "MAX_MODEL_PART_BYTES", 1000)
    assert inflate_part(zlib.compress(b"\0" * 1000)) == b"\0" * 1000
    with pytest.raises(StateError, match="inflates beyond 1000"):
        inflate_part(zlib.compress(b"\0" * 1001))
    with pytest.raises(StateError, match="truncated"):
        inflate_part(zlib.compress(b"abc" * 50)[:-4])


def test_restore_never_mixes_the_parts_of_two_writers() -> None:
    """The newest writer's model wins whole, even where another writer wrote a part later than some of its own."""
    a, b = Segmenter(CFG, RULES), Segmenter(CFG, RULES)
    run(a, EVENTS[:300])
    run(b, EVENTS[300:500])
    lens = f"lens:{a.lenses[0].name}"
    a_first = a.model_parts()
    records = [_part(i, n, zlib.compress(v), "a") for i, (n, v) in enumerate(sorted(a_first.items()))]
    records += [_part(10 + i, n, zlib.compress(v), "b") for i, (n, v) in enumerate(sorted(b.model_parts().items()))]
    run(a, EVENTS[500:600])
    a_now = {**a_first, "core": a.model_parts()["core"], lens: a.model_parts()[lens]}
    records += [_part(20, "core", zlib.compress(a_now["core"]), "a"), _part(21, lens, zlib.compress(a_now[lens]), "a")]
    target = Segmenter(CFG, RULES)
    tracker = ModelTracker("b")
    chosen = restore_model(target, records, tracker, BadRecords())
    assert chosen is not None and chosen.key == f"a/{lens}".encode()
    expected = Segmenter(CFG, RULES)
    expected.load_model_parts(a_now)
    assert target.model_state() == expected.model_state()
    assert len(tracker.records(a_now, "g.model")) == len(a_now)  # another writer's model: all written again
