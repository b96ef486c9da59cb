"""A batch past SPILL_RECORDS outputs sends them into its open transaction early: same records, one commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import consumer.checkpoint as checkpoint_module
from consumer.sink import TP, OutRecord
from tests.unit.consumer.conftest import Harness, event, make_harness


def _one_batch_of_seven(spill_at: int, monkeypatch: pytest.MonkeyPatch) -> tuple[Harness, list[tuple[int, int, int]]]:
    """Seven customers' events in one batch; returns the harness and (outputs, changelog records, commits) per send."""
    monkeypatch.setattr(checkpoint_module, "SPILL_RECORDS", spill_at)
    h = make_harness(1, "--batch-size", "100", "--commit-interval-ms", "60000")
    for i in range(7):
        h.transport.produce_input(f"c{i}".encode(), event(i, f"c{i}"))
    sends: list[tuple[int, int, int]] = []
    send_many = h.transport.send_many

    def spy(records: Iterable[OutRecord]) -> None:
        records = list(records)
        count = sum(1 for r in records if r.topic == "out"), sum(1 for r in records if r.topic == "g.state")
        sends.append((*count, h.transport.commits))
        send_many(records)

    h.transport.send_many = spy  # type: ignore[method-assign]  # the checkpoint's spill is bound at batch open
    h.run()
    return h, sends


def test_a_big_batch_sends_its_outputs_in_chunks_inside_its_one_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    whole, whole_sends = _one_batch_of_seven(1_000_000, monkeypatch)
    chunked, chunked_sends = _one_batch_of_seven(3, monkeypatch)
    assert [n for n, _, _ in whole_sends if n] == [7]  # all at commit
    assert [n for n, _, _ in chunked_sends if n] == [3, 3, 1]  # two full chunks while the batch ran, the rest at commit
    assert [n for _, n, _ in whole_sends if n] == [7]
    assert [n for _, n, _ in chunked_sends if n] == [3, 3, 1]  # the commit's changelog, a chunk at a time
    assert all(commits == 0 for _, _, commits in chunked_sends)  # every chunk before the one commit
    assert chunked.transport.commits == whole.transport.commits == 1
    for topic in ("out", "g.state", "g.membership"):  # the same records, in the same order
        assert [(r.partition, r.key, r.value, r.headers) for r in chunked.transport.records(topic)] == [
            (r.partition, r.key, r.value, r.headers) for r in whole.transport.records(topic)
        ]
    assert [o["cause_event_id"] for o in chunked.outputs()] == [f"e{i}" for i in range(7)]
    assert chunked.transport.committed[TP("in", 0)] == 7


def _a_run_failing(
    monkeypatch: pytest.MonkeyPatch, *args: str, tombstone_at: int | None = None
) -> tuple[Harness, Any, list[int]]:
    """Seven records of seven customers in one batch (spilled in chunks of 2); the core fails once on ``e5``.

    ``tombstone_at``: that record is a tombstone instead, which ends the run before it. Returns the harness,
    the service, and the aborts so far at each output record spilled.
    """
    monkeypatch.setattr(checkpoint_module, "SPILL_RECORDS", 2)
    h = make_harness(1, "--batch-size", "100", "--commit-interval-ms", "60000", *args)
    h.transport.exactly_once = h.settings.exactly_once
    shared = {"e5": 1}
    h.core_setup = lambda core: setattr(core, "fail_on", shared)
    for i in range(7):
        h.transport.produce_input(f"c{i}".encode(), None if i == tombstone_at else event(i, f"c{i}"))
    spilled: list[int] = []
    send_many = h.transport.send_many

    def spy(records: Iterable[OutRecord]) -> None:
        records = list(records)
        spilled.extend(h.transport.aborts for r in records if r.topic == "out")
        send_many(records)

    h.transport.send_many = spy  # type: ignore[method-assign]
    return h, h.run(), spilled


def _counted(svc: Any, name: str, labels: dict[str, str]) -> float | None:
    return svc.metrics.registry.get_sample_value(name, labels)  # type: ignore[no-any-return]


def test_an_aborted_batchs_spilled_outputs_never_appear_and_count_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    h, svc, spilled = _a_run_failing(monkeypatch, tombstone_at=3)  # runs e0-e2 and e4-e6
    assert spilled.count(0) == 2  # e0, e1 went into the transaction before it was aborted; nothing of e4-e6
    assert h.transport.aborts == 1
    # read_committed: the aborted transaction's records are not there, the replay's are, once each, in order
    want = ["e0", "e1", "e2", "e4", "e5", "e6"]
    assert [o["cause_event_id"] for o in h.outputs()] == want
    # counted at the commits: e0-e2, queued twice (the aborted batch, the replay), count once
    assert _counted(svc, "segmenter_segment_changes_total", {"lens": "x", "cause": "event"}) == len(want)
    assert _counted(svc, "segmenter_outputs_total", {"kind": "segment_change"}) == len(want)
    assert _counted(svc, "segmenter_end_to_end_lag_seconds_count", {}) == len(want)


def test_a_run_that_fails_sends_nothing_in_either_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    for args in ((), ("--guarantee", "at-least-once")):
        h, svc, spilled = _a_run_failing(monkeypatch, *args)
        assert h.transport.aborts == 1
        assert spilled and all(aborts == 1 for aborts in spilled), args  # every output sent after the abort
        assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(7)]  # no duplicate
        assert _counted(svc, "segmenter_outputs_total", {"kind": "segment_change"}) == 7  # the failed run: none
