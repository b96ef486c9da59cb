"""The batch explanations (segmenter.explanations) give the plain-Python arithmetic's numbers to the bit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from segmenter.explanations import Explainer, py_dist
from segmenter.lenses import Lens

from .lenses.helpers import blobs, config, feed


def _reference(lens: Lens, raw: list[float], old: int | None, new: int | None) -> dict[str, Any]:
    """The explanation as the per-move Python code computed it (the formula of ``Lens.explain``)."""
    snap = lens.snapshot
    assert snap is not None
    values = list(raw)
    t = [(math.log1p(v) if v >= 0.0 else -math.log1p(-v)) if h else v for v, h in zip(values, snap.heavy, strict=True)]
    x = snap.scale(t)
    segs = lens.registry.segments

    def center(n: int | None) -> list[float] | None:
        return None if n is None or n not in segs else list(snap.scale(segs[n].center))

    c_old, c_new = center(old), center(new)
    top: list[dict[str, Any]] = []
    if c_old is not None or c_new is not None:
        a = c_old if c_old is not None else [0.0] * len(x)
        b = c_new if c_new is not None else [0.0] * len(x)
        contrib = [(xj - aj) ** 2 - (xj - bj) ** 2 for xj, aj, bj in zip(x, a, b, strict=True)]
        order = sorted(range(len(x)), key=contrib.__getitem__, reverse=True)
        chosen = [j for j in order if contrib[j] > 0][:3] or order[:1]
        top = [{"feature": lens.feature_names[j], "value": float(values[j]), "z": x[j], "contribution": contrib[j]}
               for j in chosen]  # fmt: skip
    runner, d_runner = None, None
    live, centers, *_ = lens.kernel_view()
    for number, c in zip(live, centers, strict=True):
        if number == new:
            continue
        d = math.dist(x, c)
        if d_runner is None or d < d_runner:
            runner, d_runner = number, d
    return {
        "top_features": top,
        "distance_to_old": None if c_old is None else math.dist(x, c_old),
        "distance_to_new": None if c_new is None else math.dist(x, c_new),
        "runner_up": None if runner is None else lens.ref(runner).model_dump(),
        "distance_to_runner_up": d_runner,
    }


@pytest.mark.parametrize("d", [1, 2, 3, 5, 14])
@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_py_dist_is_math_dist_to_the_bit(d: int, scale: float) -> None:
    rng = np.random.default_rng(d)
    a = rng.normal(0.0, scale, (3000, d))
    b = rng.normal(0.0, scale, (3000, d))
    got = [py_dist(p, q, d) for p, q in zip(a, b, strict=True)]
    want = [math.dist(p, q) for p, q in zip(a.tolist(), b.tolist(), strict=True)]
    assert got == want


def test_py_dist_edge_values() -> None:
    zero = np.zeros(3)
    assert py_dist(zero, zero, 3) == 0.0
    assert math.isinf(py_dist(np.array([math.inf, 0.0, 0.0]), zero, 3))
    assert math.isnan(py_dist(np.array([math.nan, 0.0, 0.0]), zero, 3))


def test_batch_explanations_equal_the_python_arithmetic() -> None:
    lens = Lens(config("kmeans", log_features=["a"]), seed=3)
    X, _ = blobs(800, seed=5)
    feed(lens, np.abs(X))
    lens.refine(np.abs(X))
    assert lens.ready
    numbers = [*lens.registry.segments, None]
    rng = np.random.default_rng(11)
    raw = np.abs(rng.normal(2.0, 3.0, (400, 3)))
    old = [numbers[i] for i in rng.integers(0, len(numbers), 400)]
    new = [numbers[i] for i in rng.integers(0, len(numbers), 400)]
    got = Explainer(lens).explain(raw, [-1 if o is None else o for o in old], [-1 if n is None else n for n in new])
    for row, o, n, ex in zip(raw.tolist(), old, new, got, strict=True):
        assert ex.model_dump() == _reference(lens, row, o, n)
