"""A tiny smoke run of bench/consumer_throughput.py."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.integration.consumer_support import ROOT


def test_throughput_bench_runs_and_reports_four_rates(bootstrap: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.consumer_throughput",
            "--events",
            "300",
            "--customers",
            "30",
            "--bootstrap",
            bootstrap,
            "--timeout",
            "60",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rates = re.findall(r":\s+(\d+) events/s", result.stdout)
    # bare read, bare exactly-once pass-through, service exactly-once, service at-least-once
    assert len(rates) == 4 and all(int(r) > 0 for r in rates), result.stdout
    assert "ratio to bare EOS" in result.stdout and "ratio to bare read" in result.stdout
