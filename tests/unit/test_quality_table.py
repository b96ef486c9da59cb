"""bench.quality_metrics.targets_table: the issue-13 measures of a quality result, before > after."""

from __future__ import annotations

from typing import Any

from bench.quality_metrics import targets_table


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
