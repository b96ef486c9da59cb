"""``segmenter.replay``: its input's first line (a leading BOM skipped) and its bounded writes of many parts at once."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

import segmenter.replay as replay_module
from segmenter.config import default_config
from segmenter.pipeline import Segmenter
from segmenter.replay import ReplayIO, replay
from tests.unit.eventgen import make_events


class _Writes(io.BytesIO):
    """An output stream that records the number of lines of each write (a ``writelines`` call is one)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[int] = []

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.lines.append(data.count(b"\n"))
        return super().write(data)

    def writelines(self, chunks: Iterable[bytes]) -> None:  # type: ignore[override]
        held = list(chunks)
        self.lines.append(sum(chunk.count(b"\n") for chunk in held))
        super().writelines(held)


def _replay(path: Path) -> _Writes:
    out = _Writes()
    replay(path, Segmenter(default_config()), ReplayIO(output=out))
    return out


def test_replay_writes_outputs_in_bounded_writes_of_many_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in make_events(300, 8)))
    whole = _replay(path)
    assert whole.lines == [sum(whole.lines)], "below WRITE_EVERY, one write at the end"
    monkeypatch.setattr(replay_module, "WRITE_EVERY", 50)
    parts = _replay(path)
    assert parts.getvalue() == whole.getvalue()
    assert len(parts.lines) > 3, "written as the held outputs pass WRITE_EVERY, not once at the end"
    assert min(parts.lines[:-1]) >= 50


def test_a_leading_utf8_byte_order_mark_is_skipped_and_line_one_kept(tmp_path: Path) -> None:
    plain, marked = tmp_path / "plain.jsonl", tmp_path / "marked.jsonl"
    plain.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in make_events(300, 8)))
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    report, _ = replay(marked, Segmenter(default_config()), ReplayIO(output=io.BytesIO()))
    assert not report.rejected and report.events == report.lines == plain.read_bytes().count(b"\n")
    assert _replay(marked).getvalue() == _replay(plain).getvalue() != b""
