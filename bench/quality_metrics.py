"""The yardstick measures of issue 13 for ``bench/quality.py``: SSE ratio and ARI against batch k-means.

Batch k-means is the product's own numpy implementation
(:func:`segmenter.lenses.lloyd.batch_kmeans`, greedy k-means++, ``n_init=10``) at
the lens's final number of segments, on the final features in the lens's space
(:func:`segmenter.evaluation.lens_space`). Also the segment rules' fidelity
when the lens has rules (:attr:`segmenter.lenses.lens.Lens.rules`).

Targets: SSE <= 1.10 x batch, ARI vs batch >= 0.8, segments ever born <= 2 x live + 2,
rule fidelity >= 0.9 on the separated scenario.

``python -m bench.quality_metrics bench/out/quality.json [BEFORE.json]`` prints those measures as one
table (:func:`targets_table`), before and after side by side when given two results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from segmenter.evaluation import EvaluationOptions, evaluate_lens

SSE_TARGET = 1.10
ARI_TARGET = 0.8
FIDELITY_TARGET = 0.9


def lens_metrics(features: list[str], raw: np.ndarray, labels: list[str | None], lens: Any) -> dict[str, Any]:
    """SSE ratio, ARI vs batch, silhouette and the churn bound of one lens at the end of a run."""
    ev = evaluate_lens(lens.name, features, raw, labels, EvaluationOptions(k_range=(2, 1), seed=0))
    live = len(lens.registry.live())
    ever = len(lens.registry.segments)
    out: dict[str, Any] = {
        "sse_ratio": ev.sse_ratio,
        "np_ari_vs_batch": ev.ari_vs_batch,
        "silhouette": ev.silhouette,
        "born_bound_ok": ever <= 2 * live + 2,
    }
    rules = lens.rules
    if rules:
        out["rule_fidelity"] = min(r.fidelity for r in rules.values())
        out["rules"] = {f"{lens.name}-{n}": r.as_dict() for n, r in rules.items()}
    return out


def _cells(run: dict[str, Any], lens: str) -> list[str]:
    """One lens of one run as table cells: SSE ratio, ARI vs batch, 7-day reversals, born/live, fidelity, moves."""
    v = run["lenses"][lens]
    fid = v.get("rule_fidelity")
    return [
        f"{v['sse_ratio']:.2f}",
        f"{v['np_ari_vs_batch']:.2f}",
        f"{100 * v['reversal_rate_7d']:.2f}%",
        f"{v['segments_ever']}/{v['live_segments']}",
        "-" if fid is None else f"{fid:.2f}",
        f"{v['moves_per_1k_events']:.1f}",
    ]


def _drift_cells(run: dict[str, Any]) -> list[str]:
    """Share of drifts followed and their median delay in days (``-``: the scenario has no drift)."""
    drift = run["drift"]
    if not drift["drifted"]:
        return ["-", "-"]
    return [f"{100 * drift['followed_share']:.0f}%", f"{drift['median_days']:.1f}"]


def targets_table(after: dict[str, Any], before: dict[str, Any] | None = None) -> list[str]:
    """The issue-13 targets of a ``bench/quality.py`` result per scenario, algorithm and lens (``before -> after``).

    ``after`` and ``before`` are the ``data`` of two ``quality.json`` files; cells show ``before > after``
    where both have the run. Columns: SSE / batch SSE, ARI vs batch, 7-day reversal rate, segments born /
    live, the lowest rule fidelity, moves per 1,000 events, and per run the share of drifts followed
    and their median delay in days.
    """
    head = ["scenario", "algorithm", "lens", "SSE/batch", "ARI/batch", "rev 7d", "born/live", "fidelity",
            "moves/1k", "drift followed", "median d"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario, runs in after["runs"].items():
        for algorithm, run in runs.items():
            old = (before or {}).get("runs", {}).get(scenario, {}).get(algorithm)
            drift = _drift_cells(run)
            if old is not None:
                was = _drift_cells(old)
                drift = [f"{a} > {b}" for a, b in zip(was, drift, strict=True)]
            for lens in run["lenses"]:
                cells = _cells(run, lens)
                if old is not None and lens in old["lenses"]:
                    cells = [f"{a} > {b}" for a, b in zip(_cells(old, lens), cells, strict=True)]
                lines.append("| " + " | ".join([scenario, algorithm, lens, *cells, *drift]) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.quality_metrics AFTER.json [BEFORE.json]``: print :func:`targets_table` (markdown)."""
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m bench.quality_metrics AFTER.json [BEFORE.json]", file=sys.stderr)
        return 2
    after = json.loads(Path(args[0]).read_text())["data"]
    before = json.loads(Path(args[1]).read_text())["data"] if len(args) == 2 else None
    print("\n".join(targets_table(after, before)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
