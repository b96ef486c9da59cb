"""An independent web-shop stream for ``bench/quality.py``: no personas, every customer its own rates.

The product's simulator (:mod:`producer.simulator`) draws customers from a few
named personas with fixed rates, and :mod:`producer.retail` from four latent
types; defaults tuned on them may be tuned to their shapes. This generator
shares no code or distribution with either: each customer's rates come from
continuous mixing distributions of the "buy 'til you die" family of customer
base models (a Pareto/NBD-like alive-then-dead session process, gamma-gamma
order values):

* arrival uniform over the first :attr:`BtydConfig.arrival_share` of the run;
* sessions a Poisson process with a rate ``~ Gamma(0.9, 0.9)`` per day (mean
  0.8, most customers well below, a few daily), ended by a death after an
  exponential lifetime (mean :attr:`BtydConfig.mean_lifetime_days`);
* per session ``1 + Poisson(v)`` product views (``v ~ Gamma(2, 1.5)``), a
  search with probability 0.3; an add to cart with probability
  ``Beta(2, 4)``, a checkout start given a cart ``Beta(3, 2)``, a purchase
  given a checkout ``Beta(5, 2)``;
* order values ``Gamma(4, m / 4)`` around a customer mean ``m`` log-normal
  (median 45, sigma 0.9): heavy-tailed across customers, not within one;
* a refund of a purchase with probability ``Beta(1, 25)``, 2-10 days later;
* a newsletter to every live customer every 3.5 days, opened with probability
  ``Beta(1, 3)``, clicked given an open with ``Beta(1, 3)``.

There are no personas; a customer's "truth" is its value tier, the quartile of
its expected spend per day (session rate x purchase probability per session x
mean order value), so ARI against the truth is a reference, not a target.
Deterministic: one ``numpy`` Generator seeded from :attr:`BtydConfig.seed`.

Examples
--------
>>> gen = BtydStream(BtydConfig(customers=20, days=10, seed=3))
>>> events = list(gen.events())
>>> all(a.ts <= b.ts for a, b in zip(events, events[1:]))
True
>>> sorted({e.persona for e in events}) <= ["tier-1", "tier-2", "tier-3", "tier-4"]
True
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from bench.common import SimRun
from producer.simulator import DAY, SimEvent, TruthEntry, iso

__all__ = ["BtydConfig", "BtydStream", "simulate_btyd"]

logger = logging.getLogger(__name__)

_CATEGORIES = ("garden", "kitchen", "kids", "outdoor", "office", "pets")
_NEWSLETTER_EVERY_S = 3.5 * DAY
_GAP_S = 45.0
"""Mean seconds between two events of one session."""


@dataclass(frozen=True)
class BtydConfig:
    """Size and shape of a :class:`BtydStream`."""

    customers: int = 600
    days: float = 45.0
    seed: int = 1
    start_epoch: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    arrival_share: float = 0.3
    mean_lifetime_days: float = 60.0


@dataclass
class _Customer:
    """One customer's latent rates (drawn once)."""

    arrival: float
    death: float
    session_rate: float  # per second
    views: float
    cart_p: float
    checkout_p: float
    buy_p: float
    mean_order: float
    refund_p: float
    open_p: float
    click_p: float
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    @property
    def value_per_day(self) -> float:
        """Expected spend per day alive (the tier's measure)."""
        return self.session_rate * DAY * self.cart_p * self.checkout_p * self.buy_p * self.mean_order


