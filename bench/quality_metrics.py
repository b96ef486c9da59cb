"""The yardstick measures of issue 13 for ``bench/quality.py``: SSE ratio and ARI against batch k-means.

Batch k-means is the product's own numpy implementation
(:func:`segmenter.lenses.lloyd.batch_kmeans`, greedy k-means++, ``n_init=10``) at
the lens's final number of segments, on the final features in the lens's space
(:func:`segmenter.evaluation.lens_space`). Also the segment rules' fidelity
when the lens has rules (:attr:`segmenter.lenses.lens.Lens.rules`).

Targets: SSE <= 1.10 x batch, ARI vs batch >= 0.8, segments ever born <= 2 x live + 2,
rule fidelity >= 0.9 on the separated scenario.
"""

from __future__ import annotations

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
