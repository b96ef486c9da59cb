"""The evaluation step: how good a lens's segments are, against the batch optimum on the same features.

The yardstick is the seed's own method: batch k-means (greedy k-means++, best
of ``n_init = 10``) at the same ``k`` on the same features in the lens's space
(signed ``log1p`` on heavy-tailed features, then standardised over the
customers evaluated). Per lens, :func:`evaluate_lens` measures

* ``sse_ratio``: the segments' within-segment SSE over batch k-means's (1.0 is
  the batch optimum; lower than 1 is possible, k-means is a local optimum);
* ``ari_vs_batch``: adjusted Rand index of the segments against batch k-means;
* ``silhouette`` (sampled, seeded) and ``davies_bouldin`` of the segments;
* ``stability``: mean ARI of batch k-means refitted on bootstrap resamples
  against batch k-means on everyone (how reproducible a k-segment split of
  these customers is);
* a ``sweep`` of batch k-means over a range of ``k`` with a ``suggested_k``
  (highest silhouette; ties: smaller k);
* ``rules``: per segment a rule in original units with its fidelity (a
  depth-3 decision-tree surrogate, :func:`~segmenter.lenses.surrogate.fit_rules`);
* ``purity`` and ``ari_vs_truth`` against a truth file (the simulator's
  ``--truth`` timeline: the last persona per customer).

Input is the ``segmenter replay --snapshot`` JSONL; :func:`parse_snapshot`
reports a bad line as ``FILE:LINE: what is wrong``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.vstack([rng.normal(0, 0.1, (50, 2)), rng.normal(3, 0.1, (50, 2))])
>>> labels = np.repeat(["a", "b"], 50)
>>> ev = evaluate_lens("demo", ("u", "v"), x, labels, EvaluationOptions(heavy=(), k_range=(2, 3), seed=1))
>>> round(ev.sse_ratio, 3), ev.ari_vs_batch, ev.suggested_k
(1.0, 1.0, 2)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from segmenter.errors import SegmenterError
from segmenter.lenses.lloyd import batch_kmeans, nearest
from segmenter.lenses.metrics import adjusted_rand, davies_bouldin, partition_sse, purity, silhouette
from segmenter.lenses.scaling import HEAVY_TAILED
from segmenter.lenses.surrogate import fit_rules

__all__ = [
    "EvaluationInputError",
    "EvaluationOptions",
    "KPoint",
    "LensData",
    "LensEvaluation",
    "evaluate_lens",
    "evaluate_lenses",
    "lens_space",
    "parse_k_range",
    "parse_snapshot",
    "parse_truth",
    "segment_rules",
]

logger = logging.getLogger(__name__)

N_INIT = 10
"""Batch k-means restarts (the yardstick's)."""
SILHOUETTE_SAMPLE = 2000
BOOTSTRAPS = 10
BOOTSTRAP_N_INIT = 3


class EvaluationInputError(SegmenterError):
    """A snapshot or truth file cannot be evaluated; the message names the file and line."""


@dataclass(frozen=True)
class KPoint:
    """Batch k-means at one ``k`` of the sweep."""

    k: int
    sse: float
    silhouette: float
    davies_bouldin: float


@dataclass(frozen=True)
class LensEvaluation:
    """The evaluation of one lens (see the module docstring for each measure)."""

    lens: str
    customers: int
    unassigned: int
    k: int
    sse: float
    batch_sse: float
    sse_ratio: float
    ari_vs_batch: float
    silhouette: float
    davies_bouldin: float
    batch_silhouette: float
    stability: float
    sweep: list[KPoint] = field(default_factory=list)
    suggested_k: int | None = None
    criterion: str = "silhouette"
    purity: float | None = None
    ari_vs_truth: float | None = None
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Segment id -> its rule in original units with its fidelity (:mod:`segmenter.lenses.surrogate`)."""

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes null)."""
        out: dict[str, Any] = _clean(asdict(self))
        return out


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def lens_space(raw: np.ndarray, heavy: Sequence[int]) -> np.ndarray:
    """The lens's space: signed ``log1p`` on the ``heavy`` columns, then z-scores over the rows (std 0 -> 1)."""
    x = np.array(raw, dtype=np.float64, copy=True)
    if len(heavy):
        h = list(heavy)
        x[:, h] = np.sign(x[:, h]) * np.log1p(np.abs(x[:, h]))
    if not len(x):
        return x
    std = x.std(axis=0)
    out: np.ndarray = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return out


def parse_k_range(text: str) -> tuple[int, int]:
    """``"2..10"`` -> ``(2, 10)``; ValueError unless ``2 <= low <= high``."""
    low, sep, high = text.partition("..")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise ValueError(f"--k-range: expected LOW..HIGH such as 2..10, got {text!r}") from None
    if not sep or lo < 2 or hi < lo:
        raise ValueError(f"--k-range: expected 2 <= LOW <= HIGH such as 2..10, got {text!r}")
    return lo, hi


def _stability(x: np.ndarray, k: int, reference: np.ndarray, rng: np.random.Generator) -> float:
    """Mean ARI against ``reference`` of batch k-means refitted on bootstrap resamples (labels for every row)."""
    scores = []
    for _ in range(BOOTSTRAPS):
        idx = rng.integers(0, len(x), len(x))
        centers, _, _ = batch_kmeans(x[idx], k, rng, n_init=BOOTSTRAP_N_INIT)
        scores.append(adjusted_rand(nearest(x, centers)[0], reference))
    return float(np.mean(scores))


def _truth_measures(
    lab: np.ndarray, assigned: np.ndarray, truth: Sequence[str | None] | None
) -> tuple[float | None, float | None]:
    """Purity and ARI of the assigned segments against the true classes, over the rows whose class is known."""
    if truth is None:
        return None, None
    known = np.asarray([t is not None for t in truth]) & assigned
    if not known.any():
        return None, None
    tl = [str(t) for t, ok in zip(truth, known.tolist(), strict=True) if ok]
    return purity(lab[known], tl), adjusted_rand(lab[known], tl)


def _sweep(x: np.ndarray, k_range: tuple[int, int], rng: np.random.Generator) -> list[KPoint]:
    out = []
    for k in range(k_range[0], min(k_range[1], len(x) - 1) + 1):
        _, labels, inertia = batch_kmeans(x, k, rng, n_init=N_INIT)
        out.append(KPoint(k, inertia, silhouette(x, labels, SILHOUETTE_SAMPLE, rng), davies_bouldin(x, labels)))
    return out


@dataclass(frozen=True)
class EvaluationOptions:
    """How :func:`evaluate_lens` measures: the feature transform, the reference partition, the k sweep, the seed."""

    heavy: Iterable[str] | None = None
    """Heavy-tailed features (log1p); default those of the core's :data:`HEAVY_TAILED`."""
    truth: Sequence[str | None] | None = None
    """Per row the true class (``None``: unknown); purity and ARI are computed over known rows."""
    k_range: tuple[int, int] = (2, 10)
    """The k sweep (inclusive)."""
    seed: int = 0


def evaluate_lens(
    lens: str,
    features: Sequence[str],
    raw: np.ndarray,
    labels: Sequence[str | None] | np.ndarray,
    options: EvaluationOptions = EvaluationOptions(),
) -> LensEvaluation:
    """Evaluate one lens's segments ``labels`` (``None``: unassigned) of customers with features ``raw``.

    Parameters
    ----------
    lens, features
        The lens's name and feature names (columns of ``raw``, original units).
    options
        The feature transform, the true classes, the k sweep and the seed.
    """
    heavy, k_range = options.heavy, options.k_range
    heavy_set = HEAVY_TAILED if heavy is None else frozenset(heavy)
    x = lens_space(np.asarray(raw, np.float64), [j for j, f in enumerate(features) if f in heavy_set])
    lab = np.asarray(["" if v is None else str(v) for v in labels])
    assigned = lab != ""
    k = max(1, len(set(lab[assigned].tolist())))
    rng = np.random.default_rng(options.seed)
    n = len(x)
    sse = partition_sse(x[assigned], lab[assigned])
    if n > k:
        _, batch_labels, batch_sse = batch_kmeans(x, k, rng, n_init=N_INIT)
    else:
        batch_labels, batch_sse = np.arange(n), 0.0
    # unassigned customers count in the batch SSE but not in the segments'; compare like with like
    batch_on_assigned = partition_sse(x[assigned], batch_labels[assigned])
    ev_truth_purity, ev_truth_ari = _truth_measures(lab, assigned, options.truth)
    sweep = _sweep(x, k_range, rng) if n > k_range[0] else []
    rules = segment_rules(features, np.asarray(raw, np.float64), labels, rng)
    scored = [p for p in sweep if not math.isnan(p.silhouette)]
    suggested = max(scored, key=lambda p: (p.silhouette, -p.k)).k if scored else None
    return LensEvaluation(
        lens=lens,
        customers=n,
        unassigned=int((~assigned).sum()),
        k=k,
        sse=sse,
        batch_sse=batch_sse,
        sse_ratio=sse / batch_on_assigned if batch_on_assigned > 0 else (1.0 if sse == 0 else math.inf),
        ari_vs_batch=adjusted_rand(lab[assigned], batch_labels[assigned]),
        silhouette=silhouette(x[assigned], lab[assigned], SILHOUETTE_SAMPLE, rng),
        davies_bouldin=davies_bouldin(x[assigned], lab[assigned]),
        batch_silhouette=silhouette(x, batch_labels, SILHOUETTE_SAMPLE, rng),
        stability=_stability(x, k, batch_labels, rng) if n > k else 1.0,
        sweep=sweep,
        suggested_k=suggested,
        purity=ev_truth_purity,
        ari_vs_truth=ev_truth_ari,
        rules=rules,
    )


def segment_rules(
    features: Sequence[str],
    raw: np.ndarray,
    labels: Sequence[str | None] | np.ndarray,
    rng: np.random.Generator,
) -> dict[str, dict[str, Any]]:
    """Segment id -> its rule (:meth:`SegmentRule.as_dict`) for the assigned rows of ``raw`` (original units)."""
    lab = np.asarray(["" if v is None else str(v) for v in labels])
    assigned = lab != ""
    segment_ids = sorted(set(lab[assigned].tolist()))
    if not segment_ids:
        return {}
    codes = np.searchsorted(np.asarray(segment_ids), lab[assigned])
    fitted = fit_rules(raw[assigned], codes, features, rng)
    return {segment_ids[c]: r.as_dict() for c, r in fitted.items()}


# ------------------------------------------------------------------------------------ input files


@dataclass
class LensData:
    """One lens's columns of a snapshot."""

    features: tuple[str, ...]
    rows: list[list[float]] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    heavy: frozenset[str] | None = None
    """The features that get ``log1p`` (the lens config's ``heavy_features``); ``None``: :data:`HEAVY_TAILED`."""


def _snapshot_line(rec: Any, lenses: dict[str, LensData]) -> None:
    """Add one parsed snapshot line to ``lenses`` (ValueError/KeyError/TypeError on a malformed one)."""
    if not isinstance(rec, dict) or not isinstance(rec["customer_id"], str):
        raise ValueError("expected an object with a string customer_id")
    segments, features = rec["segments"], rec["features"]
    if not isinstance(segments, dict) or not isinstance(features, dict):
        raise ValueError("segments and features must be objects")
    if lenses and set(features) != set(lenses):
        raise ValueError(f"lenses {sorted(features)} differ from earlier lines' {sorted(lenses)}")
    for lens, values in features.items():
        if not isinstance(values, dict):
            raise ValueError(f"features.{lens} must be an object")
        data = lenses.get(lens)
        if data is None:
            data = lenses[lens] = LensData(tuple(values))
        if tuple(values) != data.features:
            raise ValueError(
                f"features.{lens}: features {list(values)} differ from earlier lines' {list(data.features)}"
            )
        row = [float(v) for v in values.values()]
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"features.{lens}: a value is not finite")
        ref = segments.get(lens)
        data.rows.append(row)
        data.labels.append(None if ref is None else str(ref["id"]))
        if ref is not None:
            data.names[str(ref["id"])] = str(ref["name"])