class BtydStream:
    """The events of a :class:`BtydConfig`, in event-time order; ``truth`` once :meth:`events` ran."""

    def __init__(self, config: BtydConfig) -> None:
        self.config = config
        self.truth: list[TruthEntry] = []
        self.customer_count = config.customers
        self.drifts = 0

    def events(self) -> Iterator[SimEvent]:
        """Every event, sorted by time (ties by generation order)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 0x62747964])
        customers = [self._draw(rng) for _ in range(cfg.customers)]
        tiers = _tiers([c.value_per_day for c in customers])
        end = cfg.start_epoch + cfg.days * DAY
        flat: list[tuple[float, int, dict[str, Any]]] = []
        for i, c in enumerate(customers):
            cid = f"b{i:06d}"
            cause = "arrival" if c.arrival > cfg.start_epoch else "initial"
            self.truth.append(TruthEntry(cid, tiers[i], c.arrival, cause))
            self._sessions(c, rng, min(c.death, end))
            self._newsletters(c, rng, min(c.death, end))
            flat.extend((t, i, {"customer_id": cid, **ev}) for t, ev in c.events if t < end)
        flat.sort(key=lambda e: e[0])
        for n, (t, i, body) in enumerate(flat):
            ev = {"event_id": f"b{cfg.seed}-{n}", **body, "ts": iso(t)}
            yield SimEvent(t, body["customer_id"].encode(), ev, tiers[i])

    def _draw(self, rng: np.random.Generator) -> _Customer:
        cfg = self.config
        arrival = cfg.start_epoch + float(rng.uniform(0.0, cfg.arrival_share * cfg.days * DAY))
        return _Customer(
            arrival=arrival,
            death=arrival + float(rng.exponential(cfg.mean_lifetime_days * DAY)),
            session_rate=float(rng.gamma(0.9, 0.9)) / DAY,
            views=float(rng.gamma(2.0, 1.5)),
            cart_p=float(rng.beta(2.0, 4.0)),
            checkout_p=float(rng.beta(3.0, 2.0)),
            buy_p=float(rng.beta(5.0, 2.0)),
            mean_order=float(rng.lognormal(np.log(45.0), 0.9)),
            refund_p=float(rng.beta(1.0, 25.0)),
            open_p=float(rng.beta(1.0, 3.0)),
            click_p=float(rng.beta(1.0, 3.0)),
        )

    def _sessions(self, c: _Customer, rng: np.random.Generator, until: float) -> None:
        t = c.arrival
        while True:
            t += float(rng.exponential(1.0 / c.session_rate))
            if t >= until:
                return
            self._session(c, rng, t)

    def _session(self, c: _Customer, rng: np.random.Generator, t: float) -> None:
        category = _CATEGORIES[int(rng.integers(len(_CATEGORIES)))]
        out = c.events
        out.append((t, {"type": "session_start", "channel": "web"}))
        if rng.random() < 0.3:
            t += float(rng.exponential(_GAP_S))
            out.append((t, {"type": "search", "channel": "web"}))
        for _ in range(1 + int(rng.poisson(c.views))):
            t += float(rng.exponential(_GAP_S))
            out.append((t, {"type": "product_view", "channel": "web", "category": category}))
        if rng.random() >= c.cart_p:
            return
        t += float(rng.exponential(_GAP_S))
        out.append((t, {"type": "add_to_cart", "channel": "web", "category": category}))
        if rng.random() >= c.checkout_p:
            return
        t += float(rng.exponential(_GAP_S))
        out.append((t, {"type": "checkout_start", "channel": "web"}))
        if rng.random() >= c.buy_p:
            return
        t += float(rng.exponential(_GAP_S))
        amount = round(float(rng.gamma(4.0, c.mean_order / 4.0)), 2) + 0.01
        money = {"amount": amount, "currency": "EUR", "category": category, "channel": "web"}
        out.append((t, {"type": "purchase", "quantity": 1 + int(rng.poisson(0.5)), **money}))
        if rng.random() < c.refund_p:
            out.append((t + float(rng.uniform(2.0, 10.0)) * DAY, {"type": "refund", **money}))

    def _newsletters(self, c: _Customer, rng: np.random.Generator, until: float) -> None:
        start = self.config.start_epoch
        k = max(0, int((c.arrival - start) // _NEWSLETTER_EVERY_S) + 1)
        while (t := start + k * _NEWSLETTER_EVERY_S) < until:
            k += 1
            if rng.random() >= c.open_p:
                continue
            t += float(rng.exponential(6 * 3600.0))
            c.events.append((t, {"type": "email_open", "channel": "email"}))
            if rng.random() < c.click_p:
                c.events.append((t + float(rng.exponential(120.0)), {"type": "email_click", "channel": "email"}))


def simulate_btyd(customers: int, days: float, seed: int = 1) -> SimRun:
    """The ``btyd`` scenario of ``bench/quality.py`` in memory."""
    gen = BtydStream(BtydConfig(customers=customers, days=days, seed=seed))
    events = list(gen.events())
    config = {"scenario": "btyd", "customers": customers, "days": days, "seed": seed, "drift_share": 0.0}
    return SimRun(
        [orjson.dumps(e.event) for e in events],
        [e.key for e in events],
        [e.ts for e in events],
        [e.persona for e in events],
        list(gen.truth),
        gen.customer_count,
        0,
        {**config, "events": len(events)},
    )


def _tiers(values: list[float]) -> list[str]:
    """``tier-1`` (lowest quartile) .. ``tier-4`` per value."""
    if not values:
        return []
    cuts = np.quantile(np.asarray(values), [0.25, 0.5, 0.75])
    return [f"tier-{1 + int(np.searchsorted(cuts, v, side='right'))}" for v in values]
