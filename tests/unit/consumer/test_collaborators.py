"""The service's collaborators on their own: commit watchdog, backoff, assignment, batch policy, router."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import consumer.checkpoint as checkpoint_module
from consumer.__main__ import build_service
from consumer.checkpoint import BatchPolicy, WaitClock
from consumer.metrics import Health, Metrics
from consumer.ownership import Assignment
from consumer.reconnect import Backoff
from consumer.routing import OutputRouter
from consumer.settings import load_settings
from consumer.sink import TP, OutRecord
from consumer.snapshots import SnapshotKeeper
from consumer.views import ViewFollower
from consumer.watchdog import CommitWatchdog
from tests.unit.consumer.conftest import _change


def _wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_watchdog_thread_serves_every_commit_and_warns_about_a_slow_one(caplog: pytest.LogCaptureFixture) -> None:
    before = set(threading.enumerate())  # services of other tests may have left theirs (daemon threads)
    watchdog = CommitWatchdog(after_s=0.02, bootstrap="broker:9092")
    try:
        for _ in range(50):
            watchdog.arm(3)
            watchdog.disarm()
        ours = [t for t in threading.enumerate() if t.name == "commit-watchdog" and t not in before]
        assert len(ours) == 1
        with caplog.at_level(logging.WARNING, logger="consumer.watchdog"):
            watchdog.arm(7)
            _wait_for(lambda: "batch of 7 records" in caplog.text, "the slow commit's warning")
        watchdog.disarm()
        assert "broker:9092" in caplog.text
    finally:
        watchdog.close()
    assert not ours[0].is_alive()


def test_backoff_doubles_up_to_its_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.take() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.take() == 0.5


def test_a_revoked_partition_is_not_restored_after_the_poll() -> None:
    assignment = Assignment()
    assignment.assigned({TP("in", 0), TP("in", 1)})
    assignment.revoked({TP("in", 1)})  # a second rebalance inside the same poll
    assert assignment.take_pending() == {TP("in", 0)}
    assert assignment.take_pending() is None


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_a_batch_is_due_when_full_or_open_for_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(checkpoint_module, "time", clock)
    policy = BatchPolicy(batch_size=3, interval_s=1.0, catch_up_s=10.0)
    assert not policy.due(None)
    quiet = policy.open(lambda: 0)
    backlog = policy.open(lambda: 3)
    assert (quiet.open_s, backlog.open_s) == (1.0, 10.0)
    quiet.store_offsets(TP("in", 0), 1, 2)
    assert not policy.due(quiet) and policy.room(quiet) == 1
    quiet.store_offsets(TP("in", 0), 2, 1)
    assert policy.due(quiet) and quiet.offsets == {TP("in", 0): 3}
    clock.now += 1.0
    assert policy.due(backlog) is False and policy.due(policy.open(lambda: 0)) is False
    clock.now += 9.0
    assert policy.due(backlog)


def test_the_wait_clock_counts_from_the_poll_or_commit_before_records_of_a_flowing_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(checkpoint_module, "time", clock)
    waiting = WaitClock()
    waiting.polled(3)
    assert waiting.since() is None  # the first poll: its records just came
    clock.now = 101.0
    waiting.polled(2)
    assert waiting.since() == 100.0  # they came since the poll before, which held records too
    clock.now = 101.5
    waiting.committing()
    assert waiting.since() == 101.5  # ... or since the commit that came later (a batch opened mid-poll)
    clock.now = 102.0
    waiting.polled(0)
    clock.now = 103.0
    waiting.polled(4)
    assert waiting.since() is None  # after a poll that brought nothing they came in the poll under way
    policy = BatchPolicy(batch_size=10, interval_s=1.0, catch_up_s=10.0)
    batch = policy.open(lambda: 0, since=102.5)
    assert (batch.started, batch.opened) == (102.5, 103.0)
    assert policy.open(lambda: 0, since=104.0).started == 103.0  # never later than its opening
    assert policy.open(lambda: 10, since=102.5).started == 103.0  # catching up: from its opening
    clock.now = 103.5
    full_at, closes_at, clock_of = policy.closing(batch)
    assert policy.due(batch) and (full_at, closes_at, clock_of) == (10, 104.0, clock.monotonic)
    assert policy.poll_timeout(batch) == 0.0


def test_a_batch_behind_a_backlog_smaller_than_a_large_batch_size_catches_up() -> None:
    policy = BatchPolicy(batch_size=50_000, interval_s=0.1, catch_up_s=2.0)
    lag = checkpoint_module.CATCH_UP_LAG
    assert lag < policy.batch_size
    assert policy.open(lambda: lag).open_s == 2.0
    assert policy.open(lambda: lag - 1).open_s == 0.1  # a live stream's lag: its batches close at the interval
    small = BatchPolicy(batch_size=3, interval_s=0.1, catch_up_s=2.0)
    assert (small.open(lambda: 3).open_s, small.open(lambda: 2).open_s) == (2.0, 0.1)


def test_a_batch_behind_a_backlog_is_full_once_it_holds_that_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tail of a backlog smaller than ``batch_size`` commits at once, not after the catch-up interval."""
    monkeypatch.setattr(checkpoint_module, "time", _Clock())
    policy = BatchPolicy(batch_size=50_000, interval_s=0.1, catch_up_s=2.0)
    lag = checkpoint_module.CATCH_UP_LAG + 5
    batch = policy.open(lambda: lag)
    assert batch.open_s == 2.0 and policy.room(batch) == lag
    batch.store_offsets(TP("in", 0), lag - 2, lag - 1)
    assert not policy.due(batch) and policy.room(batch) == 1
    batch.store_offsets(TP("in", 0), lag - 1, 1)
    assert policy.due(batch)
    behind_a_big_one = policy.open(lambda: 10 * policy.batch_size)
    assert policy.room(behind_a_big_one) == policy.batch_size


