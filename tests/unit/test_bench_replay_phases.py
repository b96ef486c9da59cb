"""bench/replay_phases.py: every part of a replay is counted once, and the parts add up to the whole."""

from __future__ import annotations

from pathlib import Path

import orjson

import segmenter.__main__ as cli
from bench import replay_phases
from tests.unit.eventgen import make_events


def test_the_parts_add_up_and_the_functions_are_put_back(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in make_events(150, 30, seed=1)))
    before = [getattr(owner, name) for owner, name, _ in replay_phases.PARTS]
    seconds = replay_phases.run(str(events), replay_phases.PARTS, cli.main)
    assert [getattr(owner, name) for owner, name, _ in replay_phases.PARTS] == before
    parts = {part for _, _, part in replay_phases.PARTS}
    assert {"parse", "batching", "event loop (compiled)", "change blocks: columns", "encoding: change lines"} <= set(
        seconds
    )
    assert set(seconds) <= parts | {"imports", "rest", "total"}
    assert all(s >= 0 for part, s in seconds.items() if part != "rest")
    assert abs(sum(s for part, s in seconds.items() if part != "total") - seconds["total"]) < 1e-9
    assert seconds["parse"] > 0 and seconds["imports"] > 0 and seconds["rest"] >= 0
