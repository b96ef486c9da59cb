"""Per-customer behavioural features in event time, kept in compact numpy columns.

The feature names are fixed (see docs/internals.md, "Features"). A customer's
state is one row of a handful of numpy columns (float32 accumulators, int32
times in seconds relative to :data:`BASE_EPOCH`, a ring of uint32 event-id
hashes for de-duplication, int16/uint16 per-lens segment and dwell); an
:class:`~segmenter.id_index.IdIndex` maps the customer id to its row, and erased
rows are reused through a free list. There is no Python object per customer.

Decayed quantities are stored as their value at the customer's latest event
time ``t_last``. An event at ``t > t_last`` decays them by
``2 ** (-(t - t_last) / half_life)`` and adds its contribution; an out-of-order
event at ``t <= t_last`` adds its contribution decayed by
``2 ** (-(t_last - t) / half_life)``. Both give the same value as in-order
processing, so late events within the allowed lateness are applied exactly.

Scalar access on the hot path goes through flat ``memoryview`` objects over the
numpy columns (about 25 ns per read or write, several times faster than
indexing a numpy array); the columns themselves serve vectorised work
(inactivity sweeps, refinement samples, snapshots).

Examples
--------
>>> from segmenter.config import FeatureConfig
>>> store = FeatureStore(FeatureConfig(), n_lenses=1)
>>> t0 = store.to_seconds(BASE_EPOCH + 100 * DAY)
>>> row = store.ingest("c1", "e1", EventKind.PURCHASE, t0, 50.0)
>>> store.ingest("c1", "e1", EventKind.PURCHASE, t0, 50.0)   # duplicate
-1
>>> v = dict(zip(FEATURE_NAMES, store.vector(row, t0 + 30 * DAY)))
>>> round(v["frequency"], 3), round(v["spend"], 2), v["recency_days"], v["aov"]
(0.5, 25.0, 30.0, 50.0)
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Container, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from segmenter.codec import expect_array, expect_dict, expect_int, expect_list
from segmenter.errors import EventError, StateError
from segmenter.events import EventType
from segmenter.id_index import IdIndex

if TYPE_CHECKING:
    from segmenter.config import FeatureConfig

__all__ = [
    "BASE_EPOCH",
    "CLOCK_FEATURES",
    "DAY",
    "FEATURES",
    "FEATURE_NAMES",
    "HEAVY_TAILED",
    "NO_PENDING",
    "EventKind",
    "FeatureDef",
    "FeatureStore",
    "event_kind",
]

DAY = 86_400
BASE_EPOCH = 1_577_836_800
"""2020-01-01T00:00:00Z. Times are stored as int32 seconds relative to it (about 1952..2088)."""
_T_MIN = -(2**31) + 1
_T_MAX = 2**31 - 1
_NO_TIME = -(2**31)
NO_PENDING = _NO_TIME
"""A ``pend`` value: the customer's nearest segment in that lens is its own (no pending move)."""
"""Stored in ``last_purchase`` while the customer has no purchase."""
MAX_AMOUNT = 1e12
"""Amounts above this are clipped (keeps float32 accumulators finite)."""
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its fixed name, its meaning and whether it is heavy-tailed (log1p before scaling)."""

    name: str
    description: str
    heavy_tailed: bool
    clock: bool = False
    """Grows with time alone (no event needed): the move rule runs only these ahead (:data:`CLOCK_FEATURES`)."""


FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef("recency_days", "days since last purchase (or first seen), capped", True, clock=True),
    FeatureDef("tenure_days", "days since first seen (or signup)", True, clock=True),
    FeatureDef("frequency", "purchases, decayed", True),
    FeatureDef("spend", "purchase amounts minus refunds, decayed, floored at 0", True),
    FeatureDef("aov", "lifetime average order value", True),
    FeatureDef("sessions", "session starts, decayed", True),
    FeatureDef("product_views", "product views, decayed", True),
    FeatureDef("cart_adds", "add_to_cart events, decayed", True),
    FeatureDef("cart_abandonment", "1 - min(1, decayed purchases / decayed cart adds)", False),
    FeatureDef("conversion", "min(1, decayed purchases / decayed product views)", False),
    FeatureDef("email_engagement", "e-mail opens + 2 x clicks, decayed", True),
    FeatureDef("refund_rate", "lifetime refunds / lifetime purchases, capped at 1", False),
    FeatureDef("orders", "lifetime purchases (not decayed: value survives silence)", True),
    FeatureDef("net_spend", "lifetime purchase amounts minus refund amounts, floored at 0 (not decayed)", True),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
HEAVY_TAILED: frozenset[str] = frozenset(f.name for f in FEATURES if f.heavy_tailed)
CLOCK_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.clock)
"""The features that grow with the clock alone, first in the layout (:func:`segmenter.kernel.clock_ahead`)."""


class EventKind(IntEnum):
    """What an event does to the features (event types that only touch times map to ``OTHER``)."""

    OTHER = 0
    SESSION = 1
    PRODUCT_VIEW = 2
    CART_ADD = 3
    PURCHASE = 4
    REFUND = 5
    EMAIL_OPEN = 6
    EMAIL_CLICK = 7


_KIND = {
    EventType.SESSION_START: EventKind.SESSION,
    EventType.PRODUCT_VIEW: EventKind.PRODUCT_VIEW,
    EventType.ADD_TO_CART: EventKind.CART_ADD,
    EventType.PURCHASE: EventKind.PURCHASE,
    EventType.REFUND: EventKind.REFUND,
    EventType.EMAIL_OPEN: EventKind.EMAIL_OPEN,
    EventType.EMAIL_CLICK: EventKind.EMAIL_CLICK,
}


def event_kind(event_type: EventType) -> EventKind:
    """Map an event type to its effect on the features."""
    return _KIND.get(event_type, EventKind.OTHER)


# float32 accumulator columns
_FREQ, _SPEND, _SESS, _PVIEW, _CART, _EMAIL, _PACT, _NPUR, _AMT, _NREF, _RAMT = range(11)
_NF = 11
_NF_V1 = 10
"""Accumulators in records written before the lifetime refund amount (``_RAMT``) existed."""
# int32 time columns
_FIRST, _LAST, _LPUR, _SCORED = range(4)
_TIMES = 4
"""Times a record carries (the columns of ``t`` up to ``_SCORED``)."""
_NT = 4

_ACTIVITY = {
    EventKind.SESSION: (_SESS, 1.0),
    EventKind.PRODUCT_VIEW: (_PVIEW, 1.0),
    EventKind.CART_ADD: (_CART, 1.0),
    EventKind.EMAIL_OPEN: (_EMAIL, 1.0),
    EventKind.EMAIL_CLICK: (_EMAIL, 2.0),
}
"""Event kinds that only count activity: the accumulator column and the weight of one event."""
_ACTIVITY_COLUMNS = (_SESS, _PVIEW, _CART, _EMAIL, _PACT)
"""Accumulators that decay at the activity half-life."""

_ACC_NAMES = ("frequency", "spend", "sessions", "product_views", "cart_adds", "email", "purchases_activity",
              "purchases", "amount", "refunds", "refund_amount")  # fmt: skip


def _flat(arr: npt.NDArray[Any], fmt: str) -> Any:
    """A flat memoryview of a C-contiguous array (typed Any: typeshed types items as int, these hold floats too)."""
    view: Any = arr.data
    return view.cast("B").cast(fmt)


def customer_hash(customer_id: str) -> int:
    """A process-independent 32-bit hash of a customer id (crc32 of its UTF-8 bytes)."""
    return zlib.crc32(customer_id.encode())


class FeatureStore:
    """Per-customer feature state in compact columns, one row per customer.

    Parameters
    ----------
    config
        Half-lives, lateness, recency cap and dedup window.
    n_lenses
        Number of lenses whose segment and dwell are kept per customer.
    capacity
        Initial number of rows (columns grow by 1.125x when full: little slack at a million rows).

    Notes
    -----
    Bytes per customer with the defaults (two lenses, ``dedup_size`` 8, ids
    like ``c0001234``) at 1,003,000 customers; ``bench/memory.py`` measures
    the running consumer against it:

    ==============================================================  =====
    ``f``: 11 float32 accumulators                                     44
    ``t``: 4 int32 times                                               16
    ``h``: ``dedup_size`` uint32 event-id hashes                       32
    ``hpos`` uint8, ``crc`` uint32, ``live`` and ``dirty`` bool         7
    per lens: seg, dwell, since, prev, mver, pend (18 B) x 2           36
    ``part`` int16 (the input partition)                                2
    id index per row: uint32 offset, uint16 length                      6
    = per allocated row                                               143
    growth slack (1,122,047 rows: 1.125x + 64 when full)              +17
    id index: the id's bytes in the arena (grows 1.5x)                  9
    id index: hash table, 2**21 int32 slots (load <= 1/2)               8
    = total (no Python object per customer)                           177
    ==============================================================  =====

    The trigger engine, the consumer's ownership and restore keep nothing per
    customer beyond this (the engine: a packed history per customer with a
    delivery, when rules are set).
    """

    f: npt.NDArray[np.float32]
    """Accumulators (decayed at the customer's latest event time) and lifetime totals."""
    t: npt.NDArray[np.int32]
    """First seen, latest event, latest purchase, last scored (seconds from :data:`BASE_EPOCH`)."""
    h: npt.NDArray[np.uint32]
    """Ring of recent event-id hashes (0 = empty)."""
    hpos: npt.NDArray[np.uint8]
    crc: npt.NDArray[np.uint32]
    """crc32 of the customer id (row-order independent sort key)."""
    live: npt.NDArray[np.bool_]
    dirty: npt.NDArray[np.bool_]
    seg: npt.NDArray[np.int16]
    dwell: npt.NDArray[np.uint16]
    since: npt.NDArray[np.int32]
    """Per lens: when the customer entered its current segment (seconds from :data:`BASE_EPOCH`)."""
    prev: npt.NDArray[np.int16]
    """Per lens: the segment the customer left to enter its current one (``-1``: none)."""
    mver: npt.NDArray[np.int32]
    """Per lens: the lens's model version when the customer entered its current segment."""
    pend: npt.NDArray[np.int32]
    """Per lens: since when the customer's nearest segment has been another one (:data:`NO_PENDING`: none)."""
    part: npt.NDArray[np.int16]
    """The input partition (event source) of the customer's latest event (``-1``: none, offline)."""
    _fv: Any
    _tv: Any
    _hv: Any
    _sv: Any
    _dv: Any
    _hposv: Any

    def __init__(self, config: FeatureConfig, n_lenses: int, capacity: int = 1024) -> None:
        self.config = config
        self.n_lenses = n_lenses
        self.dedup_size = config.dedup_size
        self._kf = _LN2 / (config.frequency_half_life_days * DAY)
        self._ks = _LN2 / (config.spend_half_life_days * DAY)
        self._ka = _LN2 / (config.activity_half_life_days * DAY)
        self._index = IdIndex()
        self._free: list[int] = []
        self._alloc(max(16, capacity))

    # ------------------------------------------------------------------ storage
    def _alloc(self, capacity: int) -> None:
        old = getattr(self, "f", None)
        n = 0 if old is None else len(old)
        d = max(1, self.dedup_size)
        cols: dict[str, npt.NDArray[Any]] = {
            "f": np.zeros((capacity, _NF), np.float32),
            "t": np.zeros((capacity, _NT), np.int32),
            "h": np.zeros((capacity, d), np.uint32),
            "hpos": np.zeros(capacity, np.uint8),
            "crc": np.zeros(capacity, np.uint32),
            "live": np.zeros(capacity, np.bool_),
            "dirty": np.zeros(capacity, np.bool_),
            "seg": np.full((capacity, max(1, self.n_lenses)), -1, np.int16),
            "dwell": np.zeros((capacity, max(1, self.n_lenses)), np.uint16),
            "since": np.zeros((capacity, max(1, self.n_lenses)), np.int32),
            "prev": np.full((capacity, max(1, self.n_lenses)), -1, np.int16),
            "mver": np.zeros((capacity, max(1, self.n_lenses)), np.int32),
            "pend": np.full((capacity, max(1, self.n_lenses)), NO_PENDING, np.int32),
            "part": np.full(capacity, -1, np.int16),
        }
        # drop the memoryviews before replacing their arrays
        self._fv = self._tv = self._hv = self._sv = self._dv = self._hposv = memoryview(b"")
        for name, arr in cols.items():
            if old is not None:
                arr[:n] = getattr(self, name)[:n]
            setattr(self, name, arr)
        self._fv = _flat(self.f, "f")
        self._tv = _flat(self.t, "i")
        self._hv = _flat(self.h, "I")
        self._sv = _flat(self.seg, "h")
        self._dv = _flat(self.dwell, "H")
        self._hposv = _flat(self.hpos, "B")
        self._index.reserve_rows(capacity)

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return len(self.f)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, customer_id: object) -> bool:
        return isinstance(customer_id, str) and self._index.get(customer_id) is not None

    def row_of(self, customer_id: str) -> int | None:
        """The customer's row, or ``None`` when unknown."""
        return self._index.get(customer_id)

    def rows_of(self, customer_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        """Rows of many customers in one call (``-1``: unknown)."""
        return self._index.get_many(customer_ids)

    def id_of(self, row: int) -> str:
        """The customer id held in ``row``."""
        if not 0 <= row < len(self.live) or not self.live[row]:
            raise KeyError(row)
        return self._index.id_of(row)

    def ids_of(self, rows: npt.NDArray[np.int64]) -> list[str]:
        """The customer ids held in many ``rows``, in order (as :meth:`id_of` each)."""
        live = self.live
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= len(live) or not live[rows].all()):
            bad = [int(r) for r in rows.tolist() if not 0 <= r < len(live) or not live[r]]
            raise KeyError(bad[0])
        return self._index.ids_of(rows)

    def customer_ids(self) -> Iterator[str]:
        """Known customer ids, in row order."""
        id_of = self._index.id_of
        return (id_of(row) for row in np.flatnonzero(self.live).tolist())

    def nbytes(self) -> int:
        """Bytes held by the numpy columns and the id index (allocated capacity)."""
        cols = ("f", "t", "h", "hpos", "crc", "live", "dirty", "seg", "dwell", "since", "prev", "mver", "pend", "part")
        columns: int = sum(getattr(self, n).nbytes for n in cols)
        return columns + self._index.nbytes()

    def new_row(self, customer_id: str) -> int:
        """Allocate an empty row for a customer not held yet (its first event fills it)."""
        row = self.new_rows([customer_id], live=True)[0]
        return int(row)

    def new_rows(self, customer_ids: Sequence[str], *, live: bool) -> npt.NDArray[np.int64]:
        """Allocate empty rows for distinct customers not held yet, in one call; returns their rows.

        With ``live=False`` the rows stay out of every sweep, sample and count
        until the compiled loop applies their first event (it sets ``live``);
        :meth:`release_unused` frees those that got none.
        """
        n = len(customer_ids)
        free = self._free
        take = min(n, len(free))
        reused = free[len(free) - take :][::-1]
        del free[len(free) - take :]
        start = len(self._index) + len(free) + take  # the rows below are held or free
        end = start + n - take
        if end > len(self.f):
            self._alloc(max(int(len(self.f) * 1.125) + 64, end))
        fresh = np.arange(start, end, dtype=np.int64)
        rows = np.concatenate([np.array(reused, np.int64), fresh])
        self._index.add_many(customer_ids, rows)
        self.live[rows] = live
        self.crc[rows] = [customer_hash(c) for c in customer_ids]
        self.seg[rows] = -1
        self.prev[rows] = -1
        self.pend[rows] = NO_PENDING
        return rows

    def release_unused(self, rows: npt.NDArray[np.int64]) -> None:
        """Free rows of :meth:`new_rows` (``live=False``) that never got an event (their events were refused)."""
        unused = rows[(rows >= 0) & ~self.live[np.maximum(rows, 0)]]
        if len(unused):
            self._drop_rows(unused)

    def remove(self, customer_id: str) -> int | None:
        """Forget a customer entirely; returns its former row (now free) or ``None``."""
        row = self._index.get(customer_id)
        if row is None:
            return None
        self._drop_rows(np.array([row], np.int64))
        return row

    def rows_of_partitions(self, partitions: Sequence[int]) -> npt.NDArray[np.int64]:
        """Live rows whose customers' latest event came from one of ``partitions``."""
        mask = self.live & np.isin(self.part, np.asarray(partitions, np.int64))
        return np.flatnonzero(mask).astype(np.int64)

    def drop_rows(self, rows: npt.NDArray[np.int64]) -> None:
        """Forget the customers of ``rows`` (distinct, held) in one pass; the rows become free."""
        self._drop_rows(np.asarray(rows, np.int64))

    def _drop_rows(self, rows: npt.NDArray[np.int64]) -> None:
        self._index.remove_rows(rows)
        self.f[rows] = 0
        self.t[rows] = 0
        self.h[rows] = 0
        self.hpos[rows] = 0
        self.crc[rows] = 0
        self.live[rows] = False
        self.dirty[rows] = False
        self.seg[rows] = -1
        self.dwell[rows] = 0
        self.since[rows] = 0
        self.prev[rows] = -1
        self.mver[rows] = 0
        self.pend[rows] = NO_PENDING
        self.part[rows] = -1
        self._free.extend(rows.tolist())

    # ----------------------------------------------------------------- hot path
    @staticmethod
    def to_seconds(epoch: float) -> int:
        """Event time as int seconds relative to :data:`BASE_EPOCH` (raises ``EventError`` out of range)."""
        rel = math.floor(epoch) - BASE_EPOCH
        if not _T_MIN <= rel <= _T_MAX:
            raise EventError("schema", "ts: out of the supported range (years 1952 to 2088)", field="ts")
        return rel

    def ingest(self, customer_id: str, event_id: str, kind: EventKind, t: int, amount: float | None) -> int:
        """Apply one event at time ``t`` (relative seconds, see :meth:`to_seconds`) to its customer's state.

        Returns the customer's row, or ``-1`` when ``event_id`` is a duplicate
        (one of the customer's last ``dedup_size`` event ids). The caller
        rejects events older than its watermark.
        """
        row = self._index.get(customer_id)
        new = row is None
        if row is None:
            row = self.new_row(customer_id)
        if self.dedup_size and not self._remember_event(row, new, event_id):
            return -1
        self.dirty[row] = True
        back = self._advance(row, new, t)
        if kind == EventKind.PURCHASE:
            self._add_purchase(row, t, back, amount)
        elif kind == EventKind.REFUND:
            self._add_refund(row, back, amount)
        elif kind in _ACTIVITY:
            col, weight = _ACTIVITY[kind]
            self._fv[row * _NF + col] += weight * (math.exp(-back * self._ka) if back else 1.0)
        return row

    def _remember_event(self, row: int, new: bool, event_id: str) -> bool:
        """Keep ``event_id`` among the row's last ``dedup_size`` ids; ``False``: it is one of them (a duplicate)."""
        d = self.dedup_size
        h = zlib.crc32(event_id.encode()) or 1
        hv = self._hv
        base = row * d
        if not new:
            for i in range(base, base + d):
                if hv[i] == h:
                    return False
        pos = self._hposv[row]
        hv[base + pos] = h
        self._hposv[row] = (pos + 1) % d
        return True

    def _advance(self, row: int, new: bool, t: int) -> int:
        """Set the row's times for an event at ``t`` and decay its features up to it; how far ``t`` lies back."""
        fv, tv = self._fv, self._tv
        o, ot = row * _NF, row * _NT
        if new:
            tv[ot + _FIRST] = tv[ot + _LAST] = tv[ot + _SCORED] = t
            tv[ot + _LPUR] = _NO_TIME
            return 0
        last = tv[ot + _LAST]
        if t < tv[ot + _FIRST]:  # noqa: PLR1730 - hot path, faster than min()
            tv[ot + _FIRST] = t
        if t <= last:
            return int(last - t)
        dt = t - last
        fa = math.exp(-dt * self._ka)
        fv[o + _FREQ] *= math.exp(-dt * self._kf)
        fv[o + _SPEND] *= math.exp(-dt * self._ks)
        for col in _ACTIVITY_COLUMNS:
            fv[o + col] *= fa
        tv[ot + _LAST] = t
        return 0

    def _add_purchase(self, row: int, t: int, back: int, amount: float | None) -> None:
        """Count a purchase ``back`` seconds before the row's latest time (weights decayed by that much)."""
        fv, tv = self._fv, self._tv
        o, ot = row * _NF, row * _NT
        amt = min(amount or 0.0, MAX_AMOUNT)
        if back:
            fv[o + _FREQ] += math.exp(-back * self._kf)
            fv[o + _SPEND] += amt * math.exp(-back * self._ks)
        else:
            fv[o + _FREQ] += 1.0
            fv[o + _SPEND] += amt
        fv[o + _PACT] += math.exp(-back * self._ka) if back else 1.0
        fv[o + _NPUR] += 1.0
        fv[o + _AMT] += amt
        if t > tv[ot + _LPUR]:  # noqa: PLR1730 - hot path, faster than max()
            tv[ot + _LPUR] = t

    def _add_refund(self, row: int, back: int, amount: float | None) -> None:
        """Count a refund ``back`` seconds before the row's latest time."""
        fv = self._fv
        o = row * _NF
        amt = min(amount or 0.0, MAX_AMOUNT)
        fv[o + _SPEND] -= amt * math.exp(-back * self._ks) if back else amt
        fv[o + _NREF] += 1.0
        fv[o + _RAMT] += amt

    def kernel_rates(self) -> npt.NDArray[np.float64]:
        """Decay rates per second (activity, frequency, spend) and the recency cap in days (:mod:`segmenter.kernel`)."""
        return np.array([self._ka, self._kf, self._ks, self.config.recency_cap_days], np.float64)

    def last_time(self, row: int) -> int:
        """The customer's latest event time (relative seconds)."""
        return int(self._tv[row * _NT + _LAST])

    def scored_time(self, row: int) -> int:
        """When the customer's segments were last evaluated (relative seconds)."""
        return int(self._tv[row * _NT + _SCORED])

    def set_scored(self, row: int, t: int) -> None:
        """Record that the customer's segments were evaluated at ``t`` (relative seconds)."""
        self._tv[row * _NT + _SCORED] = t

    def vector(self, row: int, t: int) -> list[float]:
        """All features (in :data:`FEATURE_NAMES` order) at time ``t >= last_time(row)`` (relative seconds)."""
        fv = self._fv
        tv = self._tv
        o = row * _NF
        ot = row * _NT
        first = tv[ot + _FIRST]
        last = tv[ot + _LAST]
        lpur = tv[ot + _LPUR]
        dt = t - last
        if dt > 0:
            fa = math.exp(-dt * self._ka)
            freq = fv[o + _FREQ] * math.exp(-dt * self._kf)
            spend = fv[o + _SPEND] * math.exp(-dt * self._ks)
        else:
            fa = 1.0
            freq = fv[o + _FREQ]
            spend = fv[o + _SPEND]
        recency = (t - (first if lpur == _NO_TIME else lpur)) / DAY
        cap = self.config.recency_cap_days
        npur = fv[o + _NPUR]
        nref = fv[o + _NREF]
        cart = fv[o + _CART]
        pview = fv[o + _PVIEW]
        pact = fv[o + _PACT]
        net = fv[o + _AMT] - fv[o + _RAMT]
        return [
            recency if recency < cap else cap,
            (t - first) / DAY,
            freq,
            spend if spend > 0.0 else 0.0,
            fv[o + _AMT] / npur if npur > 0.0 else 0.0,
            fv[o + _SESS] * fa,
            pview * fa,
            cart * fa,
            1.0 - min(1.0, pact / cart) if cart > 0.0 else 0.0,
            min(1.0, pact / pview) if pview > 0.0 else 0.0,
            fv[o + _EMAIL] * fa,
            min(1.0, nref / npur) if npur > 0.0 else (1.0 if nref > 0.0 else 0.0),
            npur,
            net if net > 0.0 else 0.0,
        ]

    def clock_ahead(self, values: Sequence[float], seconds: int) -> list[float]:
        """``values`` (a :meth:`vector`) with only :data:`CLOCK_FEATURES` ``seconds`` later (the move rule's)."""
        from segmenter.kernel import clock_ahead  # noqa: PLC0415 - compiled: loaded when first asked

        out = np.empty(len(FEATURE_NAMES), np.float64)
        clock_ahead(np.asarray(values, np.float64), seconds, self.kernel_rates(), out)
        return [float(v) for v in out]

    def matrix(self, rows: npt.NDArray[np.intp], t: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Vectorised :meth:`vector` for many rows: shape ``(len(rows), len(FEATURE_NAMES))``, float64.

        ``t`` holds one evaluation time per row (relative seconds, ``>= last_time``).
        """
        return self._features(np.asarray(rows, np.int64), np.asarray(t, np.int64), range(len(FEATURE_NAMES)))

    def vectors_at(
        self, t: int, columns: Sequence[int] | None = None, *, latest_by: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Every live customer's features at time ``t`` (or at its latest event, if later): rows and matrix.

        Rows come ordered by the crc32 of the customer id (then row), so the
        result does not depend on which row holds whom. ``columns`` picks
        feature indices (default: all of :data:`FEATURE_NAMES`), and only they
        are computed (one compiled pass, :mod:`segmenter.feature_matrix`);
        ``latest_by`` (relative seconds) leaves out the customers whose latest
        event is after it.
        """
        rows, times = self._rows_at(t, latest_by)
        cols = range(len(FEATURE_NAMES)) if columns is None else columns
        return rows, self._features(rows, times, cols)

    def vectors_by(
        self, t: int, groups: Sequence[Sequence[int]], *, latest_by: int | None = None
    ) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]]]:
        """:meth:`vectors_at` for several column groups (one per ready lens): the rows, and one matrix per group.

        Each matrix is ``vectors_at(t, union)[1][:, [union.index(c) for c in group]]`` bit for bit, in that
        column selection's layout (Fortran order), without the matrix of the union or the selections' copies:
        each a fresh mapping of the allocator's at a refinement of thousands of customers, every page faulting.
        """
        rows, times = self._rows_at(t, latest_by)
        return rows, [self._features(rows, times, cols, order="F") for cols in groups]

    def _rows_at(self, t: int, latest_by: int | None) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The live rows of :meth:`vectors_at` in its order, and the time each one is evaluated at."""
        live = np.flatnonzero(self.live)
        if latest_by is not None:
            live = live[self.t[live, _LAST] <= latest_by]
        # crc32 then row in one unique 64-bit key: a plain sort instead of a stable argsort
        key = self.crc[live].astype(np.uint64) << np.uint64(32) | live.astype(np.uint64)
        rows = (np.sort(key) & np.uint64(0xFFFFFFFF)).astype(np.int64)
        return rows, np.maximum(self.t[:, _LAST].take(rows).astype(np.int64), t)

    def _features(
        self,
        rows: npt.NDArray[np.int64],
        times: npt.NDArray[np.int64],
        columns: Sequence[int],
        order: Literal["C", "F"] = "C",
    ) -> npt.NDArray[np.float64]:
        """Features ``columns`` of ``rows`` at ``times`` (each ``>=`` the row's latest event), compiled; a matrix
        in ``order``."""
        from segmenter.feature_matrix import decays, fill  # noqa: PLC0415 - compiled: loaded at the first tick

        cols = np.asarray(columns, np.int64)
        elapsed = np.maximum(times - self.t[:, _LAST].take(rows), 0).astype(np.float64)
        out = np.empty((len(rows), len(cols)), np.float64, order=order)
        rates = np.array([self._ka, self._kf, self._ks], np.float64)
        fill(self.f, self.t, rows, times, decays(elapsed, rates, cols), cols, self.config.recency_cap_days, out)
        return out

    # ------------------------------------------------------------ lens columns
    def segment(self, row: int, lens: int) -> int:
        """The customer's segment number in lens ``lens`` (``-1``: none)."""
        return int(self._sv[row * self.n_lenses + lens])

    def dwell_of(self, row: int, lens: int) -> int:
        """Assignments since the customer entered its current segment of lens ``lens`` (saturates at 65535)."""
        return int(self._dv[row * self.n_lenses + lens])

    def entered(self, row: int, lens: int) -> tuple[int, int]:
        """``(since, previous)``: when the customer entered its segment of lens ``lens``, and the one it left."""
        return int(self.since[row, lens]), int(self.prev[row, lens])

    def enter(self, row: int, lens: int, segment: int, at: int, version: int = 0) -> None:
        """The customer moves to ``segment`` (``-1``: none) of lens ``lens`` at ``at`` (model ``version``)."""
        self.prev[row, lens] = self.segment(row, lens)
        self.since[row, lens] = at
        self.mver[row, lens] = version
        self.pend[row, lens] = NO_PENDING
        self.set_segment(row, lens, segment, 0)

    def set_segment(self, row: int, lens: int, segment: int, dwell: int) -> None:
        """Store the customer's segment (``-1``: none) and dwell for lens ``lens``."""
        i = row * self.n_lenses + lens
        self._sv[i] = segment
        self._dv[i] = dwell if dwell < 65535 else 65535

    # -------------------------------------------------------------- selection
    def rows_in_segment(self, lens: int, segment: int) -> list[int]:
        """Rows whose segment in lens ``lens`` is ``segment``, ordered by customer id."""
        rows = np.flatnonzero(self.live & (self.seg[:, lens] == segment))
        # the ids in one gather (not one look-up per row); live rows' ids are distinct: the row never decides
        return [row for _, row in sorted(zip(self._index.ids_of(rows), rows.tolist(), strict=True))]

    def stalest(self, before: int, limit: int) -> list[int]:
        """Up to ``limit`` rows scored before ``before``, oldest first (ties: crc32 of the id, then the id).

        The order depends only on the customers' state, not on their rows.
        """
        cand = np.flatnonzero(self.live & (self.t[:, _SCORED] < before))
        if limit <= 0 or not len(cand):
            return []
        key = (self.t[cand, _SCORED].astype(np.int64) - _T_MIN) << 32 | self.crc[cand].astype(np.int64)
        return self._smallest(cand, key, limit)

    def stale_rows(self, before: int) -> npt.NDArray[np.int64]:
        """Every row scored before ``before``, oldest first, in :meth:`stalest` order (vectorised)."""
        cand = np.flatnonzero(self.live & (self.t[:, _SCORED] < before))
        key = (self.t[cand, _SCORED].astype(np.int64) - _T_MIN) << 32 | self.crc[cand].astype(np.int64)
        order = np.argsort(key, kind="stable")
        rows, key = cand[order], key[order]
        tied = np.flatnonzero(key[1:] == key[:-1])
        if len(tied):  # equal keys (rare): by customer id, so the order never depends on rows
            out = rows.tolist()
            for i in np.unique(np.concatenate([tied, tied + 1])).tolist():
                j = i
                while j + 1 < len(out) and key[j + 1] == key[i]:
                    j += 1
                if j > i and (i == 0 or key[i - 1] != key[i]):
                    out[i : j + 1] = sorted(out[i : j + 1], key=self.id_of)
            rows = np.array(out, np.int64)
        return rows.astype(np.int64)

    def _smallest(self, cand: npt.NDArray[np.intp], key: npt.NDArray[np.int64], limit: int) -> list[int]:
        if len(cand) > limit:
            part = np.argpartition(key, limit - 1)
            kth = key[part[limit - 1]]
            # every candidate tied with the k-th key, so the cut does not depend on row order
            chosen = np.concatenate([cand[key < kth], cand[key == kth]])
            ckey = np.concatenate([key[key < kth], key[key == kth]])
        else:
            chosen, ckey = cand, key
        pairs = sorted(zip(ckey.tolist(), chosen.tolist(), strict=True))
        # equal keys (rare): order by customer id, so the order never depends on rows
        out: list[int] = []
        i = 0
        while i < len(pairs) and len(out) < limit:
            j = i + 1
            while j < len(pairs) and pairs[j][0] == pairs[i][0]:
                j += 1
            group = [row for _, row in pairs[i:j]]
            out.extend(sorted(group, key=self.id_of) if len(group) > 1 else group)
            i = j
        return out[:limit]

    def robust_time(self, quorum: int) -> int | None:
        """The ``quorum``-th largest latest event time over customers (fewer: the smallest); ``None``: none."""
        last = self.t[self.live, _LAST]
        if not len(last):
            return None
        k = min(max(1, quorum), len(last))
        return int(np.partition(last, len(last) - k)[len(last) - k])

    def segment_counts(self, lens: int) -> dict[int, int]:
        """Customers per segment number in lens ``lens`` (computed from the column)."""
        col = self.seg[self.live, lens].astype(np.int64)
        col = col[col >= 0]
        if not len(col):
            return {}
        counts = np.bincount(col)
        return {int(s): int(c) for s, c in enumerate(counts.tolist()) if c}

    # ------------------------------------------------------------ state / I/O
    def take_dirty_rows(self) -> npt.NDArray[np.int64]:
        """Rows changed since the last call, ascending (and clear their flags)."""
        rows = np.flatnonzero(self.dirty).astype(np.int64)
        self.dirty[rows] = False
        return rows

    def order_by_id(self, rows: npt.NDArray[np.int64], extra: Sequence[str] = ()) -> npt.NDArray[np.int64]:
        """The order that sorts the ids of held ``rows`` then of ``extra`` (indexes ``len(rows) + i``) as ``sorted``
        would, without a string per row (:meth:`segmenter.id_index.IdIndex.order_of`)."""
        return self._index.order_of(rows, extra)

    def load_record(
        self,
        customer_id: str,
        rec: dict[str, Any],
        lens_names: Sequence[str],
        known: Sequence[Container[int] | None] | None = None,
    ) -> int:
        """Create or overwrite a customer from its changelog record (the version-1 object); returns its row.

        ``known`` holds, per lens, the segment numbers the lens knows; a record
        naming another segment is refused. Nothing is changed when the record
        is refused.

        Raises
        ------
        StateError
            The record is malformed: missing fields, values that are not finite
            or do not fit the columns (float32 accumulators, times in years
            1952 to 2088, 32-bit event-id hashes), or an unknown segment.
        """
        what = f"customer {customer_id!r}"
        try:
            f = np.array(expect_list(rec["f"], f"{what} accumulators"), dtype=np.float64)
            times_in = expect_list(rec["t"], f"{what} times")
            if len(times_in) != _NT:
                raise StateError(f"{what}: expected {_NT} times, got {len(times_in)}")
            first, last, lpur, scored = times_in
            ring = [expect_int(x, f"{what} event-id hash", 1, 2**32 - 1) for x in expect_list(rec["h"], "h")]
            segs = expect_dict(rec["s"], f"{what} segments")
            if f.shape == (_NF_V1,):  # written before the lifetime refund amount: net_spend counts no refunds
                f = np.append(f, 0.0)
            if f.shape != (_NF,):
                raise StateError(f"{what}: expected {_NF} accumulators, got {f.size}")
            with np.errstate(over="ignore"):
                f32 = f.astype(np.float32)
            if not np.isfinite(f32).all():
                raise StateError(f"{what}: accumulators not finite in float32: {f.tolist()}")
            purchase = _NO_TIME if lpur is None else self._record_time(lpur, what)
            times = [self._record_time(first, what), self._record_time(last, what), purchase,
                     self._record_time(scored, what)]  # fmt: skip
            placed = [self._record_segment(segs.get(name, [-1, 0]), what, name, None if known is None else known[i])
                      for i, name in enumerate(lens_names)]  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{what}: malformed feature record: {exc!r}") from None
        row = self._index.get(customer_id)
        if row is None:
            row = self.new_row(customer_id)
        self.f[row] = f32
        self.t[row] = times
        d = self.dedup_size
        self.h[row] = 0
        ring = ring[-d:] if d else []
        if ring:
            self.h[row, : len(ring)] = ring
        self.hpos[row] = len(ring) % d if d else 0
        for i, (seg, dwell, since, prev, version, pend) in enumerate(placed):
            self.seg[row, i] = seg
            self.dwell[row, i] = dwell
            # records written before the event-time dwell: entered at the latest event, from nowhere
            self.since[row, i] = times[1] if since is None else since
            self.prev[row, i] = prev
            self.mver[row, i] = version
            self.pend[row, i] = pend
        self.dirty[row] = False
        return row

    def _record_time(self, epoch: Any, what: str) -> int:
        if isinstance(epoch, bool) or not isinstance(epoch, int | float) or not math.isfinite(epoch):
            raise StateError(f"{what}: time {epoch!r:.40} is not a finite number")
        try:
            return self.to_seconds(epoch)
        except EventError:
            raise StateError(f"{what}: time {epoch} is outside the years 1952 to 2088") from None

    def _record_segment(
        self, value: Any, what: str, lens: str, known: Container[int] | None
    ) -> tuple[int, int, int | None, int, int, int]:
        """``(segment, dwell, since, previous segment, model version, pending since)`` of one lens.

        Older records hold fewer: no entry time (entered at the latest event), no previous segment, model
        version 0, no pending move.
        """
        entry = expect_list(value, f"{what} lens {lens!r}")
        if len(entry) not in (2, 4, 5, 6):
            raise StateError(
                f"{what} lens {lens!r}: expected [segment, dwell, since, previous, model version, pending since]"
            )
        seg = expect_int(entry[0], f"{what} lens {lens!r} segment", -1, 2**15 - 1)
        dwell = expect_int(entry[1], f"{what} lens {lens!r} dwell", 0, 2**16 - 1)
        if seg >= 0 and known is not None and seg not in known:
            raise StateError(f"{what} lens {lens!r}: unknown segment {seg}")
        if len(entry) == 2:
            return seg, dwell, None, -1, 0, NO_PENDING
        since = self._record_time(entry[2], what)
        prev = expect_int(entry[3], f"{what} lens {lens!r} previous segment", -1, 2**15 - 1)
        version = expect_int(entry[4], f"{what} lens {lens!r} model version", 0, 2**31 - 1) if len(entry) >= 5 else 0
        pend = NO_PENDING if len(entry) < 6 or entry[5] is None else self._record_time(entry[5], what)
        return seg, dwell, since, prev, version, pend

    def columns(self, lens_names: Sequence[str]) -> dict[str, Any]:
        """All live customers as compact arrays, ordered by customer id (for snapshots)."""
        by_id = sorted((self.id_of(r), r) for r in np.flatnonzero(self.live).tolist())
        ids = [cid for cid, _ in by_id]
        rows = np.array([r for _, r in by_id], dtype=np.intp)
        return {
            "ids": ids,
            "f": self.f[rows],
            "t": self.t[rows].astype(np.int64) + BASE_EPOCH,
            "h": self.h[rows],
            "hpos": self.hpos[rows],
            "seg": self.seg[rows],
            "dwell": self.dwell[rows],
            "since": self.since[rows].astype(np.int64) + BASE_EPOCH,
            "prev": self.prev[rows],
            "mver": self.mver[rows],
            "pend": self.pend[rows].astype(np.int64) + BASE_EPOCH,  # NO_PENDING: NO_PENDING + BASE_EPOCH
            "part": self.part[rows],
            "lenses": list(lens_names),
            "dedup_size": self.dedup_size,
        }

    def load_columns(
        self, cols: dict[str, Any], lens_names: Sequence[str], known: Sequence[Container[int] | None] | None = None
    ) -> None:
        """Replace every customer with the content of :meth:`columns` output (``known``: see :meth:`load_record`).

        Raises
        ------
        StateError
            The columns do not fit this store (lenses or dedup size differ), or
            hold malformed values (see :meth:`load_record`); nothing is changed then.
        """
        cols = expect_dict(cols, "snapshot customers")
        ids = self._snapshot_ids(cols, lens_names)
        n = len(ids)
        lenses = max(1, len(lens_names))
        d = max(1, self.dedup_size)
        f = expect_array(cols.get("f"), "snapshot f", np.float32, (n, None), finite=True)
        if f.shape[1] not in (_NF, _NF_V1):
            raise StateError(f"snapshot f: expected {_NF} accumulators per customer, got {f.shape[1]}")
        arrays = {
            "t": _snapshot_times(expect_array(cols.get("t"), "snapshot t", np.int64, (n, _NT))),
            "h": expect_array(cols.get("h"), "snapshot h", np.uint32, (n, d)),
            "hpos": expect_array(cols.get("hpos"), "snapshot hpos", np.uint8, (n,)),
            "seg": expect_array(cols.get("seg"), "snapshot seg", np.int16, (n, lenses)),
            "dwell": expect_array(cols.get("dwell"), "snapshot dwell", np.uint16, (n, lenses)),
            "since": expect_array(cols.get("since"), "snapshot since", np.int64, (n, lenses)) - BASE_EPOCH,
            "prev": expect_array(cols.get("prev"), "snapshot prev", np.int16, (n, lenses)),
            # absent from older snapshots: model version 0, no partition
            "mver": _optional_array(cols, "mver", np.int32, (n, lenses), 0),
            "part": _optional_array(cols, "part", np.int16, (n,), -1),
            # absent from older snapshots: no pending move
            "pend": _snapshot_pending(_optional_array(cols, "pend", np.int64, (n, lenses), NO_PENDING + BASE_EPOCH)),
        }
        if n and not ((arrays["since"] >= _T_MIN) & (arrays["since"] <= _T_MAX)).all():
            raise StateError("snapshot since: times outside the years 1952 to 2088")
        if n and int(arrays["hpos"].max()) >= d:
            raise StateError(f"snapshot hpos: positions beyond the dedup size {d}")
        _check_segments(arrays["seg"], lens_names, known)
        self._index = IdIndex()
        self._free = []
        del self.f
        self._alloc(max(16, n + n // 8))
        self._index.add_many(ids, np.arange(n, dtype=np.int64))
        self.f[:n, : f.shape[1]] = f  # columns written before the lifetime refund amount: it reads 0
        for name, values in arrays.items():
            getattr(self, name)[:n] = values
        self.live[:n] = True
        self.crc[:n] = [customer_hash(c) for c in ids]

    def _snapshot_ids(self, cols: dict[str, Any], lens_names: Sequence[str]) -> list[str]:
        """The snapshot's customer ids, after checking that it fits this store (lenses, dedup size)."""
        if cols.get("lenses") != list(lens_names):
            raise StateError(f"snapshot lenses {cols.get('lenses')} differ from the configured {list(lens_names)}")
        if cols.get("dedup_size") != self.dedup_size:
            raise StateError(f"snapshot dedup_size {cols.get('dedup_size')} is not the config's {self.dedup_size}")
        ids = expect_list(cols.get("ids"), "snapshot customer ids")
        if not all(isinstance(c, str) for c in ids) or len(set(ids)) != len(ids):
            raise StateError("snapshot customer ids must be distinct strings")
        return ids


def _snapshot_times(epochs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A snapshot's time columns (epoch seconds) as relative seconds, checked (no purchase stays ``_NO_TIME``)."""
    t = epochs.copy()
    lpur_none = t[:, _LPUR] == _NO_TIME + BASE_EPOCH
    t -= BASE_EPOCH
    t[lpur_none, _LPUR] = _NO_TIME
    valid = (t >= _T_MIN) & (t <= _T_MAX)
    valid[lpur_none, _LPUR] = True
    if not valid.all():
        raise StateError("snapshot t: times outside the years 1952 to 2088")
    return t


def _snapshot_pending(epochs: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A snapshot's ``pend`` column (epoch seconds) as relative seconds, checked."""
    rel = epochs - BASE_EPOCH
    if not ((rel == NO_PENDING) | ((rel >= _T_MIN) & (rel <= _T_MAX))).all():
        raise StateError("snapshot pend: times outside the years 1952 to 2088")
    return rel


def _optional_array(
    cols: dict[str, Any], name: str, dtype: type[np.generic], shape: tuple[int, ...], default: int
) -> npt.NDArray[Any]:
    """Column ``name`` of a snapshot, or ``default`` everywhere where an older snapshot lacks it."""
    if cols.get(name) is None:
        return np.full(shape, default, dtype)
    return expect_array(cols.get(name), f"snapshot {name}", dtype, shape)


def _check_segments(
    seg: npt.NDArray[np.int16], lens_names: Sequence[str], known: Sequence[Container[int] | None] | None
) -> None:
    """Every lens's segment numbers are ``-1`` or, where ``known`` says, ones the lens knows."""
    for i, name in enumerate(lens_names):
        numbers = {int(v) for v in np.unique(seg[:, i]).tolist() if v >= 0}
        allowed = None if known is None else known[i]
        if (seg[:, i] < -1).any() or (allowed is not None and any(x not in allowed for x in numbers)):
            raise StateError(f"snapshot seg: lens {name!r} names segments it does not know")
