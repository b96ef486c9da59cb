"""`segmenter replay|profile|check-rules`: files in, files and a summary out."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from segmenter.__main__ import main
from segmenter.config import DEFAULT_CONFIG_PATH
from tests.unit.eventgen import make_events

RULES_EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "rules.example.toml"
SMALL_CONFIG = (
    DEFAULT_CONFIG_PATH.read_text()
    .replace(
        "params = { n_clusters = 5 }", "params = { n_clusters = 5 }\nwarmup = 60\nrefresh_every = 64\nbatch_size = 8"
    )
    .replace(
        "params = { n_clusters = 4 }", "params = { n_clusters = 4 }\nwarmup = 60\nrefresh_every = 64\nbatch_size = 8"
    )
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("replay")
    events = d / "events.jsonl"
    with events.open("wb") as fh:
        for i, e in enumerate(make_events(80, 30, seed=5, dup_rate=0.02, erase=2)):
            fh.write(orjson.dumps(e) + b"\n")
            if i == 10:
                fh.write(b"this is not json\n\n")
            if i == 20:
                fh.write(b'{"event_id": "x", "customer_id": "c", "type": "purchase", "ts": "2026-01-01T00:00:00Z"}\n')
    config = d / "small.toml"
    config.write_text(SMALL_CONFIG)
    return {"dir": d, "events": events, "config": config}


@pytest.fixture(scope="module")
def replayed(files: dict[str, Path]) -> dict[str, Path]:
    d = files["dir"]
    out, snap, ck = d / "out.jsonl", d / "snap.jsonl", d / "ck.bin"
    code = main(["replay", str(files["events"]), "--output", str(out), "--snapshot", str(snap),
                 "--config", str(files["config"]), "--rules", str(RULES_EXAMPLE), "--checkpoint", str(ck)])  # fmt: skip
    assert code == 0
    return {**files, "out": out, "snap": snap, "ck": ck}


def test_replay_writes_output_messages(replayed: dict[str, Path]) -> None:
    lines = [orjson.loads(x) for x in replayed["out"].read_bytes().splitlines()]
    kinds = {m["kind"] for m in lines}
    assert {"segment_change", "segment_lifecycle", "campaign_trigger"} <= kinds
    assert all(m["emitted_at"] and m["emitted_at"].endswith("+00:00") for m in lines)
    changes = [m for m in lines if m["kind"] == "segment_change"]
    assert {"customer_id", "lens", "from_segment", "to_segment", "cause", "cause_event_id", "event_ts",
            "model_version", "distance", "features", "explanation"} <= set(changes[0])  # fmt: skip


def test_replay_snapshot_has_one_line_per_customer(replayed: dict[str, Path]) -> None:
    snap = [orjson.loads(x) for x in replayed["snap"].read_bytes().splitlines()]
    ids = [s["customer_id"] for s in snap]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert 70 <= len(ids) <= 80  # two erasures at most remove two
    for s in snap:
        assert set(s) == {"customer_id", "segments", "features"}
        assert set(s["segments"]) == set(s["features"]) == {"value", "engagement"}
        assert list(s["features"]["value"]) == ["recency_days", "orders", "net_spend", "aov"]
        ref = s["segments"]["value"]
        assert ref is None or (ref["id"].startswith("value-") and ref["name"])
    assert sum(1 for s in snap if s["segments"]["value"]) > len(snap) // 2


def test_replay_summary_and_invalid_lines(replayed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    d = replayed["dir"]
    code = main(
        ["replay", str(replayed["events"]), "--config", str(replayed["config"]), "--output", str(d / "o2.jsonl")]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "rejected 2 (not_json 1, schema 1)" in text
    assert "line 12: not_json" in text
    assert "duplicates" in text and "lens value" in text
    assert (d / "o2.jsonl").read_bytes().count(b"\n") > 0


def test_replay_is_reproducible_apart_from_emitted_at(replayed: dict[str, Path]) -> None:
    d = replayed["dir"]
    again = d / "again.jsonl"
    assert main(["-q", "replay", str(replayed["events"]), "--output", str(again), "--config", str(replayed["config"]),
                 "--rules", str(RULES_EXAMPLE)]) == 0  # fmt: skip

    def strip(p: Path) -> list[dict[str, object]]:
        return [{k: v for k, v in orjson.loads(x).items() if k != "emitted_at"} for x in p.read_bytes().splitlines()]

    assert strip(again) == strip(replayed["out"])


def test_replay_until(files: dict[str, Path]) -> None:
    d = files["dir"]
    out, snap = d / "until.jsonl", d / "until-snap.jsonl"
    assert main(["-q", "replay", str(files["events"]), "--output", str(out), "--snapshot", str(snap),
                 "--config", str(files["config"]), "--until", "2026-03-20T00:00:00Z"]) == 0  # fmt: skip
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert any(m.get("cause") == "inactivity" and m["event_ts"].startswith("2026-03-20") for m in lines)
    cut = d / "cut.jsonl"
    assert main(["-q", "replay", str(files["events"]), "--output", str(cut), "--config", str(files["config"]),
                 "--until", "2026-01-10T00:00:00+00:00"]) == 0  # fmt: skip
    assert all(
        m.get("event_ts", "2026-01-10") <= "2026-01-10T00:00:00+00:00~"
        for m in map(orjson.loads, cut.read_bytes().splitlines())
    )


def test_unreadable_input_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = 1\n[features]\nlatenes_hours = 2\n[[lenses]]\nname='v'\nfeatures=['spend']\n")
    events = tmp_path / "e.jsonl"
    events.write_text("")
    assert main(["replay", str(events), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "features.latenes_hours" in err


def test_profile_from_snapshot_and_checkpoint(replayed: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", str(replayed["snap"])]) == 0
    text = capsys.readouterr().out
    assert "lens value" in text and "lens engagement" in text and "value-" in text
    assert main(["profile", str(replayed["ck"]), "--config", str(replayed["config"])]) == 0
    text = capsys.readouterr().out
    assert "lens value (model version" in text and "recency_days=" in text
    assert main(["profile", str(replayed["dir"] / "nothing.bin")]) == 1


def test_check_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-rules", str(RULES_EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "rule 'welcome'" in out and "rule(s) OK" in out
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rules]]\nname = "x"\ncampaign = "c"\nchannel = "email"\non = { lens = "nope", enter = "*" }\n')
    assert main(["check-rules", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
