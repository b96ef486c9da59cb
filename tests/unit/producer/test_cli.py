"""The ``segmenter-producer`` command line and the file sinks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from producer.__main__ import main
from producer.errors import SinkError
from producer.sinks import JsonlSink, MemorySink

SYNTH = ["synth", "--customers", "40", "--days", "15", "--start", "2026-05-01T00:00:00Z", "-q"]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_synth_to_file_is_byte_identical_for_a_seed(tmp_path: Path) -> None:
    args = [*SYNTH, "--seed", "5", "--duplicate-rate", "0.02", "--late-rate", "0.02", "--malformed-rate", "0.01"]
    assert main([*args, "--to", "file", str(tmp_path / "a.jsonl")]) == 0
    assert main([*args, "--to", "file", str(tmp_path / "b.jsonl")]) == 0
    assert main([*SYNTH, "--seed", "6", "--to", "file", str(tmp_path / "c.jsonl")]) == 0
    a = (tmp_path / "a.jsonl").read_bytes()
    assert len(a) > 10_000
    assert a == (tmp_path / "b.jsonl").read_bytes()
    assert a != (tmp_path / "c.jsonl").read_bytes()


def test_synth_truth_fault_log_and_summary_agree(tmp_path: Path) -> None:
    out, truth, faults, summary = (tmp_path / n for n in ("e.jsonl", "t.jsonl", "f.jsonl", "s.json"))
    code = main(
        [
            *SYNTH,
            "--seed",
            "2",
            "--drift-share",
            "0.5",
            "--arrivals-per-day",
            "2",
            "--duplicate-rate",
            "0.01",
            "--late-rate",
            "0.01",
            "--malformed-rate",
            "0.01",
            "--truth",
            str(truth),
            "--fault-log",
            str(faults),
            "--summary-json",
            str(summary),
            "--to",
            "file",
            str(out),
        ]
    )
    assert code == 0
    lines = out.read_bytes().splitlines()
    s = orjson.loads(summary.read_bytes())
    fault_lines = _jsonl(faults)
    assert s["messages"] == len(lines)
    assert s["faults"] == dict(Counter(f["fault"] for f in fault_lines))
    malformed = sum(v for k, v in s["faults"].items() if k.startswith("malformed."))
    assert s["messages"] == s["valid_events"] + s["faults"]["duplicate"] + malformed
    assert s["valid_events"] == sum(s["events_by_type"].values())
    truth_rows = _jsonl(truth)
    assert s["truth_lines"] == len(truth_rows)
    assert {r["cause"] for r in truth_rows} == {"initial", "arrival", "drift"}
    assert s["drifts"] == sum(r["cause"] == "drift" for r in truth_rows)
    assert s["customers"] == len({r["customer_id"] for r in truth_rows}) == 40 + s["arrivals"]
    truth_ids = {r["customer_id"] for r in truth_rows}
    customers = set()
    for line in lines:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # malformed.bad_json
        customers.add(event.get("customer_id"))
    customers.discard(None)  # malformed.missing_field
    assert len(customers) > 30
    assert customers <= truth_ids


def test_max_events_and_rate_pacing(tmp_path: Path) -> None:
    out = tmp_path / "e.jsonl"
    started = time.perf_counter()
    assert main([*SYNTH, "--max-events", "60", "--rate", "200", "--to", "file", str(out)]) == 0
    elapsed = time.perf_counter() - started
    assert len(out.read_bytes().splitlines()) == 60
    assert elapsed >= 59 / 200 * 0.95


def test_to_stdout(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "producer", *SYNTH, "--max-events", "25", "--to", "file", "-"],
        capture_output=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 25 and all("event_id" in r for r in rows)


@pytest.mark.parametrize(
    ("to", "message"),
    [
        (["file"], "--to file needs a path"),
        (["kafak"], "--to expects 'kafka' or 'file PATH'"),
        (["kafka", "x.csv"], "put the replay FILE before --to"),
    ],
)
def test_bad_destination_is_a_usage_error(to: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*SYNTH, "--to", *to])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_unreachable_broker_says_how_to_start_it(caplog: pytest.LogCaptureFixture) -> None:
    code = main([*SYNTH, "--bootstrap-servers", "127.0.0.1:1", "--connect-timeout", "1", "--to", "kafka"])
    assert code == 1
    assert "cannot reach Kafka at 127.0.0.1:1: start it with scripts/kafka-local start" in caplog.text


def test_unwritable_output_is_a_clean_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main([*SYNTH, "--to", "file", str(tmp_path / "no" / "such" / "dir.jsonl")]) == 1
    assert "cannot open output file" in caplog.text


def test_replay_cli_sends_valid_rows_in_order_and_reports_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("user,at,amount\nb,2026-01-02T00:00:00Z,2\na,2026-01-01T00:00:00Z,1\nc,never,3\n")
    out, dlq, summary = tmp_path / "out.jsonl", tmp_path / "dlq.jsonl", tmp_path / "s.json"
    code = main(
        [
            "replay",
            str(src),
            "--customer-col",
            "user",
            "--time-col",
            "at",
            "--type",
            "purchase",
            "--dlq-file",
            str(dlq),
            "--summary-json",
            str(summary),
            "-q",
            "--to",
            "file",
            str(out),
        ]
    )
    assert code == 0
    assert [(e["customer_id"], e["amount"]) for e in _jsonl(out)] == [("a", 1.0), ("b", 2.0)]
    (bad,) = _jsonl(dlq)
    assert bad["line"] == 4 and "at: 'never'" in bad["reason"] and bad["row"]["user"] == "c"
    s = orjson.loads(summary.read_bytes())
    assert (s["rows"], s["valid_rows"], s["bad_rows"], s["messages"]) == (3, 2, 1, 2)
    assert "in.csv line 4" in caplog.text


def test_replay_cli_prices_a_ledger_and_refuses_an_amount_beside_a_price(tmp_path: Path) -> None:
    src = tmp_path / "ledger.csv"
    src.write_text("cust,at,qty,unit\nb,2026-01-02T00:00:00Z,-2,1.25\na,2026-01-01T00:00:00Z,3,0.5\n")
    out = tmp_path / "out.jsonl"
    args = ["replay", str(src), "--customer-col", "cust", "--time-col", "at", "--type", "purchase",
            "--quantity-col", "qty", "--price-col", "unit", "-q", "--to", "file", str(out)]  # fmt: skip
    assert main(args) == 0
    assert [(e["customer_id"], e["type"], e["amount"]) for e in _jsonl(out)] == [("a", "purchase", 1.5),
                                                                              ("b", "refund", 2.5)]  # fmt: skip
    assert main([*args, "--amount-col", "unit"]) == 2


def test_replay_cli_sums_the_lines_of_an_order(tmp_path: Path) -> None:
    src = tmp_path / "ledger.csv"
    src.write_text("inv,cust,at,qty,unit\n7,a,2026-01-01T00:00:00Z,3,0.5\n8,a,2026-01-02T00:00:00Z,1,4\n"
                   "7,a,2026-01-01T00:00:00Z,2,1.25\n")  # fmt: skip
    out, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    args = ["replay", str(src), "--customer-col", "cust", "--time-col", "at", "--type", "purchase", "--quantity-col",
            "qty", "--price-col", "unit", "--order-col", "inv", "-q", "--to", "file", str(out),
            "--summary-json", str(summary)]  # fmt: skip
    assert main(args) == 0
    orders = [(e["type"], e["amount"], e["quantity"]) for e in _jsonl(out)]
    assert orders == [("purchase", 4.0, 5), ("purchase", 4.0, 1)]
    s = orjson.loads(summary.read_bytes())
    assert (s["rows"], s["valid_rows"], s["bad_rows"], s["messages"]) == (3, 3, 0, 2)


def test_replay_speed_follows_original_timing(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b"\n".join(orjson.dumps({"customer_id": "c", "type": "search", "ts": 1767225600 + i}) for i in range(4))
    )
    started = time.perf_counter()
    assert main(["replay", str(src), "--speed", "10", "-q", "--to", "file", str(tmp_path / "o.jsonl")]) == 0
    assert time.perf_counter() - started >= 0.3 * 0.95


def test_replay_missing_column_is_an_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "in.csv"
    src.write_text("a,b\n1,2\n")
    assert main(["replay", str(src), "-q", "--to", "file", str(tmp_path / "o.jsonl")]) == 2  # a bad input file
    assert "no column 'customer_id'" in caplog.text


def test_jsonl_sink_writes_lines_and_reports_errors(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    with JsonlSink(path) as sink:
        sink.send(b"k", b'{"a":1}')
        sink.send(b"k", b'{"a":2}')
    sink.close()  # twice is harmless
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'
    with pytest.raises(SinkError, match="cannot open output file"):
        JsonlSink(tmp_path / "missing" / "x.jsonl")


def test_memory_sink_keeps_messages() -> None:
    sink = MemorySink()
    with sink:
        sink.send(b"k", b"v")
    assert sink.messages == [(b"k", b"v")] and sink.values == [b"v"] and sink.flushes == 1
