"""Feature scaling for one lens: signed ``log1p`` on heavy-tailed features, then online standardisation.

Two spaces are used throughout the lens package:

*transformed* space
    original units with ``log1p`` applied to the heavy-tailed features (see
    :data:`HEAVY_TAILED`); segment centers are stored here because it does not
    move when the scaler learns.
*scaled* space
    transformed values standardised with a running mean and standard deviation
    (Welford's algorithm); river models learn here and distances are measured here.

:class:`OnlineScaler` keeps the running statistics; :class:`ScalerSnapshot` is an
immutable copy of them, used between two model refreshes so that distances stay
consistent while the running statistics move.

Examples
--------
>>> import numpy as np
>>> scaler = OnlineScaler(("spend", "conversion"))
>>> _ = scaler.learn(np.array([[0.0, 0.1], [9.0, 0.3], [99.0, 0.2]]))
>>> snap = scaler.snapshot()
>>> [round(v, 3) for v in snap.scale(scaler.transform([9.0, 0.2]))]
[0.0, 0.0]
>>> [round(v, 6) for v in snap.inverse(snap.scale(scaler.transform([9.0, 0.2])))]
[9.0, 0.2]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from segmenter.errors import StateError
from segmenter.lenses.population import standardise

__all__ = ["HEAVY_TAILED", "OnlineScaler", "ScalerSnapshot", "all_finite", "signed_expm1", "signed_log1p"]

logger = logging.getLogger(__name__)

#: Features whose distribution is heavy-tailed; ``log1p`` is applied before standardising.
HEAVY_TAILED: frozenset[str] = frozenset(
    {
        "recency_days",
        "tenure_days",
        "frequency",
        "spend",
        "aov",
        "sessions",
        "product_views",
        "cart_adds",
        "email_engagement",
        "orders",
        "net_spend",
    }
)

_MIN_STD = 1e-4
"""A feature whose standard deviation (in transformed units) is at most this is treated as constant (std 1.0).

