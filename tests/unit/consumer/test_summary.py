"""The periodic summary line: what the service did since the previous line, on an injected clock."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from consumer.metrics import Metrics
from consumer.summary import Summary


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Core:
    def __init__(self) -> None:
        self.changes: dict[str, int] = {}
        self.calls = 0

    def stats(self) -> object:
        self.calls += 1
        return SimpleNamespace(changes=dict(self.changes))


def test_one_line_every_interval_with_rates_lag_dlq_moves_and_triggers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="consumer.summary")
    metrics, clock, core = Metrics(), _Clock(), _Core()
    summary = Summary(metrics, interval_s=30.0, clock=clock)
    metrics.events_in.inc(100)  # before the first tick: not part of any line
    assert summary.tick(core) is None
    metrics.events_in.inc(600)
    metrics.rejected.labels("invalid_json").inc(2)
    metrics.rejected.labels("late_event").inc()
    metrics.outputs.labels("campaign_trigger").inc(5)
    metrics.outputs.labels("segment_change").inc(40)
    metrics.consumer_lag.labels("0").set(7)
    metrics.consumer_lag.labels("1").set(3)
    core.changes = {"event": 30, "model": 10}
    clock.now += 29.9
    assert summary.tick(core) is None
    clock.now += 0.1
    line = summary.tick(core)
    assert line == (
        "summary: 20 events/s over the last 30 s, lag 10 records, DLQ {invalid_json: 2, late_event: 1}, "
        "moves {event: 30, model: 10}, triggers 5"
    )
    assert [r.getMessage() for r in caplog.records] == [line]
    assert core.calls == 2  # stats() only at the first tick and when a line is due

    metrics.events_in.inc(90)
    core.changes = {"event": 33, "model": 10}
    clock.now += 45.0
    assert summary.tick(core) == (
        "summary: 2 events/s over the last 45 s, lag 10 records, DLQ {}, moves {event: 3}, triggers 0"
    )


def test_a_rebuilt_core_whose_counters_restarted_counts_its_moves_in_full() -> None:
    metrics, clock, core = Metrics(), _Clock(), _Core()
    core.changes = {"event": 500}
    summary = Summary(metrics, interval_s=10.0, clock=clock)
    summary.tick(core)
    core.changes = {"event": 4, "inactivity": 1}  # a fresh core after a failure
    clock.now += 10.0
    line = summary.tick(core)
    assert line is not None
    assert "moves {event: 4, inactivity: 1}" in line


def test_no_core_keeps_the_moves_baseline() -> None:
    metrics, clock, core = Metrics(), _Clock(), _Core()
    core.changes = {"event": 8}
    summary = Summary(metrics, interval_s=10.0, clock=clock)
    summary.tick(core)
    clock.now += 10.0
    assert "moves {}" in (summary.tick(None) or "")
    core.changes = {"event": 9}
    clock.now += 10.0
    assert "moves {event: 1}" in (summary.tick(core) or "")


def test_records_keyed_other_than_by_customer_id_show_only_when_some_arrived() -> None:
    metrics, clock, core = Metrics(), _Clock(), _Core()
    summary = Summary(metrics, interval_s=10.0, clock=clock)
    summary.tick(core)
    metrics.key_mismatches.inc(4)
    clock.now += 10.0
    assert (summary.tick(core) or "").endswith(", triggers 0, records keyed other than by customer_id 4")
    clock.now += 10.0
    assert (summary.tick(core) or "").endswith(", triggers 0")  # none since the last line
