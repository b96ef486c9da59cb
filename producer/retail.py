"""The ``sparse`` scenario: long-horizon retail, a few purchases per customer over many months.

Where :class:`producer.simulator.Simulator` makes dense web sessions (dozens of
events per customer and week), this generator looks like a real transaction
log: tens of thousands of customers, 1-20 purchases each over 12-24 months,
heavy-tailed amounts, monthly cohorts arriving over the run (more each month),
most customers lapsing (they stop buying long before the end), and few
non-purchase events (a ``signup`` for some customers, a ``refund`` for a few
purchases).

Every customer has a latent *type* (the ground truth written to the truth file
as its persona):

================ ====== ============= ============== =========================
type             share  purchases     median gap     amounts
================ ====== ============= ============== =========================
``one_off``      0.45   1-2           90 days        log-normal, median 35
``occasional``   0.30   2-6           60 days        log-normal, median 60
``regular``      0.15   6-20          21 days        log-normal, median 45
``big_ticket``   0.10   1-4           120 days       Pareto (alpha 1.6) from 180
================ ====== ============= ============== =========================

A customer's purchase count is drawn in its type's range (smaller counts more
likely); the gaps between purchases are log-normal around the median gap; a
purchase that would fall after the run's end is not made (so late cohorts buy
less). Everything random comes from one numpy Generator seeded with
``SparseConfig.seed``, drawn in whole arrays, so a seed gives the same events
byte for byte.

Examples
--------
>>> gen = SparseRetail(SparseConfig(customers=50, days=365, seed=3))
>>> events = list(gen.events())
>>> all(a.ts <= b.ts for a, b in zip(events, events[1:]))
True
>>> {e.event["type"] for e in events} <= {"signup", "purchase", "refund"}
True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from producer.simulator import DAY, SimEvent, Span, TruthEntry, check_span, iso

MONTH = 30.4375 * DAY
"""An average month in seconds."""

_CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports", "books", "toys")
_CHANNELS = ("web", "app", "store")


@dataclass(frozen=True)
class CustomerType:
    """The latent behaviour of one kind of retail customer (see the module docstring's table)."""

    name: str
    share: float
    min_purchases: int
    max_purchases: int
    median_gap_days: float
    median_amount: float
    pareto_alpha: float | None = None
    """If set, amounts are Pareto from ``median_amount`` with this tail index (else log-normal)."""


SPARSE_TYPES: tuple[CustomerType, ...] = (
    CustomerType("one_off", 0.45, 1, 2, 90.0, 35.0),
    CustomerType("occasional", 0.30, 2, 6, 60.0, 60.0),
    CustomerType("regular", 0.15, 6, 20, 21.0, 45.0),
    CustomerType("big_ticket", 0.10, 1, 4, 120.0, 180.0, pareto_alpha=1.6),
)
"""The built-in customer types of the ``sparse`` scenario."""


@dataclass(frozen=True)
class SparseConfig(Span):
    """Settings of a ``sparse`` run.

    Attributes
    ----------
    customers
        Customers over the whole run (every one makes at least one purchase).
    days
        Simulated span (default 548 days, 18 months); nothing is generated at or after ``start + days``.
    start
        Event time of the run's beginning. The default lies in the past (the
        whole default run ends in 2026), so a Kafka record timestamp taken at
        produce time is never behind an event's ``ts``.
    seed
        Seed of the random generator.
    cohort_months
        Customers arrive in monthly cohorts during the first this many months
        (at most the first two thirds of the run).
    cohort_growth
        Each cohort is this factor larger than the previous one.
    signup_share
        Share of customers whose first event is a ``signup`` (shortly before their first purchase).
    refund_prob
        Probability that a purchase is refunded 2-30 days later (if that is before the end).
    gap_sigma
        Sigma of ``log(gap)`` between two purchases.
    currency
        ISO currency of purchases and refunds.
    types
        The customer types and their shares.
    """

    customers: int = 20_000
    days: float = 548.0
    start: datetime = datetime(2024, 7, 1, tzinfo=UTC)
    seed: int = 0
    cohort_months: float = 12.0
    cohort_growth: float = 1.08
    signup_share: float = 0.6
    refund_prob: float = 0.03
    gap_sigma: float = 0.8
    currency: str = "EUR"
    types: tuple[CustomerType, ...] = SPARSE_TYPES

    def __post_init__(self) -> None:
        check_span(self.customers, self.days, self.start, "2024-07-01T00:00:00Z")
        self._check_cohorts()
        self._check_types()

    def _check_cohorts(self) -> None:
        if not (math.isfinite(self.cohort_months) and self.cohort_months > 0):
            raise ValueError(f"cohort_months must be > 0, got {self.cohort_months}")
        if not (math.isfinite(self.cohort_growth) and self.cohort_growth > 0):
            raise ValueError(f"cohort_growth must be > 0, got {self.cohort_growth}")
        for name in ("signup_share", "refund_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def _check_types(self) -> None:
        if not self.types or sum(t.share for t in self.types) <= 0:
            raise ValueError("types need a positive share")
        for t in self.types:
            if not 1 <= t.min_purchases <= t.max_purchases:
                raise ValueError(f"type {t.name}: need 1 <= min_purchases <= max_purchases")

    @property
    def months(self) -> float:
        """The span in average months."""
        return self.days * DAY / MONTH


@dataclass
class _Drawn:
    """Per-event columns of a run, in generation order (customer by customer)."""

    ts: np.ndarray
    customer: np.ndarray
    kind: np.ndarray  # 0 signup, 1 purchase, 2 refund
    amount: np.ndarray
    quantity: np.ndarray
    category: np.ndarray


_SIGNUP, _PURCHASE, _REFUND = 0, 1, 2
_TYPE_NAMES = ("signup", "purchase", "refund")


class SparseRetail:
    """Generate the ``sparse`` scenario's events in event-time order (same interface as ``Simulator``).

    Parameters
    ----------
    config
        The run's settings.

    Attributes
    ----------
    truth
        One entry per customer: its type, from its arrival (cause ``arrival``).
    drifts, arrivals
        Type switches (always 0) and customers that arrived.
    """

    def __init__(self, config: SparseConfig) -> None:
        self.config = config
        self.truth: list[TruthEntry] = []
        self.drifts = 0
        self.arrivals = 0
        self._types: list[int] = []
        self._started = False

    @property
    def customer_count(self) -> int:
        """Customers created so far."""
        return len(self._types)

    def persona_counts(self) -> dict[str, int]:
        """Customers per type."""
        counts = Counter(self._types)
        return {t.name: counts.get(i, 0) for i, t in enumerate(self.config.types)}

    def events(self) -> Iterator[SimEvent]:
        """Yield every event of the run in non-decreasing event time (ties: generation order).

        Can be consumed only once.
        """
        if self._started:
            raise RuntimeError("SparseRetail.events() can be consumed only once; create a new SparseRetail")
        self._started = True
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 0x7370617273])
        arrival, types = self._customers(rng)
        drawn = self._draw_events(rng, arrival, types)
        order = np.argsort(drawn.ts, kind="stable")
        cids = [f"c{i:07d}" for i in range(cfg.customers)]
        keys = [c.encode() for c in cids]
        names = [t.name for t in cfg.types]
        channel = rng.integers(0, len(_CHANNELS), cfg.customers)
        prefix = f"r{cfg.seed}-"
        ts_l, cust_l, kind_l = drawn.ts[order].tolist(), drawn.customer[order].tolist(), drawn.kind[order].tolist()
        amount_l, qty_l, cat_l = (
            drawn.amount[order].tolist(),
            drawn.quantity[order].tolist(),
            drawn.category[order].tolist(),
        )
        for n, (t, c, k) in enumerate(zip(ts_l, cust_l, kind_l, strict=True)):
            event: dict[str, Any] = {
                "event_id": f"{prefix}{n}",
                "customer_id": cids[c],
                "type": _TYPE_NAMES[k],
                "ts": iso(t),
                "channel": _CHANNELS[int(channel[c])],
            }
            if k != _SIGNUP:
                event["amount"] = amount_l[n]
                event["currency"] = cfg.currency
                event["category"] = _CATEGORIES[cat_l[n]]
                if k == _PURCHASE:
                    event["quantity"] = qty_l[n]
            yield SimEvent(t, keys[c], event, names[types[c]])

    # -- drawing ----------------------------------------------------------------------------------

    def _customers(self, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
        """Arrival times (monthly cohorts, growing) and types of every customer; fills ``truth``."""
        cfg = self.config
        months = min(cfg.cohort_months, cfg.months * 2 / 3)
        n_cohorts = max(1, math.ceil(months))
        weights = cfg.cohort_growth ** np.arange(n_cohorts, dtype=np.float64)
        cohort = rng.choice(n_cohorts, size=cfg.customers, p=weights / weights.sum())
        within = rng.random(cfg.customers)
        span = months * MONTH
        arrival = cfg.start_epoch + np.minimum((cohort + within) * MONTH, span * (1 - 1e-9))
        shares = np.array([t.share for t in cfg.types], dtype=np.float64)
        types = rng.choice(len(cfg.types), size=cfg.customers, p=shares / shares.sum()).tolist()
        self._types = types
        self.arrivals = cfg.customers
        for i in range(cfg.customers):
            self.truth.append(TruthEntry(f"c{i:07d}", cfg.types[types[i]].name, float(arrival[i]), "arrival"))
        return arrival, types

    def _draw_events(self, rng: np.random.Generator, arrival: np.ndarray, types: list[int]) -> _Drawn:
        cfg = self.config
        n = cfg.customers
        type_arr = np.asarray(types, dtype=np.int64)
        lo = np.array([t.min_purchases for t in cfg.types])[type_arr]
        hi = np.array([t.max_purchases for t in cfg.types])[type_arr]
        # smaller counts more likely: a geometric draw folded into [lo, hi]
        count = lo + (rng.geometric(0.35, n) - 1) % (hi - lo + 1)
        gap_median = np.array([t.median_gap_days for t in cfg.types])[type_arr] * DAY
        most = int(count.max()) if n else 0
        gaps = gap_median[:, None] * np.exp(cfg.gap_sigma * rng.standard_normal((n, max(1, most))))
        gaps[:, 0] = rng.exponential(2 * DAY, n)  # the first purchase comes soon after arrival
        times = arrival[:, None] + np.cumsum(gaps, axis=1)
        made = (np.arange(max(1, most))[None, :] < count[:, None]) & (times < cfg.end_epoch)
        made[:, 0] = True  # every customer buys once, at the latest just before the end
        times[:, 0] = np.minimum(times[:, 0], cfg.end_epoch - 1.0)
        cust_p = np.broadcast_to(np.arange(n)[:, None], made.shape)[made]
        ts_p = times[made]
        scale = self._amount_scale(rng, type_arr)
        amount_p = np.maximum(1.0, np.round(scale[cust_p] * np.exp(0.5 * rng.standard_normal(len(ts_p))), 2))
        favourite = rng.integers(0, len(_CATEGORIES), n)
        other = rng.integers(0, len(_CATEGORIES), len(ts_p))
        cat_p = np.where(rng.random(len(ts_p)) < 0.7, favourite[cust_p], other)
        qty_p = 1 + rng.poisson(0.4, len(ts_p))
        # refunds: a few purchases, 2-30 days later, inside the run
        refund_at = ts_p + (2 + 28 * rng.random(len(ts_p))) * DAY
        refunded = (rng.random(len(ts_p)) < cfg.refund_prob) & (refund_at < cfg.end_epoch)
        # signups: shortly before the first purchase, for some customers
        signed = rng.random(n) < cfg.signup_share
        signup_at = np.minimum(arrival, times[:, 0]) - rng.exponential(600.0, n)
        signup_at = np.maximum(signup_at, cfg.start_epoch)
        ts = np.concatenate([signup_at[signed], ts_p, refund_at[refunded]])
        customer = np.concatenate([np.flatnonzero(signed), cust_p, cust_p[refunded]])
        kind = np.concatenate(
            [
                np.full(int(signed.sum()), _SIGNUP),
                np.full(len(ts_p), _PURCHASE),
                np.full(int(refunded.sum()), _REFUND),
            ]
        )
        zeros = np.zeros(int(signed.sum()))
        amount = np.concatenate([zeros, amount_p, amount_p[refunded]])
        quantity = np.concatenate([zeros.astype(np.int64), qty_p, qty_p[refunded]])
        category = np.concatenate([zeros.astype(np.int64), cat_p, cat_p[refunded]])
        return _Drawn(ts, customer, kind, amount, quantity, category)

    def _amount_scale(self, rng: np.random.Generator, type_arr: np.ndarray) -> np.ndarray:
        """Each customer's typical amount: log-normal around its type's median, or Pareto for heavy types."""
        cfg = self.config
        median = np.array([t.median_amount for t in cfg.types])[type_arr]
        scale = median * np.exp(0.6 * rng.standard_normal(len(type_arr)))
        alpha = np.array([t.pareto_alpha or 0.0 for t in cfg.types])[type_arr]
        pareto = median * (1.0 + rng.pareto(np.where(alpha > 0, alpha, 1.0)))
        out: np.ndarray = np.where(alpha > 0, pareto, scale)
        return out
