"""The event-time edge on the in-memory transport: open sources on assignment, idleness, ``max_future``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from consumer.errors import SettingsError
from consumer.service import Service
from consumer.settings import load_settings
from consumer.sink import TP, InRecord, RebalanceHandler
from segmenter.events import CustomerEvent
from segmenter.pipeline import BatchResult, OutputSink
from tests.unit.consumer.conftest import DrainTransport, FakeCore, Harness, event, make_harness, make_service

Call = tuple[Any, ...]


@dataclass
class ClockCore(FakeCore):
    """The fake core with the event-clock API; every call goes to ``calls`` (shared by the cores of a run)."""

    calls: list[Call] = field(default_factory=list)

    def open_source(self, source: int) -> None:
        self.calls.append(("open", source))

    def set_idle(self, source: int, idle: bool) -> None:
        self.calls.append(("idle", source, idle))

    def take_dirty_clocks(self) -> dict[int, float]:
        return {}

    def load_clock(self, source: int, epoch: float) -> None:
        self.calls.append(("load_clock", source))

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        self.calls.append(("drop", tuple(s for s in range(4) if not keep(s))))

    def load_model_state(self, data: bytes) -> None:
        self.calls.append(("load_model",))
        super().load_model_state(data)

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None], *,
                      sink: OutputSink | None = None) -> BatchResult:  # fmt: skip
        self.calls.append(("batch", tuple(sources)))
        return super().process_batch(events, sources, sink=sink)


def run(h: Harness, calls: list[Call]) -> Service[Any]:
    """Run the service over ``h``'s transport with :class:`ClockCore` cores until the input is drained."""

    def make_transport(handler: RebalanceHandler) -> DrainTransport:
        h.transport.handler = handler
        return h.transport

    def make_core(rules: Any) -> ClockCore:
        core = ClockCore(rules=rules, calls=calls)
        h.cores.append(core)
        return core

    svc = make_service(h.settings, make_transport, make_core)
    h.transport.service = svc
    svc.run()
    return svc


def _clock_calls(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c[0] != "drop"]


def test_every_assigned_partition_is_opened_after_its_restore_and_idle_once_read_to_its_end() -> None:
    h = make_harness(3)
    h.transport.produce_input(b"a", event(0, "a"), partition=0)
    h.transport.produce_input(b"a", event(1, "a"), partition=0)
    calls: list[Call] = []
    run(h, calls)
    assert _clock_calls(calls) == [
        ("open", 0), ("open", 1), ("open", 2),  # before any event: an assigned partition holds the watermark
        ("batch", (0, 0)),
        ("idle", 0, True), ("idle", 1, True), ("idle", 2, True),  # read to their end after the first poll
    ]  # fmt: skip


def test_a_restart_restores_the_clock_before_opening_the_partition() -> None:
    h = make_harness(1)
    h.transport.produce_input(b"a", event(0, "a"))
    run(h, [])
    h.transport.produce_input(b"a", event(1, "a"))
    again: list[Call] = []
    run(h, again)
    assert _clock_calls(again)[:3] == [("load_model",), ("open", 0), ("batch", (0,))]


class LateArrivals(DrainTransport):
    """Appends records to the input at given polls (``arrivals``: poll number -> [(key, value, partition)])."""

    arrivals: dict[int, list[tuple[bytes, bytes, int]]] = {}  # noqa: RUF012 - set per instance in the test
    polls: int = 0

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        self.polls += 1
        for key, value, partition in self.arrivals.get(self.polls, []):
            self.produce_input(key, value, partition=partition)
        return super().poll(timeout_s, max_records)


def test_an_idle_partition_with_records_again_is_active_before_they_are_processed() -> None:
    h = make_harness(2)
    transport = LateArrivals("in", partitions=2)
    transport.arrivals = {3: [(b"b", event(5, "b"), 1)]}
    h = Harness(h.settings, transport, [])
    transport.produce_input(b"a", event(0, "a"), partition=0)
    calls: list[Call] = []
    run(h, calls)
    clock = _clock_calls(calls)
    assert clock[:5] == [("open", 0), ("open", 1), ("batch", (0,)), ("idle", 0, True), ("idle", 1, True)]
    assert clock[5:] == [("idle", 1, False), ("batch", (1,)), ("idle", 1, True)]