Dividing by a std of 1e-6 (every customer of a warm-up with nearly the same decayed count) blew a center that
sat 0.1 away from them up to 10^5 in scaled space; carried into the next, wider space and back to original
units it overflowed ``expm1`` and stopped the consumer at start-up. A spread of 1e-4 in ``log1p`` units is a
0.01 % difference between customers: nothing a segment should be cut on.
"""

_MAX_EXP = 709.0
"""``expm1`` of more than this overflows a float."""


def all_finite(values: Sequence[float]) -> bool:
    """True when no value is NaN or infinite (one ``sum`` on the fast path)."""
    total = sum(values)
    if total - total == 0.0:
        return True
    return all(math.isfinite(v) for v in values)


def signed_log1p(value: float) -> float:
    """``sign(v) * log1p(|v|)``: ``log1p`` for the non-negative values features have, total on the reals."""
    return math.log1p(value) if value >= 0.0 else -math.log1p(-value)


def signed_expm1(value: float) -> float:
    """Inverse of :func:`signed_log1p`, saturating at about +-8e307 instead of overflowing (a far center)."""
    return math.expm1(min(value, _MAX_EXP)) if value >= 0.0 else -math.expm1(min(-value, _MAX_EXP))


@dataclass(frozen=True)
class ScalerSnapshot:
    """Frozen standardisation parameters (transformed space -> scaled space).

    Parameters
    ----------
    heavy
        For each feature, whether ``signed_log1p`` is applied.
    mean, std
        Per-feature mean and standard deviation in transformed space.
    """

    heavy: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def of_population(cls, heavy: tuple[bool, ...], transformed: np.ndarray) -> ScalerSnapshot:
        """The standardisation of a whole population (rows of ``transformed``): its mean and population std.

        A degenerate std (below the scaler's minimum) becomes 1.0, as in :attr:`OnlineScaler.std`.
        """
        return cls.population_scaled(heavy, transformed)[0]

    @classmethod
    def population_scaled(cls, heavy: tuple[bool, ...], transformed: np.ndarray) -> tuple[ScalerSnapshot, np.ndarray]:
        """:meth:`of_population` and the rows scaled by it (:meth:`scale_matrix`), in one compiled pass.

        The same numbers as numpy's ``mean``/``std`` along the rows and ``scale_matrix``, bit for bit, and the
        scaled rows in the layout of ``transformed`` (:func:`~segmenter.lenses.population.standardise`).
        """
        mean, std, scaled = standardise(transformed, _MIN_STD)
        return cls(heavy=heavy, mean=tuple(mean.tolist()), std=tuple(std.tolist())), scaled

    def scale(self, transformed: Sequence[float]) -> list[float]:
        """Standardise one transformed vector."""
        return [(v - m) / s for v, m, s in zip(transformed, self.mean, self.std, strict=True)]

    def unscale(self, scaled: Sequence[float]) -> list[float]:
        """Scaled space -> transformed space."""
        return [v * s + m for v, m, s in zip(scaled, self.mean, self.std, strict=True)]

    def inverse(self, scaled: Sequence[float]) -> list[float]:
        """Scaled space -> original units."""
        out = self.unscale(scaled)
        return [signed_expm1(v) if h else v for v, h in zip(out, self.heavy, strict=True)]

    def scale_matrix(self, transformed: np.ndarray) -> np.ndarray:
        """Standardise the rows of a transformed ``(n, d)`` matrix."""
        out: np.ndarray = (transformed - np.asarray(self.mean)) / np.asarray(self.std)
        return out

    def unscale_matrix(self, scaled: np.ndarray) -> np.ndarray:
        """Scaled ``(n, d)`` -> transformed ``(n, d)``."""
        out: np.ndarray = scaled * np.asarray(self.std) + np.asarray(self.mean)
        return out


@njit(cache=True)
def _learn_rows(raw: Any, heavy: Any, n: int, stats: Any, out: Any) -> int:  # pragma: no cover - compiled
    """Welford updates row by row (see :meth:`OnlineScaler.learn`); returns the new count.

    ``stats`` holds the running mean (row 0) and sum of squared deviations (row 1), updated in place;
    ``out[0]`` receives the transformed rows and ``out[1]`` the scaled ones.
    """
    mean, m2 = stats[0], stats[1]
    transformed, scaled = out[0], out[1]
    d = raw.shape[1]
    for r in range(raw.shape[0]):
        for j in range(d):
            v = raw[r, j]
            if heavy[j]:
                v = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
            transformed[r, j] = v
        n += 1
        for j in range(d):
            x = transformed[r, j]
            delta = x - mean[j]
            mean[j] += delta / n
            m2[j] += delta * (x - mean[j])
        for j in range(d):
            s = math.sqrt(m2[j] / n) if n >= 2 else 1.0
            scaled[r, j] = (transformed[r, j] - mean[j]) / (s if s > _MIN_STD else 1.0)
    return n


@njit(cache=True)
def _signed(raw: Any, cols: Any, logs: Any, out: Any) -> bool:  # pragma: no cover - compiled
    """``out``: ``raw`` with column ``cols[k]`` replaced by ``logs[:, k]`` carrying its sign; False on a
    non-finite value of ``raw`` (``out`` then incomplete)."""
    n, d = raw.shape
    for j in range(d):  # column by column: the pipeline's column selection is Fortran-ordered
        for i in range(n):
            v = raw[i, j]
            if not math.isfinite(v):
                return False
            out[i, j] = v
    for k in range(len(cols)):
        c = cols[k]
        for i in range(n):
            out[i, c] = math.copysign(logs[i, k], raw[i, c])
    return True


class OnlineScaler:
    """Signed ``log1p`` on heavy-tailed features, then Welford running mean/variance.

    Parameters
    ----------
    features
        The lens's feature names, in order.
    log_features
        Which features get ``log1p``; defaults to those in :data:`HEAVY_TAILED`.

    Notes
    -----
    :meth:`transform` raises :class:`ValueError` on a non-finite input, so that
    nothing non-finite ever reaches a river model (one NaN poisons KMeans for good).
    """

    def __init__(self, features: Sequence[str], log_features: Iterable[str] | None = None) -> None:
        chosen = HEAVY_TAILED if log_features is None else frozenset(log_features)
        self.features: tuple[str, ...] = tuple(features)
        self.heavy: tuple[bool, ...] = tuple(f in chosen for f in self.features)
        self.heavy_index: tuple[int, ...] = tuple(i for i, h in enumerate(self.heavy) if h)
        d = len(self.features)
        self.n = 0
        self._mean = [0.0] * d
        self._m2 = [0.0] * d

    @property
    def dim(self) -> int:
        """Number of features."""
        return len(self.features)

    def transform(self, raw: Sequence[float] | np.ndarray) -> list[float]:
        """Original units -> transformed space (a new list); rejects non-finite values.

        Raises
        ------
        ValueError
            If the vector has the wrong length or holds a NaN or an infinity.
        """
        values = raw.tolist() if isinstance(raw, np.ndarray) else [float(v) for v in raw]
        if len(values) != len(self.heavy):
            raise ValueError(f"expected {len(self.heavy)} features, got {len(values)}")
        if not all_finite(values):
            raise ValueError(f"non-finite feature value in {values!r}")
        for i in self.heavy_index:
            v = values[i]
            values[i] = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
        return values

    def transform_matrix(self, raw: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`transform` over the rows of an ``(n, d)`` array (a new one, in the layout of ``raw``).

        numpy's ``log1p`` (vectorised: it differs from the C library's in the last bit for some inputs, and the
        refinement has always used it) on the heavy columns, then one compiled pass that copies, signs and
        checks (:func:`_signed`): no copy of the whole matrix, no mask, no scatter back.
        """
        arr = np.asarray(raw, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != len(self.heavy):
            raise ValueError(f"expected an (n, {len(self.heavy)}) array, got shape {arr.shape}")
        cols = np.array(self.heavy_index, np.int64)
        logs = np.abs(arr[:, cols])  # log1p(|v|), signed below: sign(v) * log1p(|v|) bit for bit
        np.log1p(logs, out=logs)
        out = np.empty_like(arr)  # numpy's order="K", as a copy of raw had
        if not _signed(arr, cols, logs, out):
            raise ValueError("non-finite feature value in matrix")
        return out

    def learn(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Transform the rows of an ``(n, d)`` raw array and add them to the statistics, one after another.

        Welford's running mean and variance, compiled. Returns the transformed
        rows (:meth:`transform`) and each row scaled with the statistics just
        after its own update (what the river model learns: ``snapshot().scale``
        at that point). The caller checks finiteness.
        """
        rows = np.ascontiguousarray(raw, dtype=np.float64)
        out = np.empty((2, *rows.shape), np.float64)
        stats = np.array([self._mean, self._m2], np.float64).reshape(2, rows.shape[1])
        heavy = np.array(self.heavy, np.bool_)
        self.n = int(_learn_rows(rows, heavy, self.n, stats, out))
        self._mean = stats[0].tolist()
        self._m2 = stats[1].tolist()
        return out[0], out[1]

    @property
    def mean(self) -> tuple[float, ...]:
        """Running mean in transformed space."""
        return tuple(self._mean)

    @property
    def std(self) -> tuple[float, ...]:
        """Running (population) standard deviation; 1.0 where undefined or degenerate."""
        if self.n < 2:
            return tuple(1.0 for _ in self._m2)
        out = []
        for m2 in self._m2:
            s = math.sqrt(m2 / self.n)
            out.append(s if s > _MIN_STD else 1.0)
        return tuple(out)

    def snapshot(self) -> ScalerSnapshot:
        """Freeze the current statistics."""
        return ScalerSnapshot(heavy=self.heavy, mean=self.mean, std=self.std)

    def state(self) -> dict[str, Any]:
        """Plain state (:mod:`segmenter.codec`)."""
        return {"n": self.n, "mean": list(self._mean), "m2": list(self._m2)}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` output."""
        try:
            mean = [float(v) for v in state["mean"]]
            m2 = [float(v) for v in state["m2"]]
            n = int(state["n"])
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"scaler state is invalid: {exc}") from None
        if len(mean) != self.dim or len(m2) != self.dim:
            raise StateError(f"scaler state has {len(mean)} features, the lens has {self.dim}")
        if n < 0 or not all(math.isfinite(v) for v in mean) or not all(math.isfinite(v) and v >= 0 for v in m2):
            raise StateError("scaler state holds a negative count or non-finite statistics")
        self.n, self._mean, self._m2 = n, mean, m2
