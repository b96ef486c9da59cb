"""Segment rules: a shallow decision-tree surrogate per segment, read as one rule in original units.

For each segment a depth-limited CART tree (numpy, Gini impurity, thresholds
at feature quantiles) separates its members from everyone else; the leaf
that best describes the members (members and non-members weigh alike in the
splits; the leaf with the highest fidelity, the smaller of its two shares)
gives the rule, the conjunction of the conditions on its path, e.g.
``recency_days > 92 and net_spend < 40``; each of its thresholds is then
tuned (or the condition dropped) where that raises the fidelity. Thresholds are
rounded to two significant digits, and the rule's *fidelity* is measured
with the rounded thresholds: the share of the segment's members it matches,
and the share of non-members it excludes.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.column_stack([rng.uniform(0, 200, 2000), rng.uniform(0, 100, 2000)])
>>> members = (x[:, 0] > 92) & (x[:, 1] < 40)
>>> rule = fit_rule(x, members, ("recency_days", "net_spend"))
>>> rule.text
'net_spend <= 40 and recency_days > 92'
>>> rule.members_matched > 0.95 and rule.non_members_excluded > 0.95
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_DEPTH", "SegmentRule", "fit_rule", "fit_rules"]

logger = logging.getLogger(__name__)

MAX_DEPTH = 3
QUANTILES = 32
"""Candidate thresholds per feature and node (its quantiles)."""
MIN_LEAF = 5
FIT_SAMPLE = 4_000
"""Rows a rule is fitted and measured on (a deterministic sample of larger populations).

Rules are refitted at every refinement (weekly in event time by default): on a 20,000-customer sparse replay,
fitting on up to 20,000 rows took 9 of its 13 s of CPU. A depth-3 rule's fidelity measured on 4,000 rows has
a standard error of about half a percentage point."""


@dataclass(frozen=True)
class SegmentRule:
    """A segment's rule and its fidelity.

    Attributes
    ----------
    conditions
        ``(feature, op, threshold)`` with ``op`` ``">"`` or ``"<="``, in original units.
    members_matched
        Share of the segment's members the rule matches.
    non_members_excluded
        Share of the other customers the rule excludes.
    """

    conditions: tuple[tuple[str, str, float], ...]
    members_matched: float
    non_members_excluded: float

    @property
    def text(self) -> str:
        """The rule in words, e.g. ``recency_days > 92 and net_spend <= 40`` (``everyone`` without conditions)."""
        if not self.conditions:
            return "everyone"
        return " and ".join(f"{f} {op} {_fmt(v)}" for f, op, v in self.conditions)

    @property
    def fidelity(self) -> float:
        """The smaller of the two shares."""
        return min(self.members_matched, self.non_members_excluded)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, the ``rule`` of a lifecycle profile."""
        return {
            "text": self.text,
            "conditions": [{"feature": f, "op": op, "value": v} for f, op, v in self.conditions],
            "fidelity": {
                "members_matched": round(self.members_matched, 4),
                "non_members_excluded": round(self.non_members_excluded, 4),
            },
        }


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _round2(value: float) -> float:
    """Two significant digits (a readable threshold)."""
    if value == 0.0 or not math.isfinite(value):
        return value
    digits = 1 - math.floor(math.log10(abs(value)))
    return round(value, digits)


