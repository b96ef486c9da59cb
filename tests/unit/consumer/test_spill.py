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


def _a_run_failing_after_its_spills(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[Harness, Any, list[int]]:
    """Seven customers' events in one run; the core fails once on the sixth, after the sink spilled chunks of 2.

    Returns the harness, the service and the transactions' states (open: 1) at each spill of outputs.
    """
    monkeypatch.setattr(checkpoint_module, "SPILL_RECORDS", 2)
    h = make_harness(1, "--batch-size", "100", "--commit-interval-ms", "60000", *args)
    h.transport.exactly_once = h.settings.exactly_once
    shared = {"e5": 1}
    h.core_setup = lambda core: setattr(core, "fail_on", shared)
    for i in range(7):
        h.transport.produce_input(f"c{i}".encode(), event(i, f"c{i}"))
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


def test_a_failed_runs_spilled_outputs_are_aborted_with_it_and_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    h, svc, spilled = _a_run_failing_after_its_spills(monkeypatch)
    assert spilled[:4] == [0, 0, 0, 0]  # e0-e3 went into the transaction while the run still ran, before its abort
    assert h.transport.aborts == 1
    # read_committed: the aborted transaction's records are not there, the replay's are, once each, in order
    assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(7)]
    assert _counted(svc, "segmenter_segment_changes_total", {"lens": "x", "cause": "event"}) == 7
    assert _counted(svc, "segmenter_outputs_total", {"kind": "segment_change"}) == 7
    assert _counted(svc, "segmenter_end_to_end_lag_seconds_count", {}) == 7


def test_at_least_once_sends_nothing_of_a_run_that_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    h, svc, spilled = _a_run_failing_after_its_spills(monkeypatch, "--guarantee", "at-least-once")
    assert not h.settings.exactly_once and h.transport.aborts == 1
    assert spilled and all(aborts == 1 for aborts in spilled)  # every output sent after the failed run's abort
    assert [o["cause_event_id"] for o in h.outputs()] == [f"e{i}" for i in range(7)]  # no duplicate
    assert _counted(svc, "segmenter_outputs_total", {"kind": "segment_change"}) == 7
