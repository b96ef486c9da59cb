"""bench.quality_metrics.targets_table: the issue-13 measures of a quality result, before > after."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.quality_metrics import center_metrics, held_metrics, hold_reason, lens_metrics, target_rows, targets_table
from tests.unit.lenses.helpers import BLOBS, FEATURES, blobs, feed, make_lens


def _run(sse: float, drifted: int) -> dict[str, Any]:
    lens = {"sse_ratio": sse, "np_ari_vs_batch": 0.8, "reversal_rate_7d": 0.005, "segments_ever": 6,
            "live_segments": 4, "moves_per_1k_events": 12.0}  # fmt: skip
    return {"lenses": {"value": {**lens, "rule_fidelity": 0.93}, "engagement": lens},
            "drift": {"drifted": drifted, "followed_share": 0.75, "median_days": 2.5}}  # fmt: skip


def test_table_shows_each_lens_with_before_and_after() -> None:
    after = {"runs": {"personas": {"kmeans": _run(1.05, 10)}, "separated": {"kmeans": _run(1.0, 0)}}}
    after["runs"]["personas"]["kmeans"]["lenses"]["value"].update(
        nearest_sse_ratio=1.004, nearest_ari_vs_batch=0.9, converged_sse_ratio=1.0, converged_ari_vs_batch=0.98
    )
    before = {"runs": {"personas": {"kmeans": _run(1.27, 10)}}}  # measured before the decomposition existed
    lines = targets_table(after, before)
    assert len(lines) == 2 + 4
    assert lines[2] == ("| personas | kmeans | value | 1.27 > 1.05 | 0.80 > 0.80 | 0.50% > 0.50% | 6/4 > 6/4 | "
                        "0.93 > 0.93 | 12.0 > 12.0 | - > 1.00 | - > 0.90 | - > 1.00 | - > 0.98 | 75% > 75% | "
                        "2.5 > 2.5 |")  # fmt: skip
    assert "| 1.00 | 0.80 | 0.50% | 6/4 | - | 12.0 | - | - | - | - | - | - |" in lines[5]  # no before, rules, drift


def test_center_metrics_measure_the_centers_without_the_move_rule() -> None:
    lens = make_lens("kmeans")
    X, _ = blobs(2000, seed=2)
    feed(lens, X)
    lens.refine(X)
    held: list[str | None] = ["held"] * len(X)  # one held label for everyone: only k comes from the labels
    held[:3] = ["a", "b", "c"]
    good = center_metrics(list(FEATURES), X, held, lens)
    assert good["nearest_sse_ratio"] < 1.01 and good["nearest_ari_vs_batch"] > 0.99
    live, snap = lens.registry.live(), lens.snapshot
    assert snap is not None
    two_on_one = np.array([BLOBS[0], BLOBS[0] + 0.3, BLOBS[1], (BLOBS[2] + BLOBS[3]) / 2])
    lens.registry.set_centers(live, snap.scale_matrix(two_on_one), snap, merge_within=0.0)
    bad = center_metrics(list(FEATURES), X, held, lens)
    assert bad["nearest_sse_ratio"] > 1.3 and bad["nearest_ari_vs_batch"] < 0.9
    assert bad["converged_sse_ratio"] < bad["nearest_sse_ratio"]  # Lloyd from them improves, to a local optimum


def test_target_rows_report_the_worst_run_of_each_scenario() -> None:
    personas = {"clustream": _run(1.12, 10), "kmeans": _run(1.05, 10)}
    personas["clustream"]["lenses"]["engagement"]["np_ari_vs_batch"] = 0.7
    personas["clustream"]["lenses"]["value"]["born_bound_ok"] = False
    personas["kmeans"]["drift"] = {"drifted": 10, "followed_share": 0.9, "median_days": float("nan")}
    separated = {"kmeans": _run(1.0, 0)}
    for run in (*personas.values(), *separated.values()):
        for v in run["lenses"].values():
            v.setdefault("born_bound_ok", True)
    rows = {(r.section.split("(")[-1].rstrip(")"), r.metric): r for r in target_rows(
        {"personas": personas, "separated": separated})}  # fmt: skip
    sse = rows[("personas", "SSE / batch SSE, worst")]
    assert (sse.measured, sse.passed, sse.note) == (1.12, False, "clustream/value")
    ari = rows[("personas", "ARI vs batch, worst")]
    assert (ari.measured, ari.passed, ari.note) == (0.7, False, "clustream/engagement")
    born = rows[("personas", "lenses with segments born > 2 x live + 2")]
    assert (born.measured, born.passed, born.note) == (1.0, False, "clustream/value")
    followed = rows[("personas", "drift followed, lowest")]
    assert (followed.measured, followed.passed, followed.note) == (0.75, False, "clustream, of 10 drifts")
    slow = rows[("personas", "drift followed: median delay, slowest")]
    assert slow.note == "kmeans" and slow.passed is False  # no median measured is the slowest, and a miss
    assert rows[("separated", "rule fidelity, lowest")].passed is True
    assert rows[("separated", "SSE / batch SSE, worst")].passed is True
    assert ("separated", "drift followed, lowest") not in rows and ("personas", "rule fidelity, lowest") not in rows


def test_hold_reason_names_the_part_of_the_move_rule_that_holds() -> None:
    lens = make_lens("kmeans", min_dwell=6, min_dwell_days=2.0, min_dwell_hours=168.0)
    rule, day = lens.rule, 86_400
    assert hold_reason(rule, dwell=2, age=day, back=True) == "dwell"  # few events, not 2 days in it yet
    assert hold_reason(rule, dwell=2, age=3 * day, back=True) == "return"  # 2 days count as the events
    assert hold_reason(rule, dwell=9, age=6 * day, back=True) == "return"  # a move back within a week
    assert hold_reason(rule, dwell=9, age=8 * day, back=True) == "margin"
    assert hold_reason(rule, dwell=9, age=day, back=False) == "margin"  # onwards: no return rule


def test_held_metrics_take_the_held_labels_gap_apart_by_reason() -> None:
    lens = make_lens("kmeans")
    X, _ = blobs(2000, seed=2)
    feed(lens, X)
    lens.refine(X)
    nearest_ids = [lens.ref(lens.assign(x, current=None, dwell=0).nearest or 0).id for x in X]
    ids = sorted(set(nearest_ids))
    held: list[str | None] = list(nearest_ids)
    reasons: list[str | None] = [None] * len(X)
    for i in range(0, 200, 2):  # 100 customers held in the next segment: 60 by the return rule, 40 by the margin
        held[i] = ids[(ids.index(nearest_ids[i]) + 1) % len(ids)]
        reasons[i] = "return" if i < 120 else "margin"
    out = held_metrics(list(FEATURES), X, held, nearest_ids, reasons, lens)
    with_holds = lens_metrics(list(FEATURES), X, held, lens)["sse_ratio"]
    assert out["held_away"] == 100 / 2000 and out["held_away_return"] == 60 / 2000 and out["held_away_dwell"] == 0.0
    assert out["sse_ratio_without_holds"] < 1.01 < out["sse_ratio_without_margin"]
    assert out["sse_ratio_without_holds"] < out["sse_ratio_without_return"] < out["sse_ratio_without_margin"]
    assert out["sse_ratio_without_dwell"] == with_holds > out["sse_ratio_without_margin"]
