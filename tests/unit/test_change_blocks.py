"""A move buffer's changes as one block: its bytes are the bytes of its messages, whatever the moves hold."""

from __future__ import annotations

import math
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from producer.retail import SparseConfig, SparseRetail
from segmenter import change_blocks
from segmenter.change_blocks import ChangeBuilder, Output, SegmentChanges, encode_parts, encode_runs, messages_of
from segmenter.config import load_config
from segmenter.events import parse_event
from segmenter.features import FEATURE_NAMES
from segmenter.line_writer import Numbers, Pieces, number_spans
from segmenter.moves import M_FROM, M_LENS, M_TO, MoveBuffer
from segmenter.outputs import encode_lines
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events
from tests.unit.test_replay_cli import SMALL_CONFIG

STAMP = "2026-12-01T15:34:45.214934+00:00"
ODD_IDS = ['q"uote', "back\\slash", "ctl\x01\x1f", "café ·", "tab\there", "</script>", ""]
"""Customer and event ids orjson escapes, or writes as UTF-8."""


def _events(kind: str) -> list[bytes]:
    if kind == "sparse":
        dicts = [e.event for e in SparseRetail(SparseConfig(customers=1000, days=300, seed=2)).events()]
    else:
        dicts = list(make_events(150, 30, seed=3))
    for i, d in enumerate(dicts):  # some customers and events with ids that need escaping
        if zlib.crc32(d["customer_id"].encode()) % 7 == 0 or i % 97 == 0:
            odd = ODD_IDS[len(d["customer_id"]) % len(ODD_IDS)]
            d["customer_id"] = odd + d["customer_id"]
            d["event_id"] = odd + d["event_id"]
    return [orjson.dumps(d) for d in dicts]


@pytest.fixture(scope="module", params=["sparse", "dense"])
def parts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[list[Output]]:
    path = tmp_path_factory.mktemp("blocks") / "small.toml"
    path.write_text(SMALL_CONFIG)
    seg = Segmenter(load_config(path))
    events = [parse_event(line) for line in _events(request.param)]
    batches = [seg.process_batch(events[i : i + 200]).parts for i in range(0, len(events), 200)]
    watermark = seg.watermark
    assert watermark is not None
    batches.append(list(seg.advance_to(watermark + 90 * 86400, full=True)))
    return batches


def _blocks(parts: list[list[Output]]) -> list[SegmentChanges]:
    return [p for batch in parts for p in batch if isinstance(p, SegmentChanges)]


def test_the_streams_hold_every_kind_of_move(parts: list[list[Output]]) -> None:
    """Otherwise the tests below would not look at what they claim to."""
    blocks = _blocks(parts)
    assert sum(map(len, blocks)) > 100
    every = SegmentChanges.concat(blocks)
    assert {"event", "inactivity"} <= {every.causes[c] for c in set(every.cause.tolist())}
    assert every.explained.any()
    assert (every.from_ref < 0).any() and (every.from_ref >= 0).any()
    assert (every.runner >= 0).any()
    assert (every.top[:, 1] < 0).any()
    assert any(any(odd and odd in cid for odd in ODD_IDS) for cid in every.ids)
    assert any(not isinstance(p, SegmentChanges) for batch in parts for p in batch)  # lifecycle messages between


@pytest.mark.parametrize("emitted_at", [None, STAMP])
def test_a_blocks_lines_are_its_messages_lines(parts: list[list[Output]], emitted_at: str | None) -> None:
    for batch in parts:
        assert encode_parts(batch, emitted_at) == encode_lines(messages_of(batch), emitted_at)
    for block in _blocks(parts):
        assert block.encode_lines(emitted_at) == encode_lines(block.messages(), emitted_at)


def test_a_blocks_lines_are_its_messages_lines_for_what_the_streams_lack(parts: list[list[Output]]) -> None:
    """No explanation yet (a lens without a scaler snapshot), no distance, no segment entered, no top feature."""
    block = SegmentChanges.concat(_blocks(parts))
    rng = np.random.default_rng(0)
    some = rng.random(len(block)) < 0.3
    top = block.top.copy()
    top[rng.random(len(block)) < 0.2] = -1
    odd = replace(block, explained=block.explained & ~some, dist=np.where(rng.random(len(block)) < 0.3, np.nan,
                  block.dist), to_ref=np.where(some, -1, block.to_ref), top=top)  # fmt: skip
    assert odd.encode_lines(STAMP) == encode_lines(odd.messages(), STAMP)
    lines = [orjson.loads(line) for line in odd.encode_lines(None).splitlines()]
    assert {line["explanation"]["top_features"] == [] for line in lines} == {True, False}
    assert any(line["distance"] is None for line in lines) and any(line["to_segment"] is None for line in lines)


def test_blocks_written_as_one_are_the_blocks_one_after_another(parts: list[list[Output]]) -> None:
    blocks = _blocks(parts)
    assert len(blocks) > 2
    joined = b"".join(b.encode_lines(STAMP) for b in blocks)
    assert SegmentChanges.concat(blocks).encode_lines(STAMP) == joined
    assert SegmentChanges.concat(blocks).messages() == [m for b in blocks for m in b.messages()]


