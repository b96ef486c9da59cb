"""`segmenter-producer`: an output that is an input is refused, every error is one line, exit 2 for bad input."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import producer.__main__ as cli
from producer.__main__ import main

ROOT = Path(__file__).resolve().parents[3]
SYNTH = ["synth", "--customers", "5", "--days", "2", "--start", "2026-05-01T00:00:00Z", "-q"]
ROW = {"customer_id": "c", "type": "page_view", "ts": "2026-01-01T00:00:00Z"}


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(orjson.dumps(ROW) + b"\n")
    return path


@pytest.mark.parametrize("option", ["--to", "--dlq-file", "--summary-json"])
@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_replay_refuses_an_output_that_is_its_input(
    source: Path, caplog: pytest.LogCaptureFixture, option: str, how: str
) -> None:
    target = {"same": source, "symlink": source.with_name("l.jsonl"), "hardlink": source.with_name("h.jsonl")}[how]
    if how == "symlink":
        target.symlink_to(source)
    elif how == "hardlink":
        target.hardlink_to(source)
    before = source.read_bytes()
    out = ["--to", "file", str(source.with_name("o.jsonl"))]
    args = ["--to", "file", str(target)] if option == "--to" else [*out, option, str(target)]
    assert main(["replay", str(source), "-q", *args]) == 2
    (message,) = errors(caplog)
    assert f"is the same file as the input file {source}" in message and "nothing was sent or written" in message
    assert source.read_bytes() == before
    assert not source.with_name("o.jsonl").exists()


def test_synth_refuses_two_outputs_in_one_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "e.jsonl"
    assert main([*SYNTH, "--truth", str(out), "--to", "file", str(out)]) == 2
    assert errors(caplog) == [f"--truth {out} is the same file as --to file {out}; choose another path "
                              "(nothing was sent or written)"]  # fmt: skip
    assert not out.exists()


def test_a_bad_delimiter_is_a_usage_error_not_a_traceback(source: Path, caplog: pytest.LogCaptureFixture) -> None:
    csv = source.with_suffix(".csv")
    csv.write_text("a,b\n1,2\n")
    assert main(["replay", str(csv), "--delimiter", "ab", "-q", "--to", "file", str(source.with_name("o"))]) == 2
    assert errors(caplog) == ["--delimiter must be one character, got 'ab'"]


def test_an_unreadable_input_is_exit_2(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["replay", str(tmp_path), "-q", "--to", "file", str(tmp_path / "o.jsonl")]) == 2
    assert errors(caplog) == [f"cannot read {tmp_path}: Is a directory"]


def test_an_internal_error_is_one_line(
    source: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise KeyError("ts")

    monkeypatch.setattr(cli, "load", broken)
    assert main(["replay", str(source), "-q", "--to", "file", str(source.with_name("o.jsonl"))]) == 1
    assert errors(caplog) == ["internal error (KeyError: 'ts'); run with -vv for the traceback"]


def test_the_overflowing_timestamp_is_a_bad_row_and_the_console_script_prints_no_traceback(source: Path) -> None:
    source.write_bytes(orjson.dumps(ROW | {"ts": "9999-12-31T23:59:59-23:59"}) + b"\n" + orjson.dumps(ROW) + b"\n")
    out, dlq = source.with_name("o.jsonl"), source.with_name("bad.jsonl")
    result = subprocess.run(
        [sys.executable, "-m", "producer", "replay", str(source), "-q", "--dlq-file", str(dlq), "--to", "file",
         str(out)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len(out.read_bytes().splitlines()) == 1
    (bad,) = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert bad["line"] == 1 and "outside the accepted time range (years 1970 to 2079, UTC)" in bad["reason"]


@pytest.mark.parametrize("zone", ["Europe", "x" * 300, "Mars/Olympus"])
def test_an_unknown_time_zone_is_a_usage_error(source: Path, caplog: pytest.LogCaptureFixture, zone: str) -> None:
    assert main(["replay", str(source), "--timezone", zone, "-q", "--to", "file", str(source.with_name("o"))]) == 2
    assert errors(caplog) == [f"unknown time zone {zone!r} (use an IANA name like Europe/Paris)"]


def test_a_csv_row_over_the_reader_limit_is_a_bad_row_and_the_rest_is_sent(tmp_path: Path) -> None:
    """One unreadable row (a field over the csv reader's 128 KiB) loses that row only, reported by its line."""
    csv = tmp_path / "big.csv"
    ok = "c,page_view,2026-01-01T00:00:0{}Z\n"
    csv.write_text("customer_id,type,ts\n" + ok.format(1) + "c,page_view," + "x" * 200_000 + "\n" + ok.format(2))
    out, dlq = tmp_path / "o.jsonl", tmp_path / "bad.jsonl"
    assert main(["replay", str(csv), "-q", "--dlq-file", str(dlq), "--to", "file", str(out)]) == 0
    assert [orjson.loads(line)["ts"] for line in out.read_bytes().splitlines()] == [
        "2026-01-01T00:00:01+00:00", "2026-01-01T00:00:02+00:00"
    ]  # fmt: skip
    (bad,) = [orjson.loads(line) for line in dlq.read_bytes().splitlines()]
    assert bad["line"] == 3 and bad["reason"] == "not valid CSV: field larger than field limit (131072)"
    csv.write_text("customer_id,type,ts\n" + "c,page_view," + "x" * 200_000 + "\n" + "c,page_view,bad\n")
    assert main(["replay", str(csv), "-q", "--dlq-file", str(dlq), "--to", "file", str(out)]) == 0
    assert [orjson.loads(line)["line"] for line in dlq.read_bytes().splitlines()] == [2, 3]  # lines go on counting


def test_an_unclosed_quote_that_runs_over_the_limit_names_the_lines_it_took(tmp_path: Path) -> None:
    csv = tmp_path / "quote.csv"
    body = "".join(f"c,page_view,2026-01-01T00:00:{i:02d}Z,{'y' * 9_000}\n" for i in range(20))
    csv.write_text("customer_id,type,ts,note\n" + 'c,page_view,2026-01-01T00:00:00Z,"open\n' + body)
    out, dlq = tmp_path / "o.jsonl", tmp_path / "bad.jsonl"
    assert main(["replay", str(csv), "-q", "--dlq-file", str(dlq), "--to", "file", str(out)]) == 0
    reasons = [orjson.loads(line)["reason"] for line in dlq.read_bytes().splitlines()]
    assert reasons[0].startswith("not valid CSV: field larger than field limit (131072) (lines 2-")
    assert "a quote opened on line 2 is not closed?" in reasons[0]
    assert [orjson.loads(line)["ts"][17:19] for line in out.read_bytes().splitlines()] == ["15", "16", "17", "18", "19"]


def test_a_header_the_csv_reader_cannot_read_is_one_line_naming_line_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    csv = tmp_path / "header.csv"
    csv.write_text("customer_id," + "x" * 200_000 + "\nc,1\n")
    assert main(["replay", str(csv), "-q", "--to", "file", str(tmp_path / "o.jsonl")]) == 2
    assert errors(caplog) == [f"{csv} line 1: not valid CSV: field larger than field limit (131072)"]
