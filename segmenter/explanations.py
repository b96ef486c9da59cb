"""Why customers moved: the ``explanation`` of many ``segment_change`` messages of one lens in one compiled pass.

:meth:`Explainer.explain` takes the raw lens vectors of a buffer of moves with
their old and new segments and returns one :class:`~segmenter.outputs.Explanation`
each. The arithmetic runs in :func:`explain_rows` (numba); Python only builds
the messages. It is the arithmetic :meth:`~segmenter.lenses.lens.Lens.explain`
documents, to the bit: the vector is transformed (signed ``log1p`` where
heavy-tailed) and standardised as ``(v - mean) / std`` with the lens's scaler
snapshot; each feature's contribution is ``(x - c_old)^2 - (x - c_new)^2``
(the population mean, 0, stands in for a missing side); the top features are
the three largest positive contributions, largest first, ties by feature
order (or the largest one when none is positive); distances are
:func:`math.dist`'s (:func:`py_dist`, CPython's correctly rounded algorithm);
the runner-up is the nearest live segment other than the new one (the first
in live order on a tie).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numba import njit

from segmenter.outputs import Explanation, SegmentRef

if TYPE_CHECKING:
    from segmenter.lenses.lens import Lens

__all__ = ["NO_EXPLANATION", "TOP_FEATURES", "Explainer", "Moves", "Numbers", "Space", "explain_rows", "py_dist"]

TOP_FEATURES = 3
"""Features listed in ``top_features`` at most."""
NO_EXPLANATION = Explanation(
    top_features=[], distance_to_old=None, distance_to_new=None, runner_up=None, distance_to_runner_up=None
)
"""Before the lens's first scaler snapshot (frozen, shared by every message that has it)."""
_SPLIT = 134217729.0  # 2**27 + 1: Veltkamp's split of a double into two 26-bit halves


@njit(cache=True, inline="always")
def _two_prod(a: float, b: float) -> tuple[float, float]:  # pragma: no cover - compiled
    """``a * b`` and its exact rounding error (Dekker; CPython's ``dl_mul`` gives the same bits with fma)."""
    p = a * b
    c = _SPLIT * a
    ah = c - (c - a)
    al = a - ah
    c = _SPLIT * b
    bh = c - (c - b)
    bl = b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(cache=True)
def py_dist(a: Any, b: Any, d: int) -> float:  # pragma: no cover - compiled
    """:func:`math.dist` of ``a[:d]`` and ``b[:d]``, bit for bit (CPython's ``vector_norm``)."""
    diffs = np.empty(d, np.float64)
    top = 0.0
    nan = False
    for j in range(d):
        x = abs(a[j] - b[j])
        nan = nan or math.isnan(x)
        diffs[j] = x
        top = max(top, x)
    if math.isinf(top):
        return top
    if nan:
        return math.nan
    if top == 0.0 or d <= 1:
        return top
    _, e = math.frexp(top)
    if e < -1023:  # subnormal: never for these vectors (CPython rescales first)
        return math.sqrt(sum(diffs * diffs))
    scale = math.ldexp(1.0, -e)
    csum, frac1, frac2 = 1.0, 0.0, 0.0
    for j in range(d):
        x = diffs[j] * scale
        hi, lo = _two_prod(x, x)
        s = csum + hi  # fast two-sum (csum >= hi): lossless
        frac2 += (csum - s) + hi
        csum = s
        frac1 += lo
    h = math.sqrt(csum - 1.0 + (frac1 + frac2))
    hi, lo = _two_prod(-h, h)
    s = csum + hi
    frac2 += (csum - s) + hi
    csum = s
    frac1 += lo
    x = csum - 1.0 + (frac1 + frac2)
    h += x / (2.0 * h)
    return h / scale


class Space(NamedTuple):
    """A lens's scaled space for :func:`explain_rows`: heavy flags, mean and std per feature, and its centers."""

    heavy: Any
    mean: Any
    std: Any
    table: Any
    """Scaled center of every segment the registry holds, one row each."""
    live: Any
    """Live segment numbers, in the lens's live order."""
    live_centers: Any
    """Their scaled centers (the lens's assignment cache)."""


class Moves(NamedTuple):
    """The moves to explain: the rows of ``raw`` (and of the outputs) that hold them, the ``table`` rows of their old
    and new centers (``-1``: none) and their new segment numbers (one per move)."""

    raw: Any
    """Raw vectors, the lens's features first (a row may hold more columns: only the lens's are read)."""
    rows: Any
    old: Any
    new: Any
    new_number: Any


