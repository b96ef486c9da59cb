"""The emitter turns a change block straight into records: the records, marks and counts of its messages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import consumer.emitter as emitter_module
from consumer.checkpoint import Checkpoint
from consumer.emitter import Emitter
from consumer.metrics import Metrics
from consumer.routing import OutputRouter
from consumer.sink import OutRecord
from segmenter.change_blocks import Output, SegmentChanges, messages_of
from segmenter.config import load_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from segmenter.triggers.rules import load_rules
from tests.unit.test_change_blocks import _events
from tests.unit.test_replay_cli import SMALL_CONFIG

RULES = Path(__file__).resolve().parents[3] / "config" / "rules.example.toml"
_Sample = tuple[str, dict[str, str], float]
"""A metric sample: name, labels, value."""
NOW = datetime(2026, 12, 1, 15, 34, 45, 214934, tzinfo=UTC)


@pytest.fixture(scope="module", params=["sparse", "dense", "dense+rules"])
def calls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[list[Output]]:
    """The parts a real core hands its sink, one list per call (with campaign rules: messages only)."""
    path = tmp_path_factory.mktemp("block_records") / "small.toml"
    path.write_text(SMALL_CONFIG)
    config = load_config(path)
    seg = Segmenter(config, load_rules(RULES, config) if request.param.endswith("+rules") else None)
    events = [parse_event(line) for line in _events(request.param.removesuffix("+rules"))]
    got: list[list[Output]] = []
    for i in range(0, len(events), 200):
        seg.process_batch(events[i : i + 200], sink=got.append)
    watermark = seg.watermark
    assert watermark is not None
    seg.advance_to(watermark + 90 * 86400, full=True, sink=got.append)
    return got


def _emit(calls: list[list[Output]], blocks: bool) -> tuple[list[OutRecord], dict[str, str], list[_Sample]]:
    """Feed ``calls`` to an emitter, as they are (``blocks``) or as their messages; what it queued and counted."""
    metrics = Metrics()
    emitter = Emitter(OutputRouter(lambda kind: f"out.{kind}"), "dlq", metrics, lambda: NOW)
    checkpoint = Checkpoint(started=0.0, opened=0.0, open_s=1.0)
    feed = emitter.feed(checkpoint, provisional=True)
    for parts in calls:
        feed(parts if blocks else messages_of(parts))
    feed.count()
    for count in checkpoint.on_commit:
        count()
    samples = [(s.name, s.labels, s.value) for m in metrics.registry.collect() for s in m.samples
               if not s.name.endswith("_created")]  # fmt: skip
    return checkpoint.records, checkpoint.changed.as_dict(), samples


@pytest.mark.parametrize("lines_from", [1, emitter_module.LINES_FROM])
def test_a_blocks_records_are_its_messages_records(calls: list[list[Output]], lines_from: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Every block written from its lines (1), or the small ones from their messages (the default)."""
    monkeypatch.setattr(emitter_module, "LINES_FROM", lines_from)
    records, changed, samples = _emit(calls, blocks=True)
    want_records, want_changed, want_samples = _emit(calls, blocks=False)
    assert len(records) == len(want_records) > 100
    assert records == want_records, "same records, same order, same bytes"
    assert changed == want_changed
    assert samples == want_samples, "same counts per kind, change and trigger, same lags"


def test_the_calls_hold_blocks_between_messages_and_without_rules_only(calls: list[list[Output]]) -> None:
    """Otherwise the test above would not compare what it claims to."""
    kinds = [{type(p) for p in parts} for parts in calls]
    has_rules = any(m.kind == "campaign_trigger" for parts in calls for m in messages_of(parts))
    if has_rules:
        assert not any(SegmentChanges in k for k in kinds)
    else:
        sizes = [len(p) for parts in calls for p in parts if isinstance(p, SegmentChanges)]
        assert min(sizes) < emitter_module.LINES_FROM <= max(sizes), "blocks written both ways"
        assert len(sizes) > 2
        assert any(len(k) > 1 for k in kinds), "a call with a block and messages"
