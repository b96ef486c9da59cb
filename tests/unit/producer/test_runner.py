"""The emit loop: limits, interrupts, pacing and fault draining."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from producer.__main__ import main
from producer.faults import FaultConfig, FaultInjector
from producer.runner import Outgoing, Pacing, RunOptions, run
from producer.sinks import MemorySink


def _source(n: int, interrupt_at: int | None = None) -> Iterator[Outgoing]:
    for i in range(n):
        if i == interrupt_at:
            raise KeyboardInterrupt
        value = orjson.dumps({"event_id": f"e{i}", "customer_id": "c", "type": "search", "ts": "x"})
        yield Outgoing(float(i), b"c", value, "search")


def test_counts_and_max_events() -> None:
    sink = MemorySink()
    stats = run(_source(50), sink, RunOptions(max_events=20))
    assert stats.messages == 20 == len(sink.messages)
    assert stats.by_type == {"search": 20}
    assert stats.stopped_early and not stats.interrupted
    assert (stats.first_ts, stats.last_ts) == (0.0, 19.0)
    assert sink.flushes == 1


def test_interrupt_still_drains_held_messages_and_flushes() -> None:
    sink = MemorySink()
    injector = FaultInjector(FaultConfig(late_rate=0.5, late_min_s=1000, late_max_s=2000, seed=1))
    stats = run(_source(100, interrupt_at=40), sink, RunOptions(faults=injector))
    assert stats.interrupted and stats.stopped_early
    assert stats.events == 40
    assert len(sink.messages) == 40  # the late ones held back were sent at the end
    assert stats.faults["late"] == injector.counts["late"] > 5
    assert sink.flushes == 1


def test_pacing_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        Pacing(rate=0)
    with pytest.raises(ValueError, match="speed"):
        Pacing(speed=-1)


def test_synth_speed_follows_simulated_time(tmp_path: Path) -> None:
    out, summary = tmp_path / "e.jsonl", tmp_path / "s.json"
    args = ["synth", "--customers", "3000", "--days", "0.02", "--speed", "6000", "-q"]
    started = time.perf_counter()
    code = main([*args, "--summary-json", str(summary), "--to", "file", str(out)])
    elapsed = time.perf_counter() - started
    assert code == 0
    s = orjson.loads(summary.read_bytes())
    span = (datetime.fromisoformat(s["last_event"]) - datetime.fromisoformat(s["first_event"])).total_seconds()
    assert s["messages"] > 50
    assert span > 900  # the test is meaningful: at least 0.15 s of pacing
    assert elapsed >= span / 6000 * 0.95
