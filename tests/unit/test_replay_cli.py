"""`segmenter replay|profile|check-rules`: files in, files and a summary out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import segmenter.__main__ as cli
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


def test_unreadable_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert capsys.readouterr().err == f"error: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory\n"


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
    assert main(["profile", str(replayed["dir"] / "nothing.bin")]) == 2


def test_check_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-rules", str(RULES_EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "rule 'welcome'" in out and "rule(s) OK" in out
    bad = tmp_path / "rules.toml"
    bad.write_text('[[rules]]\nname = "x"\ncampaign = "c"\nchannel = "email"\non = { lens = "nope", enter = "*" }\n')
    assert main(["check-rules", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


# --------------------------------------------------------------------------- one-line errors, no traceback


def one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """The single stderr line, which must start with ``error:`` and contain ``words``."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0]
    return lines[0]


@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_an_output_that_is_the_input_is_refused_and_the_input_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = tmp_path / "events.jsonl"
    original = b"".join(orjson.dumps(e) + b"\n" for e in make_events(5, 2, seed=1))
    events.write_bytes(original)
    monkeypatch.chdir(tmp_path)
    target = {"same": events, "relative": Path("./sub/../events.jsonl"), "symlink": tmp_path / "link.jsonl",
              "hardlink": tmp_path / "hard.jsonl"}[how]  # fmt: skip
    if how == "symlink":
        target.symlink_to(events)
    elif how == "hardlink":
        target.hardlink_to(events)
    (tmp_path / "sub").mkdir()
    for option in ("--output", "--snapshot", "--checkpoint"):
        assert main(["-q", "replay", str(events), option, str(target)]) == 2
        one_error_line(capsys, option, str(target), "same file as the events file", "nothing was read or written")
        assert events.read_bytes() == original


def test_outputs_that_are_one_file_or_a_config_file_are_refused(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    d = files["dir"]
    assert main(["-q", "replay", str(files["events"]), "--output", str(d / "o.jsonl"), "--snapshot",
                 str(d / "o.jsonl")]) == 2  # fmt: skip
    one_error_line(capsys, "--snapshot", "same file as --output")
    config = files["config"].read_bytes()
    assert main(["-q", "replay", str(files["events"]), "--config", str(files["config"]), "--checkpoint",
                 str(files["config"])]) == 2  # fmt: skip
    one_error_line(capsys, "--checkpoint", "same file as --config")
    assert files["config"].read_bytes() == config


def test_an_unwritable_output_fails_before_the_replay_with_one_line(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-q", "replay", str(files["events"]), "--config", str(files["config"])]
    assert main([*args, "--checkpoint", str(files["dir"])]) == 2
    one_error_line(capsys, f"cannot write {files['dir']}")
    assert main([*args, "--snapshot", str(files["events"] / "x.jsonl")]) == 2
    one_error_line(capsys, f"{files['events']} is not a directory")


def test_profile_skips_bad_snapshot_lines_naming_them_and_refuses_a_file_of_none(
    replayed: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed.jsonl"
    bad_lines = [b'{"segments": [1], "features": {}}', b'{"segments": {"value": 5}, "features": {}}',
                 b'{"segments": {"value": null}, "features": {"value": {"spend": "x"}}}', b"[1]", b"{oops"]  # fmt: skip
    mixed.write_bytes(b"\n".join([*bad_lines, *replayed["snap"].read_bytes().splitlines()[:3]]) + b"\n")
    assert main(["profile", str(mixed)]) == 0
    captured = capsys.readouterr()
    assert "lens value" in captured.out
    assert f"{mixed}: 5 line(s) skipped" in captured.err and "Traceback" not in captured.err
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_bytes(b"\n".join(bad_lines))
    assert main(["-q", "profile", str(only_bad)]) == 2
    one_error_line(capsys, str(only_bad), "no snapshot line in 5 line(s)")


def test_check_rules_on_hostile_files_is_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text('[[rules]]\nname="x"\ncampaign="c"\nchannel="email"\non={lens="value",enter="*"}\n'
                    "payload={a=" + "[" * 5000 + "]" * 5000 + "}\n")  # fmt: skip
    assert main(["check-rules", str(deep)]) == 2
    one_error_line(capsys, str(deep), "nested deeper than 32 levels")
    wide = tmp_path / "wide.toml"
    wide.write_text('[[rules]]\nname="x"\ncampaign="c"\nchannel="email"\non={lens="value",enter="*"}\n'
                    'when=["nope > 1"]\npayload={a="{customer_id:>300000000}"}\n')  # fmt: skip
    assert main(["check-rules", str(wide)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[1:3] for line in lines] == [[f" {wide}", " rule 'x', field 'when[0]'"],
                                                         [f" {wide}", " rule 'x', field 'payload.a'"]]  # fmt: skip


def test_an_internal_error_is_one_line_with_exit_1(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("lens")

    monkeypatch.setattr(cli, "replay", broken)
    assert main(["-q", "replay", str(files["events"])]) == 1
    one_error_line(capsys, "internal error (KeyError: 'lens')", "-vv")


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb.write_text("\n".join(lines) + "\n")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "segmenter", "check-rules", str(bomb)], capture_output=True,
                            text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bomb}: not valid YAML: YAML aliases are not allowed (*name); write the value out in full "
        "at line 2, column 10"
    ]


def test_replay_rejects_every_hostile_reproduction_and_goes_on(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = Path(__file__).parent / "data" / "hostile_events"
    hostile = [p.read_bytes() for p in sorted(corpus.iterdir())]
    hostile = [h for h in hostile if h.strip() and b"\n" not in h.strip()]  # one record per line
    good = [orjson.dumps(e) for e in make_events(30, 10, seed=3) if e["type"] != "erasure_request"]
    events = tmp_path / "hostile.jsonl"
    events.write_bytes(b"\n".join([*good[:15], *hostile, *good[15:]]) + b"\n")
    snap = tmp_path / "snap.jsonl"
    assert main(["replay", str(events), "--config", str(files["config"]), "--snapshot", str(snap)]) == 0
    out = capsys.readouterr().out
    assert f"events read {len(good) + len(hostile)} " in out
    assert f"rejected {len(hostile)} " in out
    assert snap.read_bytes().count(b"\n") == len({orjson.loads(g)["customer_id"] for g in good})