class Numbers(NamedTuple):
    """What :func:`explain_rows` fills, per move (in the move's row; the vectors' first ``d`` columns)."""

    z: Any
    """The scaled vector."""
    contrib: Any
    """Per feature (left as it was when neither side has a center)."""
    top: Any
    """Top feature indices, ``-1`` after the last."""
    dist: Any
    """To old, to new, to the runner-up (``NaN``: none)."""
    runner: Any
    """The runner-up's number (``-1``: none)."""


@njit(cache=True, inline="always")
def _scaled(raw: Any, sp: Space, x: Any) -> None:  # pragma: no cover - compiled
    """``raw`` transformed (signed ``log1p`` where heavy) and standardised into ``x``."""
    for j in range(len(x)):
        v = raw[j]
        if sp.heavy[j]:
            v = math.log1p(v) if v >= 0.0 else -math.log1p(-v)
        x[j] = (v - sp.mean[j]) / sp.std[j]


@njit(cache=True, inline="always")
def _top(c: Any, top: Any) -> None:  # pragma: no cover - compiled
    """The largest positive contributions into ``top`` (largest first, ties by feature order), else the largest."""
    d = len(c)
    used = np.zeros(d, np.bool_)
    for k in range(min(d, TOP_FEATURES)):
        best = -1
        for j in range(d):
            if not used[j] and (best < 0 or c[j] > c[best]):
                best = j
        if k and c[best] <= 0.0:
            return
        used[best] = True
        top[k] = best
        if c[best] <= 0.0:  # none positive: the largest alone
            return


@njit(cache=True, inline="always")
def _runner_up(x: Any, sp: Space, new_number: int, dist: Any) -> int:  # pragma: no cover - compiled
    """The nearest live segment but ``new_number`` (first on a tie; ``-1``: none); its distance into ``dist[2]``."""
    runner = -1
    dist[2] = math.nan
    for i in range(len(sp.live)):
        if sp.live[i] == new_number:
            continue
        dd = py_dist(x, sp.live_centers[i], len(x))
        if runner < 0 or dd < dist[2]:
            runner = sp.live[i]
            dist[2] = dd
    return runner


@njit(cache=True)
def explain_rows(mv: Moves, sp: Space, out: Numbers, two: float) -> None:  # pragma: no cover - compiled
    """The explanation's numbers for every move, each in its row of ``out`` (see the module and :class:`Numbers`).

    ``two`` is 2.0, passed at run time: Python's ``v ** 2`` is libm's ``pow(v, 2.0)``, which differs
    from ``v * v`` in the last bit now and then, and the compiler turns a constant exponent into ``v * v``.
    """
    d = len(sp.mean)
    zero = np.zeros(d, np.float64)
    for k in range(len(mv.rows)):
        m = mv.rows[k]
        x = out.z[m, :d]
        _scaled(mv.raw[m, :d], sp, x)
        out.top[m, :] = -1
        has_old, has_new = mv.old[k] >= 0, mv.new[k] >= 0
        a = sp.table[mv.old[k]] if has_old else zero
        b = sp.table[mv.new[k]] if has_new else zero
        if has_old or has_new:
            c = out.contrib[m, :d]
            for j in range(d):
                c[j] = (x[j] - a[j]) ** two - (x[j] - b[j]) ** two
            _top(c, out.top[m])
        out.dist[m, 0] = py_dist(x, a, d) if has_old else math.nan
        out.dist[m, 1] = py_dist(x, b, d) if has_new else math.nan
        out.runner[m] = _runner_up(x, sp, mv.new_number[k], out.dist[m])


