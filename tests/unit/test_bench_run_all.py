"""The make bench pipeline without running a benchmark: the summary of targets, the time budget, the backlog's
targets and the capacity on paper (no broker; no timing assertions)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import run_all
from bench.backlog import backlog_rows
from bench.capacity import capacity_section, edge_cpu_per_event, largest_group
from bench.common import Row
from bench.report import run_section, summary_lines, summary_table


def _result(*rows: Row) -> dict[str, Any]:
    return {"rows": [asdict(r) for r in rows]}


RESULTS = {
    "consumer_throughput": _result(
        Row("throughput", "eos vs bare", 400.0, "events/s", "ratio >= 0.5", 1000.0, 0.4, False),
        Row("throughput", "informational", 5.0, "events/s"),
    ),
    "memory": _result(Row("memory", "RSS slope", 190.0, "bytes", "<= 256", passed=True)),
}


def test_the_summary_lists_every_target_once_with_its_same_run_ratio_and_pass_or_fail() -> None:
    table = summary_table(RESULTS)
    assert table[0] == "1 of 2 targets met."
    rows = [line for line in table if line.startswith("| throughput") or line.startswith("| memory")]
    assert rows == [
        "| throughput | eos vs bare | ratio >= 0.5 | 0.400 (400.0 vs 1,000) | **FAIL** |",
        "| memory | RSS slope | <= 256 | 190.0 bytes | **PASS** |",
    ]
    lines = summary_lines(RESULTS)
    assert lines[0] == "targets: 1 of 2 met"
    assert [line.split()[0] for line in lines[1:]] == ["FAIL", "PASS"]


def test_a_run_past_its_budget_skips_the_steps_and_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--budget", "0", "--out", str(out), "--results", str(tmp_path / "R.md"), "--no-plots"]
    assert run_all.main(argv) == 1  # nothing ran: no report, and skipped steps count as failed
    status = json.loads((out / "run_all.status").read_text())
    assert list(status["steps"]) == [s.name for s in run_all.STEPS]
    assert all(not st["ok"] and "budget" in st["error"] for st in status["steps"].values())
    section = run_section(status)
    assert sum("**failed**: skipped: the run's budget was spent" in line for line in section) == len(run_all.STEPS)


def test_every_step_has_arguments_at_both_sizes_and_the_limits_fit_the_default_budget() -> None:
    assert len({s.name for s in run_all.STEPS}) == len(run_all.STEPS)
    assert all(s.full and s.quick and s.what for s in run_all.STEPS)
    assert {"quality", "backlog", "capacity", "replay_throughput"} <= {s.name for s in run_all.STEPS}


def _backlog_run(late: int, accepted: int) -> dict[str, Any]:
    return {
        "events": 100,
        "customers": 10,
        "reference": {"accepted": 100, "refused": {}, "events_per_s": None},
        "backlog": {"accepted": accepted, "refused": {"late": late, "future": 0, "schema": 0}, "events_per_s": 50.0},
    }


def test_the_backlog_passes_only_with_nothing_late_and_what_one_partition_accepts() -> None:
    rows = backlog_rows({"ok": _backlog_run(0, 100), "late": _backlog_run(3, 97)}, 3, "partitions")
    passed = {(r.metric.split(" (")[0], r.metric.split(": ")[1]): r.passed for r in rows}
    assert passed == {
        ("ok", "refused as late"): True,
        ("ok", "accepted vs one partition in time order"): True,
        ("ok", "catch-up rate"): None,
        ("late", "refused as late"): False,
        ("late", "accepted vs one partition in time order"): False,
        ("late", "catch-up rate"): None,
    }


def test_capacity_on_paper_adds_the_edge_measured_by_the_peer_run() -> None:
    capacity = {
        "data": {
            "process_cpu_per_event": {"1": 10e-6, "10": 4e-6},
            "single_cpu_per_event": 2e-6,
            "trainer_vectors_per_s": {"both lenses": 200_000.0, "value": 400_000.0, "engagement": 300_000.0},
            "trainer_commit_cpu_s": 0.002,
        }
    }
    peer = {"data": {"measured": {"1": {"ours": {"events": 100_000, "cpu_s": 5.0}}}}}
    edge = edge_cpu_per_event(peer, 2e-6)
    assert edge is not None and math.isclose(edge, 48e-6)
    assert edge_cpu_per_event(None, 2e-6) is None
    text = capacity_section(capacity, peer)
    row = next(line for line in text if line.startswith("| 10 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[-2:] == ["52.0", str(math.floor(largest_group(200_000.0, 10, 52e-6)))]
    assert cells[4] == str(math.floor(largest_group(200_000.0, 10, 4e-6)))
    assert "largest group of whole processes" not in " ".join(capacity_section(capacity))