def parse_snapshot(data: bytes, source: str) -> tuple[list[str], dict[str, LensData]]:
    """Customer ids and per-lens data of ``segmenter replay --snapshot`` lines (``source`` names the file).

    Raises
    ------
    EvaluationInputError
        A line is not a snapshot line (``SOURCE:LINE: reason``), or there is no customer.
    """
    ids: list[str] = []
    lenses: dict[str, LensData] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            _snapshot_line(rec, lenses)
        except orjson.JSONDecodeError as exc:
            raise EvaluationInputError(
                f"{source}:{lineno}: not JSON ({exc}); expected a replay --snapshot line"
            ) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationInputError(
                f"{source}:{lineno}: not a replay --snapshot line ({type(exc).__name__}: {exc}); "
                'expected {"customer_id", "segments", "features"}'
            ) from None
        ids.append(rec["customer_id"])
    if not ids:
        raise EvaluationInputError(f"{source}: no customers; pass the file written by segmenter replay --snapshot")
    return ids, lenses


def parse_truth(data: bytes, source: str) -> dict[str, str]:
    """Each customer's last persona in a simulator ``--truth`` JSONL (``customer_id, persona, from, cause``).

    Raises
    ------
    EvaluationInputError
        A line is malformed (``SOURCE:LINE: reason``).
    """
    latest: dict[str, tuple[str, str]] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
            cid, persona, start = str(rec["customer_id"]), str(rec["persona"]), str(rec["from"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise EvaluationInputError(
                f'{source}:{lineno}: not a truth line ({exc}); expected {{"customer_id", "persona", "from"}}'
            ) from None
        prev = latest.get(cid)
        if prev is None or start >= prev[0]:
            latest[cid] = (start, persona)
    return {cid: persona for cid, (_, persona) in latest.items()}


def evaluate_lenses(
    ids: Sequence[str],
    lenses: dict[str, LensData],
    truth: dict[str, str] | None = None,
    k_range: tuple[int, int] = (2, 10),
    seed: int = 0,
) -> list[LensEvaluation]:
    """:func:`evaluate_lens` for every lens (by name) of parsed snapshot data, each in its own space (its ``heavy``)."""
    per_row = None if truth is None else [truth.get(c) for c in ids]
    out = []
    for name in sorted(lenses):
        data = lenses[name]
        rows = np.asarray(data.rows, np.float64).reshape(len(data.rows), len(data.features))
        options = EvaluationOptions(heavy=data.heavy, truth=per_row, k_range=k_range, seed=seed)
        out.append(evaluate_lens(name, data.features, rows, data.labels, options))
    return out