@pytest.mark.parametrize("size", [1, 11])
def test_a_block_in_parts_is_the_block(parts: list[list[Output]], size: int) -> None:
    every = SegmentChanges.concat(_blocks(parts))
    pieces = list(every.parts(size))
    assert len(every) % size != 0 or size == 1  # a last, shorter part is checked too
    assert [len(p) for p in pieces] == [min(size, len(every) - a) for a in range(0, len(every), size)]
    assert b"".join(p.encode_lines(STAMP) for p in pieces) == every.encode_lines(STAMP)
    assert [m for p in pieces for m in p.messages()] == every.messages()


def test_a_long_run_is_written_in_parts_of_at_most_encode_moves(
    parts: list[list[Output]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(change_blocks, "ENCODE_MOVES", 16)
    for batch in parts:  # runs of messages between runs of blocks
        assert b"".join(encode_runs(batch, STAMP)) == encode_lines(messages_of(batch), STAMP)
    blocks = _blocks(parts)
    written = list(encode_runs(blocks, STAMP))  # one run, longer than a part
    n = sum(map(len, blocks))
    assert [piece.count(b"\n") for piece in written] == [min(16, n - a) for a in range(0, n, 16)]
    assert len(written) > 2
    assert b"".join(written) == encode_lines(messages_of(blocks), STAMP)


def test_a_block_counts_its_causes(parts: list[list[Output]]) -> None:
    for block in _blocks(parts):
        assert block.cause_counts() == {
            c: n for c in block.causes if (n := sum(m.cause == c for m in block.messages()))
        }


def test_the_batch_result_messages_are_its_parts_messages(parts: list[list[Output]]) -> None:
    seg = Segmenter(load_config(None))
    events = [parse_event(line) for line in _events("dense")[:300]]
    result = seg.process_batch(events)
    assert result.outputs == messages_of(result.parts)
    assert all(not isinstance(m, SegmentChanges) for m in result.outputs)


# ---------------------------------------------------------------------- the line writer
def test_numbers_are_written_as_orjson_writes_python_floats() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([
        rng.standard_normal(5000) * 10.0 ** rng.integers(-30, 30, 5000),
        np.round(rng.standard_normal(5000) * 1000, 4),
        [0.0, -0.0, math.nan, math.inf, -math.inf, 1e16, 1e-5, 5e-324, 1.7976931348623157e308, 0.1, 1e22, 1e-7],
    ])  # fmt: skip
    assert Numbers(values).array().tobytes() == orjson.dumps(values.tolist())


@pytest.mark.parametrize("values", [ODD_IDS, ["plain", "ascii-1", ""], [], ["é"]])
def test_strings_are_written_as_orjson_writes_them(values: list[str]) -> None:
    text = Pieces()
    before = text.add(b"[")
    first = text.strings(values)
    after = text.add(b"]")
    blob, offsets = text.arrays()
    pieces = [blob[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]
    assert pieces == [b"[", *(orjson.dumps(v) for v in values), b"]"]
    assert (before, first, after) == (0, 1, 1 + len(values))
    assert text.add(b"[") == before


def test_number_spans_find_every_number() -> None:
    values = np.array([1.5, math.nan, -2e-9, 0.0])
    numbers = Numbers(values).array()
    starts = number_spans(numbers)
    assert [numbers[starts[j] : starts[j + 1] - 1].tobytes() for j in range(4)] == [b"1.5", b"null", b"-2e-9", b"0.0"]
    assert len(number_spans(Numbers(np.zeros(0)).array())) == 2


# ---------------------------------------------------------------------- the block's columns
def test_a_blocks_messages_are_each_moves_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each move of a block, as its message says, is what the moved customer's buffered row and its lens say,
    read as the block is made: the lens features (rounded to 4 places), the distance (to 6) and the explanation
    that :meth:`Lens.explain` gives for that one move (blocks mixing both lenses: a move's numbers in its row)."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL_CONFIG)
    seg = Segmenter(load_config(path))
    made = ChangeBuilder.block
    checked = {"moves": 0, "mixed": 0}

    def block(self: ChangeBuilder, buf: MoveBuffer, cause: str, events: Any, stamp: int | None) -> SegmentChanges:
        changes = made(self, buf, cause, events, stamp)
        n = len(buf)
        vals, ints = buf.values().tolist(), buf.ints[:n].tolist()
        checked["mixed"] += len(set(changes.lens.tolist())) > 1
        for m, message in enumerate(changes.messages()):
            lens = seg.lenses[ints[m][M_LENS]]
            raw = [vals[m][FEATURE_NAMES.index(name)] for name in lens.feature_names]
            old, new = (None if s < 0 else s for s in (ints[m][M_FROM], ints[m][M_TO]))
            assert message.features == {k: round(v, 4) for k, v in zip(lens.feature_names, raw, strict=True)}
            assert message.distance == (None if math.isnan(buf.dist[m]) else round(float(buf.dist[m]), 6))
            if lens.snapshot is not None:
                assert message.explanation == lens.explain(raw, old, new)
            checked["moves"] += 1
        return changes

    monkeypatch.setattr(ChangeBuilder, "block", block)
    events = [parse_event(line) for line in _events("dense")]
    for i in range(0, len(events), 200):
        seg.process_batch(events[i : i + 200])
    assert checked["moves"] > 100 and checked["mixed"] > 3
