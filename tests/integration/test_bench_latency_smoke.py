"""Smoke runs of the Kafka benchmarks (latency, and run_all's consumer step) at tiny sizes on the real broker."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from tests.integration.consumer_support import ROOT


def test_latency_bench_reports_percentiles_per_rate(bootstrap: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "--rates",
            "200",
            "400",
            "--seconds",
            "2",
            "2",
            "--customers",
            "300",
            "--warmup-events",
            "2500",  # past the lenses' warm-up (2000 observations): only segment changes give samples
            "--bootstrap",
            bootstrap,
            "--drain-timeout",
            "60",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads((tmp_path / "latency.json").read_text())
    phases = payload["data"]["phases"]
    assert [p["rate"] for p in phases] == [200.0, 400.0]
    for p in phases:
        assert p["events"] == int(p["rate"] * 2) and p["drained"]
        assert p["samples"] > 0, "no event produced a committed segment_change"
        assert 0 < p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] <= p["max_ms"]
        assert len(p["latencies_ms"]) == p["samples"]
    metrics = [r["metric"] for r in payload["rows"]]
    assert metrics == [f"{r}/s offered: {q}" for r in (200, 400) for q in ("p50", "p95", "p99")]


def test_run_all_consumer_step_writes_three_rates(bootstrap: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run_all",
            "--step-consumer-throughput",
            "--",
            "--events",
            "300",
            "--customers",
            "30",
            "--bootstrap",
            bootstrap,
            "--timeout",
            "60",
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "consumer_throughput.json").read_text())["data"]
    for key in ("bare", "exactly_once", "at_least_once"):
        assert data[key] > 0 and math.isfinite(data[key])
