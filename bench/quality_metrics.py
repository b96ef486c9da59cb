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
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Row
from segmenter.evaluation import N_INIT, EvaluationOptions, evaluate_lens
from segmenter.lenses.hysteresis import RULE_FIELDS
from segmenter.lenses.lloyd import batch_kmeans, lloyd, nearest
from segmenter.lenses.metrics import adjusted_rand, partition_sse

SSE_TARGET = 1.10
ARI_TARGET = 0.8
FIDELITY_TARGET = 0.9
FOLLOWED_TARGET = 0.8
DRIFT_DAYS_TARGET = 3.0


def lens_metrics(features: list[str], raw: np.ndarray, labels: list[str | None], lens: Any) -> dict[str, Any]:
    """SSE ratio, ARI vs batch, silhouette and the churn bound of one lens at the end of a run."""
    heavy = lens.config.heavy_features  # the lens's own space (its config's log_features)
    ev = evaluate_lens(lens.name, features, raw, labels, EvaluationOptions(heavy=heavy, k_range=(2, 1), seed=0))
    live = len(lens.registry.live())
    ever = len(lens.registry.segments)
    out: dict[str, Any] = {
        "sse_ratio": ev.sse_ratio,
        "np_ari_vs_batch": ev.ari_vs_batch,
        "silhouette": ev.silhouette,
        "born_bound_ok": ever <= 2 * live + 2,
    }
    out.update(center_metrics(features, raw, labels, lens))
    rules = lens.rules
    if rules:
        out["rule_fidelity"] = min(r.fidelity for r in rules.values())
        out["rules"] = {f"{lens.name}-{n}": r.as_dict() for n, r in rules.items()}
    return out


def center_metrics(features: list[str], raw: np.ndarray, labels: list[str | None], lens: Any) -> dict[str, Any]:
    """The decomposition of the SSE ratio: the lens's centers themselves, without the move rule.

    ``nearest_*``: every customer labelled by its nearest live segment center (the segments'
    centers in the lens's space; no dwell, margin or pending move); ``converged_*``: the same
    after Lloyd from those centers to convergence on the final features (the local optimum the
    centers sit in). Against the same batch k-means as the held labels (same k, same seed). When
    ``nearest`` is near 1.0 and the held labels are not, the move rule keeps customers away from
    their nearest center; when ``nearest`` is near ``converged``, the centers are only stale; when
    ``converged`` is far above 1.0, they sit in a poor local optimum.
    """
    live = lens.registry.live()
    if not live or not len(raw):
        return {}
    heavy = [j for j, f in enumerate(features) if f in lens.config.heavy_features]
    x = np.array(raw, dtype=np.float64, copy=True)
    x[:, heavy] = np.sign(x[:, heavy]) * np.log1p(np.abs(x[:, heavy]))
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xs = (x - mean) / std
    centers = (np.asarray([lens.registry.segments[n].center for n in live], np.float64) - mean) / std
    k = max(1, len({v for v in labels if v is not None}))
    if len(xs) <= k:
        return {}
    _, batch, batch_sse = batch_kmeans(xs, k, np.random.default_rng(0), n_init=N_INIT)
    out: dict[str, Any] = {}
    for kind, cs in (("nearest", centers), ("converged", lloyd(xs, centers, 300, reseed_empty=False)[0])):
        own, _ = nearest(xs, cs)
        out[f"{kind}_sse_ratio"] = partition_sse(xs, own) / batch_sse if batch_sse > 0 else 1.0
        out[f"{kind}_ari_vs_batch"] = adjusted_rand(own, batch)
    return out


HOLD_REASONS = ("dwell", "return", "margin")
"""Why the move rule keeps a customer away from its nearest segment (:func:`hold_reason`)."""