def _gini(pos: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(total > 0, pos / total, 0.0)
    out: np.ndarray = 2.0 * p * (1.0 - p) * total
    return out


def _gains(sorted_col: np.ndarray, cum_pos: np.ndarray, cum_all: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Weighted Gini decrease of each threshold in ``cuts`` (rows ``<= cut`` go left); -inf where a side is small."""
    n = len(sorted_col)
    left_n = np.searchsorted(sorted_col, cuts, side="right")
    ok = (left_n >= MIN_LEAF) & (n - left_n >= MIN_LEAF)
    lp, lw = cum_pos[left_n], cum_all[left_n]
    rp, rw = cum_pos[-1] - lp, cum_all[-1] - lw
    gain = _gini(np.asarray(cum_pos[-1]), np.asarray(cum_all[-1])) - _gini(lp, lw) - _gini(rp, rw)
    return np.where(ok, gain, -np.inf)


def _best_split(x: np.ndarray, y: np.ndarray, sw: np.ndarray) -> tuple[int, float] | None:
    """The (feature, threshold) split of the rows with the largest weighted Gini decrease, or None.

    Weights ``sw`` balance members against non-members (so a split serves both shares of the fidelity).
    Coarse thresholds at :data:`QUANTILES` quantiles, then every midpoint between distinct values within the
    best one's neighbouring quantiles.
    """
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
        lo, hi = cuts[max(i - 1, 0)], cuts[min(i + 1, len(cuts) - 1)]
        window = np.unique(col[(col >= lo) & (col <= hi)])
        if len(window) > 1:
            mids = (window[:-1] + window[1:]) / 2.0
            fine = _gains(col, cum_pos, cum_all, mids)
            f = int(np.argmax(fine))
            if fine[f] >= gain[i]:
                gain, cuts, i = fine, mids, f
        if gain[i] > 1e-12 and (best is None or gain[i] > best[0]):
            best = (float(gain[i]), j, float(cuts[i]))
    return None if best is None else (best[1], best[2])


def _leaves(
    x: np.ndarray, y: np.ndarray, sw: np.ndarray, *, path: tuple[tuple[int, str, float], ...], depth: int
) -> list[tuple[tuple[int, str, float], ...]]:
    """Paths (``(column, op, threshold)``) to the leaves of the tree grown on ``x, y`` (row weights ``sw``)."""
    if depth == 0 or len(y) < 2 * MIN_LEAF or y.all() or not y.any():
        return [path]
    split = _best_split(x, y, sw)
    if split is None:
        return [path]
    j, cut = split
    left = x[:, j] <= cut
    low = _leaves(x[left], y[left], sw[left], path=(*path, (j, "<=", cut)), depth=depth - 1)
    high = _leaves(x[~left], y[~left], sw[~left], path=(*path, (j, ">", cut)), depth=depth - 1)
    return low + high


def _simplify(path: Sequence[tuple[str, str, float]]) -> tuple[tuple[str, str, float], ...]:
    """One bound per feature and direction (the tightest), thresholds rounded, in feature order of appearance."""
    bounds: dict[tuple[str, str], float] = {}
    for f, op, raw in path:
        key = (f, op)
        v = _round2(raw)
        bounds[key] = v if key not in bounds else (max(bounds[key], v) if op == ">" else min(bounds[key], v))
    return tuple((f, op, v) for (f, op), v in bounds.items())


def _matches(x: np.ndarray, names: Sequence[str], conditions: Sequence[tuple[str, str, float]]) -> np.ndarray:
    hit = np.ones(len(x), bool)
    for f, op, v in conditions:
        col = x[:, list(names).index(f)]
        hit &= col > v if op == ">" else col <= v
    return hit


def _measure(
    x: np.ndarray, y: np.ndarray, names: Sequence[str], conditions: tuple[tuple[str, str, float], ...]
) -> SegmentRule | None:
    """The rule with these conditions and its fidelity on ``x, y`` (None when it matches no member)."""
    hit = _matches(x, names, conditions)
    n_in, n_out = int(y.sum()), int((~y).sum())
    inside = int((hit & y).sum())
    if not inside:
        return None
    excluded = 1.0 - int((hit & ~y).sum()) / n_out if n_out else 1.0
    return SegmentRule(conditions, inside / n_in if n_in else 1.0, excluded)


def _tune(
    x: np.ndarray, y: np.ndarray, names: Sequence[str], conditions: tuple[tuple[str, str, float], ...]
) -> SegmentRule | None:
    """Coordinate search: each threshold over its feature's quantiles (or dropped), kept where fidelity rises."""
    best = _measure(x, y, names, conditions)
    if best is None:
        return None
    for _ in range(2):
        for i, (f, op, _v) in enumerate(best.conditions):
            col = x[:, list(names).index(f)]
            base = best.conditions[:i] + best.conditions[i + 1 :]
            cuts = [_round2(q) for q in np.unique(np.quantile(col, np.linspace(0.0, 1.0, 2 * QUANTILES + 1))).tolist()]
            options = [base] + [(*best.conditions[:i], (f, op, c), *best.conditions[i + 1 :]) for c in cuts]
            for cand, shares in zip(options, _shares(x, y, names, base, (col, op, cuts)), strict=True):
                if shares is None:
                    continue
                rule = SegmentRule(cand, *shares)
                if (rule.fidelity, -len(cand)) > (best.fidelity, -len(best.conditions)):
                    best = rule
            if i >= len(best.conditions) - 1:
                break
    return best


def _shares(
    x: np.ndarray,
    y: np.ndarray,
    names: Sequence[str],
    base: tuple[tuple[str, str, float], ...],
    cut: tuple[np.ndarray, str, list[float]],
) -> list[tuple[float, float] | None]:
    """:func:`_measure`'s two shares for ``base`` alone, then for ``base`` and ``col op c`` for each ``c`` of ``cut``.

    ``None`` where the conditions match no member. One boolean matrix for every threshold at once, the same
    counts and divisions as :func:`_measure` (its results, bit for bit, for a fraction of the calls).
    """
    col, op, cuts = cut
    rest = _matches(x, names, base)
    values = np.asarray(cuts, np.float64)
    side = col[:, None] > values[None, :] if op == ">" else col[:, None] <= values[None, :]
    hits = np.concatenate([rest[:, None], rest[:, None] & side], axis=1)
    inside = (hits & y[:, None]).sum(axis=0).tolist()
    outside = (hits & ~y[:, None]).sum(axis=0).tolist()
    n_in, n_out = int(y.sum()), int((~y).sum())
    return [
        (n_hit / n_in if n_in else 1.0, 1.0 - n_miss / n_out if n_out else 1.0) if n_hit else None
        for n_hit, n_miss in zip(inside, outside, strict=True)
    ]


def fit_rule(x: np.ndarray, members: np.ndarray, names: Sequence[str], depth: int = MAX_DEPTH) -> SegmentRule:
    """The rule of one segment: ``members`` marks its rows of ``x`` (original units, columns ``names``)."""
    y = np.asarray(members, bool)
    n_in, n_out = int(y.sum()), int((~y).sum())
    sw = np.where(y, 0.5 / max(n_in, 1), 0.5 / max(n_out, 1))
    best: SegmentRule | None = None
    for path in _leaves(x, y.astype(np.float64), sw, path=(), depth=depth):
        rule = _measure(x, y, names, _simplify([(names[j], op, cut) for j, op, cut in path]))
        if rule is None:
            continue
        if best is None or (rule.fidelity, rule.members_matched) > (best.fidelity, best.members_matched):
            best = rule
    if best is None:
        return SegmentRule((), 1.0, 0.0 if n_out else 1.0)
    return _tune(x, y, names, best.conditions) or best


def fit_sample(
    x: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The rows rules are fitted on: all of ``x`` and ``labels``, or a sample of :data:`FIT_SAMPLE` of them."""
    if len(x) > FIT_SAMPLE:
        idx = np.sort(rng.choice(len(x), FIT_SAMPLE, replace=False))
        return x[idx], labels[idx]
    return x, labels


def fit_each(x: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[int, SegmentRule]:
    """A rule per label (segment number) present in ``labels``, fitted on every row given."""
    return {int(n): fit_rule(x, labels == n, names) for n in np.unique(labels).tolist()}


def fit_rules(
    x: np.ndarray, labels: np.ndarray, names: Sequence[str], rng: np.random.Generator
) -> dict[int, SegmentRule]:
    """A rule per label (segment number) present in ``labels``, on a sample of at most :data:`FIT_SAMPLE` rows."""
    return fit_each(*fit_sample(x, labels, rng), names)
