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

REPLAY_SMOKE = ["--customers", "30", "--days", "2", "--max-events", "1500", "--reference-events", "500",
                "--sparse-customers", "60", "--sparse-days", "200", "--repeat", "1"]  # fmt: skip
QUALITY_SMOKE = ["--customers", "30", "--days", "3", "--sparse-customers", "80", "--sparse-days", "200",
                 "--btyd-days", "5", "--algorithms", "kmeans", "clustream"]  # fmt: skip


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
    assert replay_throughput.main([*REPLAY_SMOKE, "--out", str(out)]) == 0
    assert memory.main(["--core", "--sizes", "500", "1000", "--warmup", "300", "--out", str(out)]) == 0
    assert quality.main([*QUALITY_SMOKE, "--out", str(out)]) == 0

    rt = _rows(out, "replay_throughput")
    assert [r["metric"] for r in rt][:2] == [
        "replay events/s (wall) vs bare river KMeans learn+predict",
        "replay events/s (CPU time) vs bare river",
    ]
    for r in rt:
        assert isinstance(r["measured"], float) and r["measured"] > 0
        assert isinstance(r["ratio"], float) and r["ratio"] > 0
    assert rt[0]["passed"] == (rt[0]["ratio"] >= 2.0)
    whole = [r for r in rt if r["section"] == "throughput: whole processes"]
    assert [r["metric"].split(":")[0].split(" (")[0] for r in whole] == ["dense"] * 2 + ["sparse"] * 2
    data = json.loads((out / "replay_throughput.json").read_text())["data"]
    for r, (scenario, clock) in zip(whole, [(s, c) for s in ("dense", "sparse") for c in ("wall", "cpu")], strict=True):
        seconds = data["processes"][scenario]["seconds"]
        assert r["ratio"] == pytest.approx(seconds["bare_river"][clock] / seconds["replay"][clock])
        assert r["passed"] == (r["ratio"] >= 2.0)

    mem = _rows(out, "memory")
    assert [r["metric"] for r in mem] == [
        "500 customers, RSS delta",
        "1,000 customers, RSS delta",
        "500 customers, tracemalloc",
    ]
    traced = mem[-1]["measured"]
    assert isinstance(traced, float) and 30 < traced < 5000  # an id string and a store row at the very least

    q = json.loads((out / "quality.json").read_text())
    assert set(q["data"]["runs"]) == {"personas", "separated", "sparse", "sparse_bad_clock", "btyd"}
    for scenario, runs in q["data"]["runs"].items():
        assert set(runs) == ({"kmeans"} if scenario == "sparse_bad_clock" else {"kmeans", "clustream"})
        for res in runs.values():
            assert -1.0 <= res["final_ari_joint"] <= 1.0
            for lens in res["lenses"].values():
                assert 0.0 <= lens["flap_rate"] <= 1.0 and -1.0 <= lens["ari_vs_batch"] <= 1.0
                assert 0.0 <= lens["reversal_rate_7d"] <= lens["reversal_rate_30d"] <= 1.0
                assert lens["reversals_7d"] <= lens["reversals_30d"] <= lens["moves"]
                assert len(lens["flap_gaps"]["each"]) == lens["flaps"]
    sep = [r for r in q["rows"] if "well-separated" in r["section"]]
    assert len(sep) == 2 * 2 * 3  # algorithms x lenses x (ARI vs patterns, ARI vs batch, flap rate)
    reversal = [r["metric"] for r in q["rows"] if "7-day reversal" in r["section"]]
    assert reversal == [f"{s} / {lens}" for s in q["data"]["runs"] for lens in ("value", "engagement")]
    bad_clock = [r for r in q["rows"] if "a year ahead" in r["section"]]
    assert len(bad_clock) == 1 and bad_clock[0]["measured"] == q["data"]["runs"]["sparse_bad_clock"]["kmeans"]["late"]

    path = report.write_report(out, tmp_path / "RESULTS.md")
    text = path.read_text()
    assert set(load_results(out)) == {"replay_throughput", "memory", "quality"}
    assert "## Summary: every target" in text and "## Every measurement" in text and "## Quality per algorithm" in text
    every = text.split("## Every measurement")[1].split("\n## ")[0]
    table = [line for line in every.splitlines() if line.startswith("| throughput: offline pipeline")]
    assert len(table) == 3
    assert re.search(r"\| [\d,.]+ events/s \| [\d,.]+ \| [\d.]+ \| \*\*(PASS|FAIL)\*\*", table[0]), table[0]
    for name in ("throughput.png", "segment_sizes.png", "segment_profiles.png", "ari_over_time_personas.png"):
        assert (out / name).stat().st_size > 1000, name


def test_report_formats_missing_and_nan_values() -> None:
    assert report._fmt(None) == "-"
    assert report._fmt(math.nan) == "n/a"
    assert report._fmt(0.0042, "share") == "0.42%"
    assert report._fmt(12345.6) == "12,346"


def test_a_move_back_is_a_reversal_timed_in_event_time_whatever_the_event_count() -> None:
    day = 86400.0
    r = quality.Reversals(flap_window=5)
    assert r.note(0, "c1", "a", "b", "event", 10, 0.0) == (False, None, None, 0, 0)
    # back to "a" 100 events but only 2 days later: not a flap, reversed after 2 days
    assert r.note(0, "c1", "b", "a", "inactivity", 110, 2 * day) == (False, 2 * day, "event", 100, 10)
    # back to "b" 2 events but 8 days later: a flap, reversed after 8 days, of a move at the 110th event
    assert r.note(0, "c1", "a", "b", "event", 112, 10 * day) == (True, 8 * day, "inactivity", 2, 110)
    # a move on to a third segment reverses nothing; lenses and customers are apart
    assert r.note(0, "c1", "b", "c", "event", 113, 10 * day) == (False, None, None, 0, 0)
    assert r.note(1, "c1", "c", "b", "event", 114, 10 * day) == (False, None, None, 0, 0)
    assert r.note(0, "c2", "c", "b", "event", 1, 10 * day) == (False, None, None, 0, 0)
    assert r.note(0, "c1", "c", "b", "event", 114, 17 * day) == (True, 7 * day, "event", 1, 113)


def test_flap_gaps_summarise_each_flap_and_name_their_range_in_the_row() -> None:
    gaps = [quality.FlapGap(7.5, 0, 16), quality.FlapGap(9.0, 5, 24), quality.FlapGap(7.1, 2, 20)]
    s = quality.flap_gap_summary(gaps)
    assert s["each"] == [[7.5, 0, 16], [9.0, 5, 24], [7.1, 2, 20]]
    assert s["days"] == [7.1, 7.5, 9.0] and s["events"] == [0.0, 2.0, 5.0] and s["age_events"] == [16.0, 20.0, 24.0]
    assert quality.flap_gap_summary([]) == {"each": [], "days": [], "events": [], "age_events": []}
    assert quality._gaps_note(s) == "; reversed after 7.1-9.0 days and 0-5 events, of moves at events 16-24"
    assert quality._gaps_note(quality.flap_gap_summary([])) == ""