def test_the_router_keys_and_labels_each_kind_and_counts_it() -> None:
    counted: dict[str, float] = {}

    class Counter:
        def __init__(self, kind: str) -> None:
            self.kind = kind

        def inc(self, amount: float = 1) -> None:
            counted[self.kind] = counted.get(self.kind, 0) + amount

    router = OutputRouter(lambda kind: f"out.{kind}", Counter)
    records = [router.record(_change(c, None, 1, f"e{c}", "2026-01-01T00:00:00+00:00")) for c in ("a", "b")]
    assert [(r.topic, r.key, dict(r.headers)["kind"]) for r in records] == [
        ("out.segment_change", b"a", b"segment_change"),
        ("out.segment_change", b"b", b"segment_change"),
    ]
    assert counted == {"segment_change": 2}
    many = router.records([_change(c, None, 1, f"e{c}", "2026-01-01T00:00:00+00:00") for c in ("c", "d", "e")])
    assert [r.key for r in many] == [b"c", b"d", b"e"] and counted == {"segment_change": 5}, "once per kind, by 3"


@pytest.mark.parametrize(
    ("mode", "keeper", "trainer"), [("single", SnapshotKeeper, False), ("shared", ViewFollower, True)]
)
def test_the_mode_is_wired_once(mode: str, keeper: type, trainer: bool) -> None:
    settings = load_settings(["--group-id", "g", "--metrics-port", "-1", "--mode", mode])
    service = build_service(settings, Metrics(), Health())
    assert isinstance(service._keeper, keeper)
    assert (service._trainer_factory is not None) == trainer


def test_the_emitter_writes_the_stamped_bytes_and_counts_each_label_set() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    from consumer.checkpoint import Checkpoint  # noqa: PLC0415
    from consumer.emitter import Emitter  # noqa: PLC0415
    from segmenter.outputs import stamp  # noqa: PLC0415
    from tests.unit.test_outputs_encode import MESSAGES  # noqa: PLC0415

    metrics = Metrics()
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    emitter = Emitter(OutputRouter(lambda kind: f"out.{kind}"), "dlq", metrics, lambda: now)
    checkpoint = Checkpoint(started=0.0, opened=0.0, open_s=1.0)
    emitter.emit(MESSAGES, checkpoint)
    assert metrics.registry.get_sample_value("segmenter_campaign_triggers_total", {"campaign": "win"}) is None
    for count in checkpoint.on_commit:  # counted when the batch is committed
        count()
    reference = OutputRouter(lambda kind: f"out.{kind}")
    assert checkpoint.records == [reference.record(stamp(m, now.isoformat())) for m in MESSAGES]
    changes = [m for m in MESSAGES if m.kind == "segment_change"]
    assert checkpoint.changed.as_dict() == dict.fromkeys((m.customer_id for m in changes), now.isoformat())
    registry = metrics.registry
    for lens, cause in {(m.lens, m.cause) for m in changes}:
        want = sum(1 for m in changes if (m.lens, m.cause) == (lens, cause))
        got = registry.get_sample_value("segmenter_segment_changes_total", {"lens": lens, "cause": cause})
        assert got == want
    assert registry.get_sample_value("segmenter_campaign_triggers_total", {"campaign": "win"}) == 1
    dated = [datetime.fromisoformat(ts) for m in MESSAGES if isinstance(ts := getattr(m, "event_ts", None), str)]
    assert len(dated) > 1
    lag = "segmenter_end_to_end_lag_seconds"
    assert registry.get_sample_value(f"{lag}_count") == len(dated), "one lag per message with an event time"
    assert registry.get_sample_value(f"{lag}_sum") == pytest.approx(sum((now - t).total_seconds() for t in dated))


