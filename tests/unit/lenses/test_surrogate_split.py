"""The compiled split search of the segment rules: numpy's quantiles and Gini gains, step for step."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter.lenses.surrogate import (
    _SPLIT_QUANTILES,
    MIN_LEAF,
    QUANTILES,
    SegmentRule,
    _best_split,
    _columns,
    _measure,
    _quantile_cuts,
    _round2,
    _tune,
    fit_rule,
)


def _gini(pos: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, pos / total, 0.0)
    out: np.ndarray = 2.0 * p * (1.0 - p) * total
    return out


def _gains(col: np.ndarray, cum_pos: np.ndarray, cum_all: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    left_n = np.searchsorted(col, cuts, side="right")
    ok = (left_n >= MIN_LEAF) & (len(col) - left_n >= MIN_LEAF)
    lp, lw = cum_pos[left_n], cum_all[left_n]
    gain = _gini(np.asarray(cum_pos[-1]), np.asarray(cum_all[-1])) - _gini(lp, lw)
    gain = gain - _gini(cum_pos[-1] - lp, cum_all[-1] - lw)
    return np.where(ok, gain, -np.inf)


def _numpy_split(x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[int, float] | None:
    """The split search in plain numpy (a sort per node and column), the readable twin of the compiled one."""
    best: tuple[float, int, float] | None = None
    for j in range(x.shape[1]):
        order = np.argsort(x[:, j], kind="stable")
        col = x[order, j]
        cum_pos = np.concatenate([[0.0], np.cumsum(sw[order] * y[order])])
        cum_all = np.concatenate([[0.0], np.cumsum(sw[order])])
        cuts = np.unique(np.quantile(col, np.linspace(0.0, 1.0, QUANTILES + 2)))
        if len(cuts) < 2:
            continue
        gain = _gains(col, cum_pos, cum_all, cuts)
        i = int(np.argmax(gain))
        window = np.unique(col[(col >= cuts[max(i - 1, 0)]) & (col <= cuts[min(i + 1, len(cuts) - 1)])])
        if len(window) > 1:
            mids = (window[:-1] + window[1:]) / 2.0
            fine = _gains(col, cum_pos, cum_all, mids)
            f = int(np.argmax(fine))
            if fine[f] >= gain[i]:
                gain, cuts, i = fine, mids, f
        if gain[i] > 1e-12 and (best is None or gain[i] > best[0]):
            best = (float(gain[i]), j, float(cuts[i]))
    return None if best is None else (best[1], best[2])


def _data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(12, 3000))
    x = np.column_stack([rng.gamma(1.5, 40.0, n), rng.integers(0, 6, n).astype(float), rng.lognormal(3, 1.2, n)])
    if seed % 2:
        x = np.round(x, 0)  # many ties
    members = (x[:, 0] > 50) & (x[:, 2] < 40) | (rng.random(n) < 0.05)
    return x, members


@pytest.mark.parametrize("seed", range(30))
def test_compiled_split_search_equals_numpy_at_every_node(seed: int) -> None:
    x, members = _data(seed)
    cols = _columns(x)
    y = members.astype(np.float64)
    sw = np.where(members, 0.5 / max(int(members.sum()), 1), 0.5 / max(int((~members).sum()), 1))
    rng = np.random.default_rng(seed + 100)
    masks = [np.ones(len(x), bool), x[:, 0] <= np.median(x[:, 0]), rng.random(len(x)) < 0.3]
    for mask in masks:
        if mask.sum() < 2 * MIN_LEAF:
            continue
        assert _best_split(cols, mask, (y, sw)) == _numpy_split(x[mask], y[mask], sw[mask])


@pytest.mark.parametrize("seed", range(30))
def test_compiled_quantiles_equal_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for size in (int(rng.integers(1, 500)), 33, 65, 129):  # 65 and 129 rows hit interpolation weights of 0.5
        col = np.sort(np.round(rng.lognormal(2.0, 1.5, size), seed % 3))
        for qs in (_SPLIT_QUANTILES, np.linspace(0.0, 1.0, 2 * QUANTILES + 1)):
            out = np.empty(len(qs))
            n = _quantile_cuts(col, qs, out)
            assert out[:n].tolist() == np.unique(np.quantile(col, qs)).tolist()


def test_rules_fitted_alone_or_together_agree() -> None:
    x, members = _data(3)
    cols = _columns(x)
    names = ("recency_days", "orders", "net_spend")
    for m in (members, ~members, x[:, 1] >= 3):
        assert fit_rule(x, m, names) == fit_rule(x, m, names, cols=cols)


def _tune_by_measuring(
    x: np.ndarray, y: np.ndarray, names: tuple[str, ...], conditions: tuple[tuple[str, str, float], ...]
) -> SegmentRule | None:
    """The threshold tuning measuring every candidate rule on its own, the readable twin of :func:`_tune`."""
    best = _measure(x, y, names, conditions)
    if best is None:
        return None
    for _ in range(2):
        for i, (f, op, _v) in enumerate(best.conditions):
            col = x[:, names.index(f)]
            head, tail = best.conditions[:i], best.conditions[i + 1 :]
            qs = np.unique(np.quantile(col, np.linspace(0.0, 1.0, 2 * QUANTILES + 1))).tolist()
            for cand in [head + tail] + [(*head, (f, op, _round2(q)), *tail) for q in qs]:
                rule = _measure(x, y, names, cand)
                if rule is not None and (rule.fidelity, -len(cand)) > (best.fidelity, -len(best.conditions)):
                    best = rule
            if i >= len(best.conditions) - 1:
                break
    return best


@pytest.mark.parametrize("seed", range(20))
def test_threshold_tuning_equals_measuring_each_candidate(seed: int) -> None:
    x, members = _data(seed)
    names = ("recency_days", "orders", "net_spend")
    rng = np.random.default_rng(seed)
    picks = rng.choice(3, size=int(rng.integers(1, 4)), replace=False).tolist()
    conditions = tuple((names[j], str(rng.choice([">", "<="])), float(np.median(x[:, j]))) for j in picks)
    assert _tune(_columns(x), members, names, conditions) == _tune_by_measuring(x, members, names, conditions)


def test_a_threshold_on_whole_numbers_is_a_whole_number_and_matches_the_same_rows() -> None:
    rng = np.random.default_rng(5)
    orders = rng.integers(1, 8, 3000).astype(np.float64)
    spend = rng.uniform(0.0, 1.0, 3000)
    x = np.column_stack([orders, spend])
    members = (orders >= 3) & (spend > 0.37)
    rule = fit_rule(x, members, ("orders", "net_spend"))
    bounds = dict(((f, op), v) for f, op, v in rule.conditions)
    assert bounds[("orders", ">")] == 2.0  # not 2.5: the column holds whole numbers only
    assert abs(bounds[("net_spend", ">")] - 0.37) <= 0.02  # a fractional column keeps its cut (not floored to 0)
    hit = (orders > bounds[("orders", ">")]) & (spend > bounds[("net_spend", ">")])
    assert rule.members_matched == (hit & members).sum() / members.sum()
    assert rule.fidelity > 0.95
