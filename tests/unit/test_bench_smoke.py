"""Smoke runs of the offline benchmark scripts at tiny sizes (no broker; no timing assertions)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from bench import memory, quality, replay_throughput, report
from bench.common import ALGORITHMS, config_for, load_results

pytestmark = pytest.mark.timeout(120)


def _rows(out: Path, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((out / f"{name}.json").read_text())["rows"]
    return rows


def test_config_for_builds_every_algorithm_from_the_default_config() -> None:
    for algorithm in ALGORITHMS:
        cfg = config_for(algorithm)
        assert [lc.name for lc in cfg.lenses] == ["value", "engagement"]
        assert {lc.algorithm for lc in cfg.lenses} == {algorithm}


def test_offline_benchmarks_write_rows_and_a_report(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        replay_throughput.main(
            ["--customers", "30", "--days", "2", "--max-events", "1500", "--reference-events", "500", "--out", str(out)]
        )
        == 0
    )
    assert memory.main(["--core", "--sizes", "500", "1000", "--warmup", "300", "--out", str(out)]) == 0
    assert (
        quality.main(["--customers", "30", "--days", "3", "--algorithms", "kmeans", "clustream", "--out", str(out)])
        == 0
    )

    rt = _rows(out, "replay_throughput")
    assert [r["metric"] for r in rt][:2] == [
        "replay events/s (wall) vs bare river KMeans learn+predict",
        "replay events/s (CPU time) vs bare river",
    ]
    for r in rt:
        assert isinstance(r["measured"], float) and r["measured"] > 0
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
    assert rt[0]["passed"] == (rt[0]["ratio"] >= 2.0)

    mem = _rows(out, "memory")
    assert [r["metric"] for r in mem] == [
        "500 customers, RSS delta",
        "1,000 customers, RSS delta",
        "500 customers, tracemalloc",
    ]
    traced = mem[-1]["measured"]
    assert isinstance(traced, float) and 30 < traced < 5000  # an id string and a store row at the very least

    q = json.loads((out / "quality.json").read_text())
    assert set(q["data"]["runs"]) == {"personas", "separated"}
    for runs in q["data"]["runs"].values():
        assert set(runs) == {"kmeans", "clustream"}
        for res in runs.values():
            assert -1.0 <= res["final_ari_joint"] <= 1.0
            for lens in res["lenses"].values():
                assert 0.0 <= lens["flap_rate"] <= 1.0 and -1.0 <= lens["ari_vs_batch"] <= 1.0
    sep = [r for r in q["rows"] if "well-separated" in r["section"]]
    assert len(sep) == 2 * 2 * 3  # algorithms x lenses x (ARI vs patterns, ARI vs batch, flap rate)

    path = report.write_report(out, tmp_path / "RESULTS.md")
    text = path.read_text()
    assert set(load_results(out)) == {"replay_throughput", "memory", "quality"}
    assert "## Targets" in text and "## Quality per algorithm" in text
    table = [line for line in text.splitlines() if line.startswith("| throughput: offline pipeline")]
    assert len(table) == 3
    assert re.search(r"\| [\d,.]+ events/s \| [\d,.]+ \| [\d.]+ \| \*\*(pass|MISS)\*\*", table[0]), table[0]
    for name in ("throughput.png", "segment_sizes.png", "segment_profiles.png", "ari_over_time_personas.png"):
        assert (out / name).stat().st_size > 1000, name


def test_report_formats_missing_and_nan_values() -> None:
    assert report._fmt(None) == "-"
    assert report._fmt(math.nan) == "n/a"
    assert report._fmt(0.0042, "share") == "0.42%"
    assert report._fmt(12345.6) == "12,346"