def hold_reason(rule: np.ndarray, *, dwell: int, age: float, back: bool) -> str:
    """Which part of the move rule keeps a customer in its live segment while another one is nearest.

    ``rule`` is the lens's :attr:`~segmenter.lenses.lens.Lens.rule` (:data:`RULE_FIELDS` order), ``dwell``
    and ``age`` the events and event time (seconds) spent in the segment, ``back`` whether the nearest
    one is the segment the customer left for it. ``dwell``: fewer than ``min_dwell`` events and less than
    ``min_dwell_days`` in it; ``return``: a move back within ``min_dwell_hours``; ``margin``: the nearest
    is not closer by the margin (or the return margin) yet and no pending move is due.

    >>> rule = np.array([6, 0.75, 7 * 86400, 7 * 86400, 0.15, 4 * 86400, 1.0, 2 * 86400])
    >>> [hold_reason(rule, dwell=d, age=a, back=b) for d, a, b in ((2, 3600, True), (9, 3600, True), (9, 3600, False))]
    ['dwell', 'return', 'margin']
    """
    if dwell < rule[RULE_FIELDS.index("min_dwell")] and age < rule[RULE_FIELDS.index("dwell_time_s")]:
        return "dwell"
    if back and age < rule[RULE_FIELDS.index("min_dwell_s")]:
        return "return"
    return "margin"


def held_metrics(
    features: list[str],
    raw: np.ndarray,
    labels: list[str | None],
    nearest_ids: Sequence[str | None],
    reasons: Sequence[str | None],
    lens: Any,
) -> dict[str, Any]:
    """The held labels' SSE ratio taken apart by the part of the move rule that holds each customer.

    ``nearest_ids`` is each customer's nearest live segment (id) in the lens's own scaled space, the one the
    move rule judges in (the last refinement's: :meth:`~segmenter.lenses.lens.Lens.assign`), ``reasons`` why the
    rule keeps it in ``labels`` instead (:func:`hold_reason`; ``None``: it holds its nearest, or no segment).
    ``sse_ratio_without_holds`` is close to :func:`center_metrics`'s ``nearest_sse_ratio`` (final z-scores)
    when the last refinement is recent, and may exceed it when it is not. Per reason:
    the share of the customers it holds away from their nearest segment (``held_away_<reason>``) and the
    SSE ratio of the held labels with just those customers at their nearest (``sse_ratio_without_<reason>``;
    ``sse_ratio_without_holds``: all of them). When one reason's ratio falls to the nearest-center one, that
    part of the rule is the whole gap.
    """
    heavy = lens.config.heavy_features
    out: dict[str, Any] = {"held_away": sum(r is not None for r in reasons) / max(1, len(reasons))}
    for reason in (*HOLD_REASONS, None):
        moved = [near if r is not None and (reason is None or r == reason) else held
                 for held, near, r in zip(labels, nearest_ids, reasons, strict=True)]  # fmt: skip
        ev = evaluate_lens(lens.name, features, raw, moved, EvaluationOptions(heavy=heavy, k_range=(2, 1), seed=0))
        out[f"sse_ratio_without_{reason or 'holds'}"] = ev.sse_ratio
        if reason is not None:
            out[f"held_away_{reason}"] = sum(r == reason for r in reasons) / max(1, len(reasons))
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
        *(f"{v[key]:.2f}" if key in v else "-" for key in _DECOMPOSITION),
    ]


