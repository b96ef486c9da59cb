"""A tiny smoke run of bench/peer_quix.py: every contender on one partition, one result file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.consumer_support import ROOT

pytestmark = pytest.mark.timeout(300)


def test_peer_bench_measures_every_contender_and_writes_the_ratios(bootstrap: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "bench.peer_quix",
        "--events",
        "300",
        "--customers",
        "30",
        "--partitions",
        "1",
        "--bootstrap",
        bootstrap,
        "--timeout",
        "120",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "peer_quix.json").read_text())
    measured = saved["data"]["measured"]["1"]
    assert set(measured) == {"bare_read", "bare_eos", "ours", "quix"}
    for m in measured.values():
        assert m["events"] == 300 and m["seconds"] > 0 and m["cpu_s"] > 0 and m["peak_rss"] > 0
    targets = {r["metric"]: r for r in saved["rows"] if r["passed"] is not None}
    assert set(targets) == {
        "1 partition: events/s, ours vs Quix Streams",
        "1 partition: CPU per event, ours vs Quix Streams",
        "1 partition: events/s, ours vs the bare kafka-python exactly-once pass-through",
    }
    ours, quix = measured["ours"], measured["quix"]
    rate = (ours["events"] / ours["seconds"]) / (quix["events"] / quix["seconds"])
    assert targets["1 partition: events/s, ours vs Quix Streams"]["ratio"] == pytest.approx(rate)
    assert "| 1 | quix |" in result.stdout
