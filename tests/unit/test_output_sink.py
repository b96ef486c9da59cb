"""The core's output sink: a call's outputs handed over in parts as they are made, bounded by a move buffer."""

from __future__ import annotations

import pytest

import segmenter.emission as emission
from segmenter.change_blocks import Output, messages_of
from segmenter.clock import iso
from segmenter.events import CustomerEvent, validate_event
from segmenter.features import BASE_EPOCH
from segmenter.outputs import CampaignTrigger, SegmentChange, encode
from segmenter.pipeline import Segmenter
from tests.unit.test_pipeline import CFG, EVENTS, RULES

PART = 8
"""The move buffer's capacity in these tests: the sweeps of 120 customers move many times that at once."""


def _warm() -> Segmenter:
    seg = Segmenter(CFG, RULES)
    seg.process_batch(EVENTS)
    return seg


def _keepers(days: int) -> list[CustomerEvent]:
    """Six new customers' events, one every hour for ``days`` (the clock's quorum is 5): the watermark moves
    day after day inside the batch, and the other customers go quiet."""
    start = int(max(e.epoch for e in EVENTS)) - BASE_EPOCH
    return [
        validate_event({"event_id": f"k{h}", "customer_id": f"keeper-{h % 6}", "type": "page_view",
                        "ts": iso(start + h * 3600)})
        for h in range(1, 24 * days)
    ]  # fmt: skip


def _sweep_moves(part: list[Output]) -> int:
    return sum(1 for m in messages_of(part) if isinstance(m, SegmentChange) and m.cause in ("inactivity", "model"))


def test_a_batch_with_mass_moves_hands_them_to_the_sink_in_parts_in_the_list_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(emission, "MOVE_CAPACITY", PART)
    batch = _keepers(120)
    whole = _warm().process_batch(batch).outputs
    parts: list[list[Output]] = []
    result = _warm().process_batch(batch, sink=parts.append)
    assert result.outputs == []
    # the same messages, in order
    assert [encode(m) for part in parts for m in messages_of(part)] == [encode(m) for m in whole]
    moved = [_sweep_moves(part) for part in parts]
    assert sum(moved) > 4 * PART  # the sweeps really moved many customers at once
    assert max(moved) <= PART  # ... and each reached the sink a move buffer at a time
    assert any(isinstance(m, CampaignTrigger) for m in whole)  # with the triggers the moves fire, in place


def test_advance_to_hands_a_full_rescoring_to_the_sink_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emission, "MOVE_CAPACITY", PART)
    until = max(e.epoch for e in EVENTS) + 90 * 86_400
    whole = _warm().advance_to(until, full=True)
    parts: list[list[Output]] = []
    assert _warm().advance_to(until, full=True, sink=parts.append) == []
    assert [encode(m) for part in parts for m in messages_of(part)] == [encode(m) for m in whole]
    moved = [_sweep_moves(part) for part in parts]
    assert sum(moved) > 4 * PART
    assert max(moved) <= PART
