"""The processing loop on an in-memory transport with a fake core."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import consumer.checkpoint as checkpoint_module
from consumer.errors import BrokerUnavailableError, FencedError, TransactionError
from consumer.reconnect import Backoff
from consumer.rules_watcher import RulesWatcher
from consumer.service import Service
from consumer.sink import TP, InRecord
from consumer.state import inflate_part
from segmenter.errors import ConfigError
from segmenter.triggers.rules import RuleSet
from tests.unit.consumer.conftest import FIXED_NOW, FakeCore, Harness, event, make_harness


def test_outputs_keyed_with_kind_header_and_stamped(harness: Harness) -> None:
    for i in range(5):
        harness.transport.produce_input(b"c1" if i % 2 else b"c2", event(i, "c1" if i % 2 else "c2"))
    harness.run()
    out = harness.transport.records("out")
    assert [json.loads(r.value or b"")["cause_event_id"] for r in out] == [f"e{i}" for i in range(5)]
    assert all(dict(r.headers)["kind"] == b"segment_change" for r in out)
    assert [r.key for r in out] == [b"c2", b"c1", b"c2", b"c1", b"c2"]
    assert {json.loads(r.value or b"")["emitted_at"] for r in out} == {FIXED_NOW.isoformat()}
    assert harness.transport.committed[TP("in", 0)] == 5
    assert harness.transport.commits == 2  # batch size 3


def test_state_goes_to_the_input_partition_and_model_is_written_when_changed() -> None:
    h = make_harness(2)
    h.transport.produce_input(b"a", event(0, "a"), partition=0)
    h.transport.produce_input(b"b", event(1, "b"), partition=1)
    h.transport.produce_input(b"b", event(2, "b"), partition=1)
    h.run()
    state = h.transport.records("g.state")
    assert {(r.key, r.partition) for r in state} == {(b"a", 0), (b"b", 1)}
    assert h.transport.read_to_end("g.state", [1])[-1].value == b"2"
    models = h.transport.records("g.model")
    assert models and all(r.key == b"0/core" for r in models)
    assert json.loads(inflate_part(models[-1].value or b""))["events"] == 3


def test_bad_records_are_dead_lettered_with_headers(harness: Harness) -> None:
    t = harness.transport
    t.produce_input(b"c1", event(100, minutes=600), headers=(("trace", b"x"),))
    t.produce_input(b"c1", b"\xff\xfe")
    t.produce_input(b"c1", b"[1, 2]")
    t.produce_input(
        b"c1",
        json.dumps({"event_id": "p", "customer_id": "c1", "type": "purchase", "ts": "2026-01-01T00:00:00Z"}).encode(),
    )
    t.produce_input(b"c1", b"{" + b" " * 70_000 + b"}")
    t.produce_input(None, None)
    t.produce_input(b"c1", event(7, minutes=1))  # 10 hours before the first: late
    svc = harness.run()
    letters = t.records("dlq")
    assert [dict(r.headers)["error"] for r in letters] == [
        b"not_utf8",
        b"not_json",
        b"schema",
        b"too_large",
        b"tombstone_key",
        b"late",
    ]
    first = dict(letters[0].headers)
    assert letters[0].value == b"\xff\xfe" and letters[0].key == b"c1"
    assert first["source_topic"] == b"in" and first["source_partition"] == b"0" and first["source_offset"] == b"1"
    assert first["reason"]
    assert svc.metrics.registry.get_sample_value("segmenter_events_rejected_total", {"reason": "late"}) == 1
    assert len(t.records("out")) == 1
    assert t.committed[TP("in", 0)] == 7


def test_tombstone_erases_and_writes_a_state_tombstone(harness: Harness) -> None:
    harness.transport.produce_input(b"c1", event(0))
    harness.transport.produce_input(b"c1", None)
    harness.run()
    out = harness.outputs()
    assert out[-1]["cause"] == "erasure" and out[-1]["to_segment"] is None
    state = harness.transport.records("g.state")
    assert [(r.key, r.value) for r in state] == [(b"c1", None)]  # same batch: only the tombstone


def test_poison_record_is_isolated_and_dead_lettered_after_retries(harness: Harness) -> None:
    shared = {"e1": -1}
    harness.core_setup = lambda core: setattr(core, "fail_on", shared)
    for i in range(4):
        harness.transport.produce_input(b"c1", event(i))
    svc = harness.run()
    t = harness.transport
    assert [dict(r.headers)["error"] for r in t.records("dlq")] == [b"processing_failed"]
    assert dict(t.records("dlq")[0].headers)["source_offset"] == b"1"
    # e0, e2, e3 each produced exactly once; the half-applied mutation was rolled back
    assert [o["cause_event_id"] for o in harness.outputs()] == ["e0", "e2", "e3"]
    assert [o["to_segment"]["id"] for o in harness.outputs()] == ["x-1", "x-2", "x-3"]
    # the run of four fails once as a whole, then e1 alone fails max_batch_retries (3) times
    assert t.aborts == 4
    assert svc.metrics.registry.get_sample_value("segmenter_batch_failures_total", {"cause": "core"}) == 4


def test_transient_core_failure_is_replayed_without_duplicates(harness: Harness) -> None:
    shared = {"e2": 1}
    harness.core_setup = lambda core: setattr(core, "fail_on", shared)
    for i in range(5):
        harness.transport.produce_input(b"c1", event(i))
    harness.run()
    assert [o["cause_event_id"] for o in harness.outputs()] == [f"e{i}" for i in range(5)]
    assert harness.transport.records("dlq") == []
    assert harness.transport.aborts == 1


def test_failed_commit_restarts_the_session_and_restores_state(harness: Harness) -> None:
    t = harness.transport
    for i in range(6):
        t.produce_input(b"c1", event(i))
    t.fail_commits, t.commit_error = 1, TransactionError("commit transaction failed: injected")
    t.commits = 0
    harness.run()
    # first batch failed and was replayed by a new session: every output once, counts continue
    assert [o["cause_event_id"] for o in harness.outputs()] == [f"e{i}" for i in range(6)]
    assert [o["to_segment"]["id"] for o in harness.outputs()] == [f"x-{i + 1}" for i in range(6)]
    assert len(harness.cores) == 2


def test_restart_restores_customers_and_model(harness: Harness) -> None:
    for i in range(3):
        harness.transport.produce_input(b"c1", event(i))
    harness.run()
    harness.transport.produce_input(b"c1", event(3))
    harness.run()
    core = harness.cores[-1]
    assert core.events == 4  # the model snapshot was restored
    assert core.counts == {}  # released at shutdown (revocation)
    assert harness.outputs()[-1]["to_segment"]["id"] == "x-4"  # the customer was restored


def test_revocation_commits_the_open_batch_and_drops_customers() -> None:
    h = make_harness(2, "--batch-size", "100", "--commit-interval-ms", "60000")
    t = h.transport
    t.produce_input(b"a", event(0, "a"), partition=0)
    t.produce_input(b"b", event(1, "b"), partition=1)
    svc = h.service()
    t.handler = svc
    svc._core = FakeCore()
    svc._transport = t
    records = t.poll(0, 10)  # the first poll assigns both partitions (on_assigned)
    svc._restore_pending()
    svc._process_records(records)
    assert t.commits == 0 and svc._checkpoint is not None
    t.assign({TP("in", 0)})  # partition 1 moves away
    assert t.commits == 1 and t.committed == {TP("in", 0): 1, TP("in", 1): 1}
    svc._restore_pending()
    assert svc._core.counts == {"a": 1}
    assert svc._ownership.assignment.owned == {TP("in", 0)}


def test_records_of_unowned_partitions_are_skipped(harness: Harness) -> None:
    svc = harness.service()
    svc._core = FakeCore()
    svc._transport = harness.transport
    svc._process_records([InRecord("in", 5, 0, b"c1", event(0))])
    assert svc._checkpoint is None and harness.transport.records("out") == []


def _zone_rules(p: Path) -> RuleSet:
    """A rules file holding a time zone name ("UTC", "Europe/Paris"); anything else is invalid."""
    text = p.read_text()
    if "/" not in text and text != "UTC":
        raise ConfigError(f"{p}: rules[0].campaign: field required")
    return RuleSet(timezone=text)


def test_rules_hot_reload_keeps_old_rules_when_invalid(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("UTC")
    watcher = RulesWatcher(path, _zone_rules, interval_s=0.0)
    assert watcher.load_initial() == RuleSet(timezone="UTC")
    assert watcher.check(1.0) == "unchanged"
    path.write_text("broken")
    os.utime(path, (1000, 1000))
    with caplog.at_level(logging.ERROR):
        assert watcher.check(2.0) == "invalid"
    assert watcher.rules == RuleSet(timezone="UTC") and "keeping the previous rules" in caplog.text
    path.write_text("Europe/Paris")
    os.utime(path, (2000, 2000))
    assert watcher.check(3.0) == "loaded" and watcher.rules == RuleSet(timezone="Europe/Paris")


def test_service_applies_reloaded_rules(harness: Harness, tmp_path: Path) -> None:
    path = tmp_path / "rules.txt"
    path.write_text("UTC")
    watcher = RulesWatcher(path, _zone_rules, interval_s=0.0)
    watcher.load_initial()
    harness.transport.produce_input(b"c1", event(0))
    svc = harness.service(rules=watcher)
    svc._core = harness.cores[-1] if harness.cores else FakeCore(rules=watcher.rules)
    path.write_text("Europe/Paris")
    os.utime(path, (5000, 5000))
    svc._check_rules()
    assert svc._core.rules == RuleSet(timezone="Europe/Paris")
    assert svc.metrics.registry.get_sample_value("segmenter_rules_reloads_total", {"result": "loaded"}) == 1


def test_broker_down_at_start_is_retried_with_a_log_line(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    attempts = []
    harness.transport.produce_input(b"c1", event(0))
    svc = harness.service()
    real_factory = svc._transport_factory

    def flaky(handler: Service[Any]) -> object:
        attempts.append(1)
        if len(attempts) < 3:
            raise BrokerUnavailableError("connect producer to 127.0.0.1:9092 failed: KafkaTimeoutError")
        return real_factory(handler)

    svc._transport_factory = flaky  # type: ignore[assignment]
    svc.backoff = Backoff(0.01, 0.01)
    with caplog.at_level(logging.WARNING):
        svc.run()
    assert len(attempts) == 3
    assert caplog.text.count("reconnecting to") == 2
    assert len(harness.transport.records("out")) == 1


def test_fenced_producer_stops_the_service(harness: Harness) -> None:
    harness.transport.produce_input(b"c1", event(0))
    harness.transport.fail_commits, harness.transport.commit_error = 1, FencedError("fenced by a newer instance")
    with pytest.raises(FencedError):
        harness.run()
    assert harness.transport.records("out") == []


def test_stop_commits_the_open_batch() -> None:
    h = make_harness(1, "--batch-size", "100", "--commit-interval-ms", "600000")
    for i in range(4):
        h.transport.produce_input(b"c1", event(i))
    h.run()
    assert h.transport.commits == 1 and h.transport.committed[TP("in", 0)] == 4


class _SteppingClock:
    """Stands in for the ``time`` module of consumer.checkpoint: every reading is 10 ms later."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 0.010
        return self.now

    def perf_counter(self) -> float:
        return self.monotonic()


