"""Fault injection: counts, kinds, and what the segmenter's parser makes of them."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from producer.faults import FAULT_KINDS, MALFORMED_KINDS, FaultConfig, FaultInjector, Message
from producer.simulator import SimConfig, Simulator, encoded
from segmenter.errors import EventError
from segmenter.events import parse_event

START = datetime(2026, 2, 1, tzinfo=UTC)


def _inject(
    config: FaultConfig, n_customers: int = 100, days: float = 20
) -> tuple[list[Message], list[bytes], FaultInjector, list[tuple[str, dict[str, Any]]]]:
    source = list(encoded(Simulator(SimConfig(customers=n_customers, days=days, seed=4, start=START))))
    log: list[tuple[str, dict[str, Any]]] = []
    injector = FaultInjector(config, lambda kind, details: log.append((kind, details)))
    out: list[Message] = []
    for o in source:
        injector.process(o.ts, o.key, o.value, out)
    injector.drain(out)
    return out, [o.value for o in source], injector, log


def _near(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) < 4 * math.sqrt(n * p * (1 - p)) + 2


def test_no_faults_passes_everything_through_unchanged() -> None:
    out, source, injector, log = _inject(FaultConfig())
    assert [v for _, v in out] == source
    assert not injector.counts and not log


def test_fault_counts_follow_the_rates_and_every_message_is_accounted_for() -> None:
    config = FaultConfig(malformed_rate=0.02, duplicate_rate=0.03, late_rate=0.04, seed=9)
    out, source, injector, log = _inject(config)
    n = len(source)
    counts = injector.counts
    malformed = sum(counts[k] for k in MALFORMED_KINDS)
    assert _near(counts["duplicate"], n, 0.03)
    assert _near(counts["late"], n, 0.04)
    assert _near(malformed, n, 0.02)
    assert all(counts[k] > 0 for k in FAULT_KINDS if k != "bad_clock")  # bad_clock: one event, not a rate
    assert len(out) == n + counts["duplicate"] + malformed
    assert injector.pending == 0
    # the log names every fault, and it is the same tally
    assert Counter(kind for kind, _ in log) == counts
    # every valid event arrives; duplicated ones exactly twice, byte for byte
    sent = Counter(v for _, v in out)
    dup_ids = {d["event_id"] for k, d in log if k == "duplicate"}
    for value in source:
        eid = orjson.loads(value)["event_id"]
        assert sent[value] == (2 if eid in dup_ids else 1)


def test_late_events_arrive_after_later_events() -> None:
    config = FaultConfig(late_rate=0.05, late_min_s=1800, late_max_s=3600, seed=1)
    out, _, injector, log = _inject(config)
    late_ids = {d["event_id"] for k, d in log if k == "late"}
    assert len(late_ids) == injector.counts["late"] > 10
    times = [datetime.fromisoformat(orjson.loads(v)["ts"]).timestamp() for _, v in out]
    ids = [orjson.loads(v)["event_id"] for _, v in out]
    on_time = [(i, ts) for i, (eid, ts) in enumerate(zip(ids, times, strict=True)) if eid not in late_ids]
    assert [ts for _, ts in on_time] == sorted(ts for _, ts in on_time)  # the on-time stream stays ordered
    overtaken = 0
    for i, (eid, ts) in enumerate(zip(ids, times, strict=True)):
        if eid not in late_ids:
            continue
        nxt = next((t for j, t in on_time if j > i), None)
        if nxt is None:
            continue  # drained at the end
        # released only once the stream reached ts + late_min_s, after events later than itself
        assert nxt >= ts + 1800
        if max((t for j, t in on_time if j < i), default=-math.inf) > ts:
            overtaken += 1
    assert overtaken >= len(late_ids) - 40


@pytest.mark.parametrize(
    ("kind", "reason", "field"),
    [
        ("malformed.bad_json", "not_json", None),
        ("malformed.missing_field", "schema", None),
        ("malformed.negative_amount", "schema", "amount"),
        ("malformed.naive_timestamp", "schema", "ts"),
    ],
)
def test_each_malformed_kind_is_rejected_by_the_segmenter(kind: str, reason: str, field: str | None) -> None:
    injector = FaultInjector(FaultConfig(malformed_rate=1.0, seed=3))
    valid = orjson.dumps(
        {"event_id": "e1", "customer_id": "c1", "type": "page_view", "ts": "2026-01-01T00:00:00.000+00:00"}
    )
    seen = 0
    for _ in range(200):
        out: list[Message] = []
        before = injector.counts[kind]
        injector.process(0.0, b"c1", valid, out)
        assert out[0] == (b"c1", valid)
        if injector.counts[kind] == before:
            continue
        seen += 1
        with pytest.raises(EventError) as info:
            parse_event(out[1][1])
        assert info.value.reason == reason
        if field is not None:
            assert info.value.field == field
        if kind == "malformed.missing_field":
            assert info.value.detail.endswith("field required")
    assert seen > 20


@pytest.mark.parametrize(
    "kwargs",
    [{"late_rate": 1.5}, {"malformed_rate": -0.1}, {"late_min_s": 10, "late_max_s": 5}, {"duplicate_max_lag": 0}],
)
def test_fault_config_rejects_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultConfig(**kwargs)
