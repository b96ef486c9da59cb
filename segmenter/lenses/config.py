"""``LensConfig``: one named segmentation (features, river algorithm, segment-engine settings).

Validation errors that this module detects itself (unknown algorithm or model
parameter, inconsistent fields) raise :class:`~segmenter.errors.ConfigError`
naming the field; plain type errors are pydantic ``ValidationError``s, which
:func:`parse_lens_config` turns into ``ConfigError`` too. Checking feature names
against the feature catalogue is the top-level config's job.

Examples
--------
>>> cfg = LensConfig(name="value", features=["recency_days", "frequency", "spend"],
...                  algorithm="kmeans", params={"n_clusters": 4})
>>> cfg.max_segments, cfg.margin
(12, 0.25)
>>> try:
...     LensConfig(name="value", features=["spend"], algorithm="kmeans", params={"k": 3})
... except ConfigError as exc:
...     print(str(exc).split(":")[0])
lens 'value', field 'params.k'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from segmenter.errors import ConfigError
from segmenter.lenses.models import ALGORITHMS, Algorithm, n_clusters_of, validate_params
from segmenter.lenses.scaling import HEAVY_TAILED

__all__ = ["LensConfig", "parse_lens_config"]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class LensConfig(BaseModel):
    """Settings of one lens.

    Parameters
    ----------
    name
        Identifier-like (``[a-z][a-z0-9_]*``); segment ids are ``f"{name}-{n}"``.
    features
        Feature names, non-empty and unique; their order is the vector order.
    algorithm
        ``kmeans``, ``streamkmeans``, ``denstream``, ``dbstream`` or ``clustream``.
    params
        River constructor parameters, validated per algorithm (``seed`` is not
        allowed: it derives from the top-level seed and the lens name).
    log_features
        Features that get ``log1p`` before standardising; ``None`` means the
        heavy-tailed ones (:data:`~segmenter.lenses.scaling.HEAVY_TAILED`).
    warmup
        Observations before the lens may become ready (they are buffered and
        learnt at once, with the scaler fitted on all of them). Too few, and the
        first segments are seeded from customers with hardly any history yet
        (engagement ARI 0.56 instead of 0.98 with 200 on the simulator).
    learn_every
        After warm-up, every ``learn_every``-th observation is learnt (a
        deterministic counter-based sample).
    batch_size
        Sampled vectors are buffered and learnt in micro-batches of this size.
    refresh_every
        Learnt samples between two center refreshes (registry matching).
    match_threshold
        Scaled-space distance within which a model center continues a segment.
    retire_after
        Consecutive refreshes a segment may go unmatched before it is retired.
    min_cluster_share
        Model clusters lighter than this share of the total weight are ignored
        (density models produce many tiny clusters).
    max_segments
        Upper bound on live segments.
    margin, min_dwell
        Hysteresis: a customer moves only when the new segment is more than
        ``margin`` (relative) closer and after ``min_dwell`` events in the current one.
        Features such as cart abandonment saw-tooth within a session; with the
        defaults (0.25, 6) segments on the simulator's well-separated patterns
        flap (a move reversed within 5 events) well under 1%, against 10-14%
        with (0.1, 2), at the same ARI (bench/quality.py).
    min_dwell_days
        The ``min_dwell`` count is also met after this long in the current segment (event time),
        whichever comes first, so a quiet customer (re-scored at the inactivity sweeps, or buying
        rarely) can follow the centers onwards; a move back still needs ``min_dwell_hours``. 0
        (unless set): the event count only. The packaged default config sets 2 (bench/quality.py,
        btyd: streamkmeans value SSE 1.18 -> 1.08 x batch k-means, denstream engagement ARI
        0.78 -> 0.81; docs/internals.md, "Dwell in event time").
    min_dwell_hours
        Hysteresis in event time: also at least this long in the current segment before a move back to the
        segment just left (moves onwards need only ``min_dwell`` events). The packaged default config sets 168
        (a move is not undone within a week; bench/quality.py's 7-day reversal rate).
    return_margin, return_window_days
        A move back to the segment just left, within ``return_window_days`` of leaving it, needs
        this (larger) margin instead of ``margin``. Defaults (144 h, 7 days, 0.85) from the share
        of moves reversed within 7 days of event time, value / engagement lens: on a dense simulated
        month (500 customers, ``producer synth --seed 1``) 9.9% / 16.3% with the event count alone,
        0.4% / 0.7% with 48 h, 0.1% / 0.2% with 144 h; on bench/quality.py's ``separated``
        scenario (300 customers, 20 days, kmeans) 0.8% / 23.7% with the count alone, 0% / 8.3%
        with 48 h, 0% / 0.9% with 120 h, 0% / 0% with 144 h.
    pending_move_hours
        A pending move: a customer whose nearest segment has been another one than its own at every
        scoring for this long (event time) moves to it without ``margin`` or ``return_margin`` (the dwell
        rules still hold, so it is not a move back within ``min_dwell_hours``). 0: never (the margin
        alone, main's rule before it). Default 72 from bench/quality.py on every scenario and
        algorithm: against off, the value lens's ARI vs batch k-means on the sparse scenario
        0.82-0.87 -> 0.99, on btyd +0.01 to +0.07; against 96 (with the clock veto and the
        shrinking margin), the worst SSE ratio on personas 1.101 -> 1.097, the slowest median drift
        delay 4.16 -> 3.97 days, the worst btyd ARI 0.802 -> 0.823, moves +1 %, 7-day reversals
        0 % at both (docs/internals.md, "Pending move").
    margin_shrinks
        During a pending move the margin (or ``return_margin``) shrinks linearly from its full value
        to 0 at ``pending_move_hours``, so a customer whose nearest segment is clearly another one
        moves before the hold ends, and one on a boundary still waits (docs/internals.md, "Shrinking
        margin"). No effect with ``pending_move_hours = 0``. Off unless set; the packaged default
        config sets it (bench/quality.py, every algorithm: SSE misses 9 -> 7, no new one, 7-day
        reversals 0 %).
    refine_iterations
        Lloyd iterations per :meth:`~segmenter.lenses.lens.Lens.refine`.
    names
        Segment number -> fixed name (overrides the derived names).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    features: list[str] = Field(min_length=1)
    algorithm: Algorithm = "kmeans"
    params: dict[str, Any] = Field(default_factory=dict)
    log_features: list[str] | None = None
    warmup: int = Field(default=2000, ge=1)
    learn_every: int = Field(default=4, ge=1)
    batch_size: int = Field(default=32, ge=1)
    refresh_every: int = Field(default=256, ge=1)
    match_threshold: float = Field(default=1.0, gt=0.0)
    retire_after: int = Field(default=2, ge=1)
    min_cluster_share: float = Field(default=0.02, ge=0.0, lt=1.0)
    max_segments: int = Field(default=12, ge=1, le=256)
    margin: float = Field(default=0.25, ge=0.0, lt=1.0)
    min_dwell: int = Field(default=6, ge=0)
    min_dwell_days: float = Field(default=0.0, ge=0.0, le=365, allow_inf_nan=False)
    min_dwell_hours: float = Field(default=144.0, ge=0.0, le=24 * 365, allow_inf_nan=False)
    return_margin: float = Field(default=0.85, ge=0.0, lt=1.0)
    return_window_days: float = Field(default=7.0, ge=0.0, le=365, allow_inf_nan=False)
    pending_move_hours: float = Field(default=72.0, ge=0.0, le=24 * 365, allow_inf_nan=False)
    margin_shrinks: bool = False
    refine_iterations: int = Field(default=20, ge=1, le=100)
    names: dict[int, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ConfigError(f"field 'name': {value!r} must match [a-z][a-z0-9_]* (at most 48 characters)")
        return value

    @field_validator("algorithm", mode="before")
    @classmethod
    def _check_algorithm(cls, value: Any) -> Any:
        if value not in ALGORITHMS:
            raise ConfigError(f"field 'algorithm': unknown algorithm {value!r}; use one of {', '.join(ALGORITHMS)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> LensConfig:
        where = f"lens {self.name!r}"
        self._check_features(where)
        try:
            clean = validate_params(self.algorithm, self.params)
        except ConfigError as exc:
            raise ConfigError(f"{where}, {exc}") from None
        object.__setattr__(self, "params", clean)
        k = n_clusters_of(self.algorithm, clean)
        if k is not None and k > self.max_segments:
            raise ConfigError(
                f"{where}, field 'max_segments': {self.max_segments} is below the model's {k} clusters; "
                "raise max_segments or lower the cluster count"
            )
        self._check_names(where)
        return self

    def _check_features(self, where: str) -> None:
        """Features are distinct and named; ``log_features`` names only features of the lens."""
        if len(set(self.features)) != len(self.features):
            dup = sorted({f for f in self.features if self.features.count(f) > 1})
            raise ConfigError(f"{where}, field 'features': duplicate feature(s) {dup}")
        if not all(self.features):
            raise ConfigError(f"{where}, field 'features': empty feature name")
        if self.log_features is not None:
            unknown = sorted(set(self.log_features) - set(self.features))
            if unknown:
                raise ConfigError(f"{where}, field 'log_features': {unknown} are not in 'features'")

    def _check_names(self, where: str) -> None:
        """Segment names: numbers from 1, not blank, unique within the lens."""
        for number, label in self.names.items():
            if number < 1:
                raise ConfigError(f"{where}, field 'names.{number}': segment numbers start at 1")
            if not label.strip():
                raise ConfigError(f"{where}, field 'names.{number}': empty name")
        if len(set(self.names.values())) != len(self.names):
            raise ConfigError(f"{where}, field 'names': names must be unique within the lens")

    @property
    def heavy_features(self) -> frozenset[str]:
        """Features that get ``log1p``."""
        if self.log_features is not None:
            return frozenset(self.log_features)
        return frozenset(f for f in self.features if f in HEAVY_TAILED)


def parse_lens_config(data: Mapping[str, Any]) -> LensConfig:
    """Build a :class:`LensConfig` from a mapping; every problem is a ``ConfigError`` naming the field."""
    try:
        return LensConfig.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        name = data.get("name", "?")
        raise ConfigError(f"lens {name!r}, field '{field}': {err['msg']}") from None
