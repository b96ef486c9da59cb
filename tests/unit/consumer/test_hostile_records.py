"""No record stops a partition: every input record ends as outputs or a dead letter, the partition goes on."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import consumer.routing as routing_module
import consumer.runs as runs_module
from consumer.dlq import MAX_CAUSE_CHARS
from consumer.sink import TP
from segmenter.events import CustomerEvent
from segmenter.outputs import OutputMessage
from tests.unit.consumer.conftest import FakeCore, Harness, event, make_harness

CORPUS = Path(__file__).parents[1] / "data" / "hostile_events"


def errors(h: Harness) -> list[str]:
    return [dict(r.headers)["error"].decode() for r in h.transport.records("dlq")]


def reasons(h: Harness) -> list[str]:
    return [dict(r.headers)["reason"].decode() for r in h.transport.records("dlq")]


def caused(h: Harness) -> list[str]:
    return [o["cause_event_id"] for o in h.outputs()]


def raise_on(event_id: str, exc: BaseException) -> Callable[[FakeCore], None]:
    """A core setup making ``process`` raise ``exc`` on one event, every time."""

    def setup(core: FakeCore) -> None:
        original = core.process

        def process(ev: CustomerEvent) -> list[OutputMessage]:
            if ev.event_id == event_id:
                core.counts[ev.customer_id] = 999  # a half-applied mutation the rebuild must undo
                raise exc
            return original(ev)

        core.process = process  # type: ignore[method-assign,assignment]

    return setup


def test_the_overflowing_timestamp_is_dead_lettered_and_the_partition_goes_on(harness: Harness) -> None:
    t = harness.transport
    t.produce_input(b"c1", event(0))
    t.produce_input(b"c1", (CORPUS / "ts_overflow.json").read_bytes())
    t.produce_input(b"c1", event(2))
    harness.run()
    assert errors(harness) == ["schema"]
    assert "ts:" in reasons(harness)[0] and "2079" in reasons(harness)[0]
    assert caused(harness) == ["e0", "e2"]
    assert t.committed[TP("in", 0)] == 3


def test_every_reproduction_is_dead_lettered_with_its_reason(harness: Harness) -> None:
    names = sorted(p.name for p in CORPUS.iterdir())
    for i, name in enumerate(names):
        harness.transport.produce_input(b"c1", event(2 * i))
        harness.transport.produce_input(b"c1", (CORPUS / name).read_bytes())
    harness.run()
    assert len(errors(harness)) == len(names)
    assert set(errors(harness)) <= {"schema", "not_json", "not_utf8"}
    assert caused(harness) == [f"e{2 * i}" for i in range(len(names))]
    assert harness.transport.committed[TP("in", 0)] == 2 * len(names)


@pytest.mark.parametrize(
    "exc",
    [OverflowError("date value out of range"), RecursionError("maximum recursion depth exceeded"),
     ValueError("x" * 5000), KeyError("lens"), ZeroDivisionError("float division by zero")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_a_core_raising_on_one_event_dead_letters_it_processing_failed(harness: Harness, exc: Exception) -> None:
    harness.core_setup = raise_on("e1", exc)
    produce_events(harness, 5)
    harness.run()
    assert errors(harness) == ["processing_failed"]
    reason = reasons(harness)[0]
    assert type(exc).__name__ in reason and "3 times" in reason
    assert len(reason) < MAX_CAUSE_CHARS + 100
    assert caused(harness) == ["e0", "e2", "e3", "e4"]
    assert [o["to_segment"]["id"] for o in harness.outputs()] == ["x-1", "x-2", "x-3", "x-4"]
    assert harness.transport.committed[TP("in", 0)] == 5


def fail_in(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, when: Callable[[Any], bool], exc: Exception
) -> None:
    """Make the function ``name`` of a service ``module`` raise ``exc`` on the first arguments ``when`` picks."""
    real = getattr(module, name)

    def wrapper(arg: Any, *rest: Any) -> Any:
        if when(arg):
            raise exc
        return real(arg, *rest)

    monkeypatch.setattr(module, name, wrapper)


def produce_events(h: Harness, n: int) -> None:
    for i in range(n):
        h.transport.produce_input(b"c1", event(i))


def test_a_failure_turning_one_event_into_records_is_isolated_too(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    exc = TypeError("Type is not JSON serializable: Decimal")
    fail_in(
        monkeypatch, routing_module, "encode", lambda message: getattr(message, "cause_event_id", None) == "e2", exc
    )
    produce_events(harness, 5)
    harness.run()
    assert errors(harness) == ["processing_failed"]
    assert "TypeError: Type is not JSON serializable" in reasons(harness)[0]
    assert caused(harness) == ["e0", "e1", "e3", "e4"]
    assert harness.transport.committed[TP("in", 0)] == 5


def test_a_decoder_bug_dead_letters_the_record_at_once(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    exc = RecursionError("maximum recursion depth exceeded while decoding")
    fail_in(monkeypatch, runs_module, "parse_event", lambda raw: b'"e1"' in raw, exc)
    produce_events(harness, 4)
    harness.run()
    assert errors(harness) == ["processing_failed"]
    assert reasons(harness)[0] == "decoding failed: RecursionError: maximum recursion depth exceeded while decoding"
    assert caused(harness) == ["e0", "e2", "e3"]
    assert harness.transport.aborts == 0  # nothing to roll back: the core never saw it


def test_a_tombstone_whose_erasure_fails_is_dead_lettered(harness: Harness) -> None:
    def setup(core: FakeCore) -> None:
        original = core.erase

        def erase(customer_id: str, at: float | None = None) -> list[OutputMessage]:
            if customer_id == "c9":
                raise OverflowError("erasure overflow")
            return original(customer_id, at)

        core.erase = erase  # type: ignore[method-assign]

    harness.core_setup = setup
    harness.transport.produce_input(b"c1", event(0))
    harness.transport.produce_input(b"c9", None)
    harness.transport.produce_input(b"c1", event(2))
    harness.run()
    assert errors(harness) == ["processing_failed"]
    assert "OverflowError: erasure overflow" in reasons(harness)[0]
    assert caused(harness) == ["e0", "e2"]


VALID = [event(i) for i in range(3)]
SEEDS = [*VALID, *(p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.stat().st_size < 1024)]


def mutate(rnd: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randint(0, len(data))
        if rnd.random() < 0.5 and data:
            data[min(at, len(data) - 1)] = rnd.randrange(256)
        else:
            del data[at : at + rnd.randint(1, 6)]
    return bytes(data)


records = st.one_of(
    st.sampled_from(SEEDS),
    st.binary(max_size=80),
    st.tuples(st.randoms(use_true_random=False), st.sampled_from(SEEDS)).map(lambda rs: mutate(*rs)),
    st.none(),
)


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.lists(st.tuples(st.sampled_from([b"c1", b"c2", b""]), records), min_size=1, max_size=12))
def test_fuzz_every_record_becomes_outputs_or_one_dead_letter(batch: list[tuple[bytes, Any]]) -> None:
    h = make_harness()
    for i, (key, value) in enumerate(batch):
        h.transport.produce_input(key, value)
        h.transport.produce_input(b"c1", json.dumps({"event_id": f"ok{i}", "customer_id": "c1", "type": "page_view",
                                                      "ts": f"2079-12-31T22:{i:02d}:00Z"}).encode())  # fmt: skip
    h.run()
    dead = [int(dict(r.headers)["source_offset"]) for r in h.transport.records("dlq")]
    assert len(dead) == len(set(dead))
    assert set(errors(h)) <= {"not_utf8", "not_json", "schema", "too_large", "tombstone_key", "late"}
    assert [c for c in caused(h) if c and c.startswith("ok")] == [f"ok{i}" for i in range(len(batch))]
    assert h.transport.committed[TP("in", 0)] == 2 * len(batch)


def test_every_record_taken_into_a_batch_is_counted_once(harness: Harness) -> None:
    produce_events(harness, 7)
    harness.transport.produce_input(b"c1", b"not json")  # dead-lettered: still taken, and counted
    svc = harness.run()
    assert svc.metrics.registry.get_sample_value("segmenter_events_in_total") == 8
    assert harness.transport.committed[TP("in", 0)] == 8
