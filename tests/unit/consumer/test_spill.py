"""A batch past SPILL_RECORDS outputs sends them into its open transaction early: same records, one commit."""

from __future__ import annotations

from collections.abc import Iterable

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