def test_commit_interval_closes_a_batch_in_the_middle_of_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint_module, "time", _SteppingClock())
    h = make_harness(1, "--batch-size", "1000", "--commit-interval-ms", "45")
    for i in range(20):
        h.transport.produce_input(b"c1", event(i))
    h.run()
    # one poll hands over all 20 records; the 45 ms interval (a clock reading per record) closes batches of a few
    assert h.transport.committed[TP("in", 0)] == 20
    assert 4 <= h.transport.commits <= 10
    assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(20)]


@pytest.mark.parametrize(("catch_up_ms", "commits"), [(600_000, 4), (1, 20)])
def test_a_backlog_of_a_full_batch_keeps_batches_open_until_full(
    monkeypatch: pytest.MonkeyPatch, catch_up_ms: int, commits: int
) -> None:
    monkeypatch.setattr(checkpoint_module, "time", _SteppingClock())
    h = make_harness(1, "--batch-size", "5", "--commit-interval-ms", "1", "--catch-up-interval-ms", str(catch_up_ms))
    for i in range(20):
        h.transport.produce_input(b"c1", event(i))
    h.run()
    # every batch starts with at least 5 records behind it: catching up, it closes full rather than after 1 ms
    assert h.transport.commits == commits
    assert h.transport.committed[TP("in", 0)] == 20
    assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(20)]