_DECOMPOSITION = ("nearest_sse_ratio", "nearest_ari_vs_batch", "converged_sse_ratio", "converged_ari_vs_batch")
"""The :func:`center_metrics` columns of the table (``-`` for results measured before they existed)."""


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
    live, the lowest rule fidelity, moves per 1,000 events, the same SSE ratio and ARI of the
    nearest-center labels and of the converged centers (:func:`center_metrics`), and per run the share
    of drifts followed and their median delay in days.
    """
    head = ["scenario", "algorithm", "lens", "SSE/batch", "ARI/batch", "rev 7d", "born/live", "fidelity",
            "moves/1k", "nearest SSE", "nearest ARI", "converged SSE", "converged ARI", "drift followed",
            "median d"]  # fmt: skip
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


def target_rows(runs: dict[str, dict[str, Any]]) -> list[Row]:
    """The issue-13 targets as results-table rows, one per scenario and measure: the worst run decides.

    ``runs`` is ``quality.json``'s ``data["runs"]`` (scenario -> algorithm -> result). Per scenario, the
    highest SSE ratio and the lowest ARI vs batch over every algorithm and lens, whether every lens kept
    its segments born within ``2 x live + 2``; the lowest rule fidelity on the separated scenario; and on
    a scenario with drift, the lowest share of drifts followed and the slowest median delay. Each row's
    note names the worst run, so a miss says where to look.
    """
    rows: list[Row] = []
    for scenario, by_algorithm in runs.items():
        sect = f"quality: against batch k-means, every algorithm and lens ({scenario})"
        lenses = [(f"{a}/{n}", v) for a, run in by_algorithm.items() for n, v in run["lenses"].items()]
        if not lenses:
            continue
        where, worst = max(lenses, key=lambda item: item[1]["sse_ratio"])
        rows.append(Row(sect, "SSE / batch SSE, worst", worst["sse_ratio"], "", f"<= {SSE_TARGET}",
                        passed=worst["sse_ratio"] <= SSE_TARGET, note=where))  # fmt: skip
        where, worst = min(lenses, key=lambda item: item[1]["np_ari_vs_batch"])
        rows.append(Row(sect, "ARI vs batch, worst", worst["np_ari_vs_batch"], "", f">= {ARI_TARGET}",
                        passed=worst["np_ari_vs_batch"] >= ARI_TARGET, note=where))  # fmt: skip
        over = [w for w, v in lenses if not v["born_bound_ok"]]
        rows.append(Row(sect, "lenses with segments born > 2 x live + 2", float(len(over)), "lenses", "== 0",
                        passed=not over, note=", ".join(over) or f"all {len(lenses)} within"))  # fmt: skip
        fidelity = [(w, v["rule_fidelity"]) for w, v in lenses if "rule_fidelity" in v]
        if scenario == "separated" and fidelity:
            where, low = min(fidelity, key=lambda item: item[1])
            rows.append(Row(sect, "rule fidelity, lowest", low, "", f">= {FIDELITY_TARGET}",
                            passed=low >= FIDELITY_TARGET, note=where))  # fmt: skip
        rows += _drift_rows(sect, by_algorithm)
    return rows


def _drift_rows(sect: str, by_algorithm: dict[str, Any]) -> list[Row]:
    """Drift following of a scenario with drift: the lowest share followed and the slowest median."""
    drifts = [(a, run["drift"]) for a, run in by_algorithm.items() if run["drift"]["drifted"]]
    if not drifts:
        return []
    where, low = min(drifts, key=lambda item: item[1]["followed_share"])
    slow_where, slow = max(drifts, key=lambda item: _nan_last(item[1]["median_days"]))
    return [
        Row(sect, "drift followed, lowest", low["followed_share"], "share", f">= {FOLLOWED_TARGET}",
            passed=low["followed_share"] >= FOLLOWED_TARGET, note=f"{where}, of {low['drifted']} drifts{_end(low)}"),
        Row(sect, "drift followed: median delay, slowest", slow["median_days"], "days", f"<= {DRIFT_DAYS_TARGET}",
            passed=slow["median_days"] <= DRIFT_DAYS_TARGET, note=slow_where),
    ]  # fmt: skip


def _end(drift: dict[str, Any]) -> str:
    """``; at the end X% (batch k-means on the same features Y%)`` when the run measured it."""
    end = drift.get("at_end")
    if end is None:
        return ""
    return f"; at the end {100 * end['ours']:.0f}% (batch k-means on the same features {100 * end['batch']:.0f}%)"


def _nan_last(days: float) -> float:
    """A median delay for ``max``: none measured (NaN, no drift followed) is the slowest."""
    return math.inf if math.isnan(days) else days


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
