"""A commit whose records were not all delivered fails and is replayed: nothing lost, nothing doubled."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from consumer.delivery import Delivered, DeliveryTracker
from consumer.errors import TransactionError
from consumer.sink import TP
from tests.unit.consumer.conftest import Harness, event


def _six_events(h: Harness) -> None:
    for i in range(6):
        h.transport.produce_input(b"c1", event(i))


def _assert_each_output_once_and_all_committed(h: Harness) -> None:
    outputs = h.outputs()
    assert [o["cause_event_id"] for o in outputs] == [f"e{i}" for i in range(6)]
    assert [o["to_segment"]["id"] for o in outputs] == [f"x-{i + 1}" for i in range(6)]  # state restored, not redone
    assert h.transport.committed[TP("in", 0)] == 6
    assert h.transport.read_to_end("g.state", [0])[-1].value == b"6"


def test_lost_sends_fail_the_commit_and_the_batch_is_replayed(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    _six_events(harness)
    harness.transport.lose_sends = 2  # the first batch's first two outputs expire, as a record batch does
    with caplog.at_level(logging.ERROR, logger="consumer.delivery"):
        svc = harness.run()
    _assert_each_output_once_and_all_committed(harness)
    assert len(harness.cores) == 2  # a fresh session restored the core from the last commit
    assert any("2 of the batch's" in r.getMessage() and "Expiring" in r.getMessage() for r in caplog.records)
    assert svc.metrics.registry.get_sample_value("segmenter_batch_failures_total", {"cause": "TransactionError"}) == 1


def test_a_dead_sender_fails_the_commit_and_a_fresh_producer_replays_the_batch(harness: Harness) -> None:
    _six_events(harness)
    harness.transport.sender_alive = False
    harness.run()
    _assert_each_output_once_and_all_committed(harness)
    assert len(harness.cores) == 2


def test_pending_deliveries_fail_only_a_complete_check() -> None:
    tracker = DeliveryTracker(lambda: True, timeout_s=1.0)
    tracker.track([Delivered(), Delivered(is_done=False)])
    tracker.check("send")
    with pytest.raises(TransactionError, match="1 of the batch's 2 deliveries have no answer"):
        tracker.check("commit", complete=True)


def test_a_new_batch_forgets_the_failures_of_the_last() -> None:
    tracker = DeliveryTracker(lambda: True, timeout_s=1.0)
    tracker.track([Delivered(RuntimeError("expired"))])
    with pytest.raises(TransactionError, match="RuntimeError: expired"):
        tracker.check("commit")
    tracker.begin()
    tracker.track([Delivered()])
    tracker.check("commit", complete=True)


@dataclass
class _Never:
    """A transactional result that never arrives (a sender that stopped completing requests)."""

    waits: int = 0

    def wait(self, timeout_ms: float | None = None) -> bool:
        self.waits += 1
        return False


def test_a_result_that_never_arrives_fails_after_the_timeout() -> None:
    result = _Never()
    with pytest.raises(TransactionError, match="no answer within"):
        DeliveryTracker(lambda: True, timeout_s=0.0).wait(result, "commit transaction")
    assert result.waits == 1


def test_a_sender_that_dies_while_waiting_fails_the_wait() -> None:
    alive = iter([True, False])
    with pytest.raises(TransactionError, match="sender thread is no longer running"):
        DeliveryTracker(lambda: next(alive), timeout_s=3600.0).wait(_Never(), "commit transaction")