class _FakeClock:
    """Stands in for the ``time`` module of consumer.checkpoint: moves only when the test's transport moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def perf_counter(self) -> float:
        return self.now


def _paced_run(
    monkeypatch: pytest.MonkeyPatch, events: int, *, per_poll: int, poll_s: float, commit_s: float
) -> list[int]:
    """Run a service over ``events`` events handed over ``per_poll`` a poll; each poll and commit takes fake time.

    Batches close at the 100 ms commit interval (of :class:`_FakeClock`); returns the records of each commit,
    having checked that every event was processed once, in order.
    """
    clock = _FakeClock()
    monkeypatch.setattr(checkpoint_module, "time", clock)
    h = make_harness(1, "--batch-size", "1000", "--commit-interval-ms", "100")
    for i in range(events):
        h.transport.produce_input(b"c1", event(i))
    transport = h.transport
    sizes: list[int] = []
    poll, commit = transport.poll, transport.commit

    def paced_poll(timeout_s: float, max_records: int) -> list[InRecord]:
        clock.now += poll_s
        return poll(timeout_s, min(max_records, per_poll))

    def slow_commit(offsets: Any) -> None:
        sizes.append(offsets[TP("in", 0)] - sum(sizes))
        clock.now += commit_s
        commit(offsets)

    transport.poll, transport.commit = paced_poll, slow_commit  # type: ignore[method-assign]
    h.run()
    assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(events)]
    return sizes


def test_a_batch_counts_its_time_from_the_commit_its_first_records_waited_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Records that came while the batch before was committed waited already: the interval counts from that commit."""
    sizes = _paced_run(monkeypatch, 12, per_poll=1, poll_s=0.03, commit_s=0.05)
    # the first batch opens at its first record (nothing came before it) and closes after 100 ms, 5 polls; each
    # next one counts from the commit before it (50 ms long): it closes at its 2nd poll (a batch from its first
    # record would close at its 5th again: [5, 5, 2])
    assert sizes == [5, 2, 2, 2, 1]


def test_a_batch_whose_records_waited_out_its_interval_takes_the_rest_of_its_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Due at its opening, a batch still holds the poll that opened it rather than closing after each record."""
    sizes = _paced_run(monkeypatch, 16, per_poll=4, poll_s=0.04, commit_s=0.2)
    # the first batch opens at 40 ms and closes at the first record of the 4th poll (160 ms: the interval closes
    # a batch in the middle of a poll); the rest of that poll waited through the 200 ms commit, so its batch is
    # due as it opens, and commits once that poll's records are in, not after each of them ([13, 1, 1, 1])
    assert sizes == [13, 3]