def test_revoked_partitions_leave_the_clock_and_are_not_marked_any_more() -> None:
    h = make_harness(2)
    transport = h.transport
    transport.produce_input(b"a", event(0, "a"), partition=0)

    class Revoking(DrainTransport):
        polls = 0

        def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
            self.polls += 1
            if self.polls == 3:
                self.assign({TP("in", 0)})  # partition 1 goes to another instance
                self.produce_input(b"a", event(1, "a"), partition=0)
            return super().poll(timeout_s, max_records)

    revoking = Revoking("in", partitions=2)
    revoking.topics = transport.topics
    calls: list[Call] = []
    run(Harness(h.settings, revoking, []), calls)
    drop = calls.index(("drop", (1, 2, 3)))
    after = calls[drop + 1 :]
    assert ("batch", (0,)) in after
    assert all(c[1] == 0 for c in after if c[0] in ("idle", "open"))
    assert ("open", 0) in after  # re-assigned: restored and opened again


def _stamped(i: int, ts: str, record: str | None) -> tuple[bytes, int]:
    value = json.dumps({"event_id": f"e{i}", "customer_id": "c1", "type": "page_view", "ts": ts}).encode()
    return value, 0 if record is None else int(datetime.fromisoformat(record).timestamp() * 1000)


def test_an_event_dated_ahead_of_its_record_timestamp_is_dead_lettered_as_future() -> None:
    h = make_harness(1)
    rows = [
        _stamped(0, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        _stamped(1, "2027-01-01T00:01:00Z", "2026-01-01T00:01:00Z"),  # a year ahead: a wrong clock
        _stamped(2, "2026-01-01T00:59:00Z", "2026-01-01T00:02:00Z"),  # 57 minutes ahead: within max_future
        _stamped(3, "2026-01-01T00:04:00Z", "2026-01-01T00:04:00Z"),
        _stamped(4, "2030-01-01T00:00:00Z", None),  # no record timestamp: not checked
    ]
    for value, ts in rows:
        h.transport.produce_input(b"c1", value, timestamp_ms=ts)
    svc = run(h, [])
    letters = h.transport.records("dlq")
    assert [dict(r.headers)["error"] for r in letters] == [b"future"]
    headers = dict(letters[0].headers)
    assert letters[0].value == rows[1][0] and headers["source_offset"] == b"1"
    reason = headers["reason"].decode()
    assert "2027-01-01T00:01:00+00:00" in reason and "2026-01-01T00:01:00.000+00:00" in reason
    assert "365d" in reason and "max_future (1h)" in reason
    assert [o["cause_event_id"] for o in h.outputs()] == ["e0", "e2", "e3", "e4"]  # the partition goes on
    assert h.transport.committed[TP("in", 0)] == 5
    assert svc.metrics.registry.get_sample_value("segmenter_events_rejected_total", {"reason": "future"}) == 1


def test_max_future_is_a_setting() -> None:
    h = make_harness(1, "--max-future", "30m")
    value, ts = _stamped(0, "2026-01-01T00:59:00Z", "2026-01-01T00:02:00Z")
    h.transport.produce_input(b"c1", value, timestamp_ms=ts)
    run(h, [])
    assert [dict(r.headers)["error"] for r in h.transport.records("dlq")] == [b"future"]


@pytest.mark.parametrize(("text", "seconds"), [("1h", 3600.0), ("30m", 1800.0), ("90", 90.0), ("1d12h", 129600.0)])
def test_max_future_accepts_durations(text: str, seconds: float) -> None:
    assert load_settings(["--max-future", text]).max_future == seconds


def test_max_future_default_env_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings([]).max_future == 3600.0
    monkeypatch.setenv("SEGMENTER_MAX_FUTURE", "2h")
    assert load_settings([]).max_future == 7200.0
    for bad in ("soon", "0", "-1h"):
        with pytest.raises(SettingsError, match=r"max_future .*SEGMENTER_MAX_FUTURE"):
            load_settings([f"--max-future={bad}"])