class _Core:
    """What the commit steps read of a core: ``changes`` changelog entries, no membership, no model parts."""

    def __init__(self, changes: int) -> None:
        self.changes = changes

    def take_change_parts(self, size: int) -> list[list[tuple[str, bytes | None, int | None]]]:
        changes: list[tuple[str, bytes | None, int | None]] = [(f"c{i}", b"{}", 0) for i in range(self.changes)]
        return [changes[i : i + size] for i in range(0, len(changes), size)]

    def membership(self, customer_ids: list[str]) -> dict[str, None]:
        return {}


class _Keeper:
    def records(self, core: object) -> list[object]:
        return []

    def discard(self, core: object) -> None:
        """Nothing to discard."""


class _Transport:
    def __init__(self) -> None:
        self.sent = 0
        self.commits = 0

    def send_many(self, records: list[object]) -> None:
        self.sent += len(records)

    def commit(self, offsets: dict[TP, int]) -> None:
        self.commits += 1


def _trims(monkeypatch: pytest.MonkeyPatch, commits: list[tuple[int, int]], *, idle: bool) -> list[tuple[int, int]]:
    """Commit batches of ``(outputs, changelog records)``, each followed by the loop's trim call.

    Returns the number of trims (``release_free_memory`` calls) after each commit and after the call that follows it.
    """
    calls: list[int] = []

    def trim() -> bool:
        calls.append(1)
        return True

    monkeypatch.setattr(checkpoint_module, "release_free_memory", trim)
    settings = load_settings(["--group-id", "g", "--topics.input", "in"])
    watchdog = CommitWatchdog(after_s=60.0, bootstrap="broker:9092")
    trims = []
    try:
        keeper: Any = _Keeper()
        steps: checkpoint_module.CommitSteps[Any] = checkpoint_module.CommitSteps(settings, keeper, Metrics(), watchdog)
        transport = _Transport()
        for outputs, changes in commits:
            batch = BatchPolicy.of(settings).open(lambda: 0)
            for _ in range(outputs):
                batch.queue(OutRecord("out", None, b"x", (), None))
            steps.commit(batch, transport, _Core(changes))  # type: ignore[arg-type]
            committed = len(calls)
            steps.release_memory_if_due(idle=idle)  # the loop, before its next poll or once a poll brought nothing
            trims.append((committed, len(calls)))
    finally:
        watchdog.close()
    assert transport.commits == len(commits)
    return trims


def test_the_free_heap_is_returned_before_the_poll_after_commits_sent_enough_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    half = checkpoint_module.TRIM_AFTER_RECORDS // 2
    trims = _trims(monkeypatch, [(10, 10), (half, half - 21), (1, 0), (half, half), (half, 0)], idle=False)
    assert trims == [(0, 0), (0, 0), (0, 1), (1, 2), (2, 2)]


def test_an_idle_consumer_returns_the_free_heap_after_fewer_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # what the batches after the last large trim freed would stay until the next burst otherwise
    few = checkpoint_module.TRIM_IDLE_RECORDS // 2
    assert few * 4 < checkpoint_module.TRIM_AFTER_RECORDS
    commits = [(few, 0), (0, few - 1), (1, 0), (few, few), (0, 0)]
    assert _trims(monkeypatch, commits, idle=True) == [(0, 0), (0, 0), (0, 1), (1, 2), (2, 2)]
    assert _trims(monkeypatch, commits, idle=False) == [(0, 0)] * 5