class Explainer:
    """The explanations of one lens's moves, in batches (its scaled centers kept until the lens's caches change).

    Parameters
    ----------
    lens
        The lens whose moves it explains (read only).
    """

    def __init__(self, lens: Lens) -> None:
        self._lens = lens
        self._epoch = -1
        self._snap: object = None
        self._rows: dict[int, int] = {}
        self._space: Space | None = None
        self._lut = np.full(1, -1, np.int64)

    def _refresh(self) -> None:
        """The lens's scaled space: its scaler snapshot, live centers, and the scaled center of every segment the
        registry holds, as rows of one table (kept until the lens's caches or snapshot change)."""
        lens = self._lens
        snap = lens.snapshot
        assert snap is not None
        segments = lens.registry.segments
        self._rows = {n: i for i, n in enumerate(segments)}
        # segment number -> table row; its last entry (index -1, as "none" reads) stays -1
        self._lut = np.full(max(segments, default=-1) + 2, -1, np.int64)
        self._lut[list(self._rows)] = list(self._rows.values())
        d = len(lens.feature_names)
        table = np.array([snap.scale(s.center) for s in segments.values()], np.float64).reshape(-1, d)
        live, centers, *_ = lens.kernel_view()
        self._space = Space(np.asarray(snap.heavy, np.bool_), np.asarray(snap.mean, np.float64),
                            np.asarray(snap.std, np.float64), table, np.asarray(live, np.int64),
                            np.asarray(centers, np.float64).reshape(-1, d))  # fmt: skip
        self._epoch = lens.cache_epoch
        self._snap = snap

    def explain(self, raw: np.ndarray[Any, np.dtype[np.float64]], old: list[int], new: list[int]) -> list[Explanation]:
        """One explanation per row of ``raw`` (the lens's raw features), moving ``old[m]`` -> ``new[m]`` (-1: none)."""
        num = self.numbers(raw, old, new)
        if num is None:
            return [NO_EXPLANATION] * len(old)
        return _messages(self._lens, raw.tolist(), _Numbers(*(a.tolist() for a in num)))

    def numbers(self, raw: np.ndarray[Any, np.dtype[np.float64]], old: list[int], new: list[int]) -> Numbers | None:
        """:meth:`explain`'s numbers (:class:`Numbers`, one row per move); ``None`` before the lens's first
        scaler snapshot (every explanation is then :data:`NO_EXPLANATION`)."""
        n, d = len(old), len(self._lens.feature_names)
        num = Numbers(np.empty((n, d), np.float64), np.full((n, d), np.nan), np.empty((n, TOP_FEATURES), np.int64),
                      np.empty((n, 3), np.float64), np.empty(n, np.int64))  # fmt: skip
        rows = np.arange(n, dtype=np.int64)
        olds, news = np.asarray(old, np.int64), np.asarray(new, np.int64)
        return num if self.fill(np.ascontiguousarray(raw, np.float64), rows, olds, news, num) else None

    def fill(self, raw: np.ndarray[Any, np.dtype[np.float64]], rows: np.ndarray[Any, np.dtype[np.int64]],
             old: np.ndarray[Any, np.dtype[np.int64]], new: np.ndarray[Any, np.dtype[np.int64]],
             out: Numbers) -> bool:  # fmt: skip
        """Write the numbers of the moves in ``rows`` of ``raw`` (the lens's features in its first columns), moving
        ``old[k]`` -> ``new[k]`` (``-1``: none), into the same rows of ``out`` (its arrays' first columns);
        False before the lens's first scaler snapshot (nothing written: every explanation is then
        :data:`NO_EXPLANATION`)."""
        lens = self._lens
        snap = lens.snapshot
        if snap is None:
            return False
        used = {*old.tolist(), *new.tolist()}
        used.discard(-1)
        if self._epoch != lens.cache_epoch or snap is not self._snap or not used <= self._rows.keys():
            self._refresh()
        space, lut = self._space, self._lut
        assert space is not None
        explain_rows(Moves(raw, rows, lut[old], lut[new], new), space, out, 2.0)
        return True


class _Numbers(NamedTuple):
    """:func:`explain_rows`'s outputs as lists."""

    z: list[list[float]]
    contrib: list[list[float]]
    top: list[list[int]]
    dist: list[list[float]]
    runner: list[int]


def _messages(lens: Lens, raw: list[list[float]], num: _Numbers) -> list[Explanation]:
    """The :class:`Explanation` messages of :func:`explain_rows`'s numbers (``NaN``: none)."""
    names = lens.feature_names
    ref = lens.ref
    refs: dict[int, SegmentRef] = {}
    isnan = math.isnan
    whys = []
    for values, x, c, chosen, (d_old, d_new, d_runner), run in zip(raw, *num, strict=True):
        # -1 only after the last chosen feature
        top = [{"feature": names[j], "value": values[j], "z": x[j], "contribution": c[j]} for j in chosen if j >= 0]
        d_run: float | None = d_runner
        if run < 0:
            runner, d_run = None, None
        elif (runner := refs.get(run)) is None:
            runner = refs[run] = ref(run)
        # every field in declaration order: floats (NaN: none), plain dicts and a SegmentRef
        whys.append({"top_features": top, "distance_to_old": None if isnan(d_old) else d_old,
                     "distance_to_new": None if isnan(d_new) else d_new, "runner_up": runner,
                     "distance_to_runner_up": d_run})  # fmt: skip
    return Explanation.trusted_many(whys)
