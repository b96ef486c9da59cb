"""Simulated customers following personas, emitted in event-time order.

The simulation is a discrete-event loop over simulated time: a heap of
*scheduled actions* (a customer's next session, a marketing e-mail reaching a
customer, a new customer arriving, a customer drifting to another persona) and
a heap of *generated events* waiting to be emitted. A session's events are
generated when it starts and wait in the second heap; an event is emitted once
no scheduled action can come before it, so the stream is in event-time order
(the fault injector may reorder it later, on purpose).

Everything random comes from one :class:`numpy.random.Generator` seeded with
``SimConfig.seed`` and consumed in a fixed order, so a seed gives the same
events byte for byte. Events are plain dicts (no pydantic on the hot path).

Examples
--------
>>> from datetime import UTC, datetime
>>> sim = Simulator(SimConfig(customers=3, days=2, seed=1, start=datetime(2026, 1, 1, tzinfo=UTC)))
>>> first = next(iter(sim.events()))
>>> first.event["type"], first.event["ts"] >= "2026-01-01"
('session_start', True)
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

import numpy as np
import orjson

from producer.personas import DEFAULT_ARRIVAL_MIX, DEFAULT_DRIFT, DEFAULT_INITIAL_MIX, DEFAULT_PERSONAS, Persona
from producer.runner import Outgoing

log = logging.getLogger(__name__)

DAY = 86400.0
_SESSION, _EMAIL, _ARRIVAL, _DRIFT = 0, 1, 2, 3


def iso(epoch: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with milliseconds, e.g. ``2026-01-01T00:00:00.000+00:00``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


class Span:
    """The event-time span of a run's config: ``start`` (timezone-aware) and ``days``."""

    start: datetime
    days: float

    @property
    def start_epoch(self) -> float:
        """``start`` in epoch seconds."""
        return self.start.timestamp()

    @property
    def end_epoch(self) -> float:
        """End of the simulated span (exclusive), epoch seconds."""
        return self.start.timestamp() + self.days * DAY


def check_span(customers: int, days: float, start: datetime, example_start: str) -> None:
    """The checks every run config starts with: ``customers >= 0``, ``days > 0``, a timezone-aware ``start``.

    Raises
    ------
    ValueError
        Naming the field and its value (``example_start`` shows a valid ``start``).
    """
    if customers < 0:
        raise ValueError(f"customers must be >= 0, got {customers}")
    if not (math.isfinite(days) and days > 0):
        raise ValueError(f"days must be > 0, got {days}")
    if start.tzinfo is None:
        raise ValueError(f"start needs a timezone, e.g. {example_start}")


@dataclass(frozen=True)
class SimConfig(Span):
    """Settings of one simulation run.

    Attributes
    ----------
    customers
        Customers present at ``start``.
    days
        Simulated span; nothing is generated at or after ``start + days``.
    start
        Event time of the run's beginning (timezone-aware).
    seed
        Seed of the random generator; the same config gives the same events.
    drift_share
        Share of customers (initial and arriving) who switch persona once, at a
        moment drawn uniformly in the middle half of their remaining time.
    arrivals_per_day
        Rate of new customers (each starts with ``signup``); ``None`` means
        ``customers * 0.005``.
    emails_per_week
        Marketing e-mails reaching every customer (only opens and clicks are events).
    initial_mix, arrival_mix
        Persona weights of initial and arriving customers.
    drift
        Persona transitions of drifting customers: ``from -> ((to, weight), ...)``.
    personas
        The personas (names must cover the mixes and transitions).
    currency
        ISO currency of purchases and refunds.
    """

    customers: int = 1000
    days: float = 90.0
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    seed: int = 0
    drift_share: float = 0.2
    arrivals_per_day: float | None = None
    emails_per_week: float = 2.0
    initial_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_INITIAL_MIX))
    arrival_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ARRIVAL_MIX))
    drift: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=lambda: dict(DEFAULT_DRIFT))
    personas: tuple[Persona, ...] = DEFAULT_PERSONAS
    currency: str = "EUR"

    def __post_init__(self) -> None:
        check_span(self.customers, self.days, self.start, "2026-01-01T00:00:00Z")
        self._check_rates()
        self._check_personas()

    def _check_rates(self) -> None:
        if not 0.0 <= self.drift_share <= 1.0:
            raise ValueError(f"drift_share must be in [0, 1], got {self.drift_share}")
        if self.arrivals_per_day is not None and not (
            math.isfinite(self.arrivals_per_day) and self.arrivals_per_day >= 0
        ):
            raise ValueError(f"arrivals_per_day must be >= 0, got {self.arrivals_per_day}")
        if not (math.isfinite(self.emails_per_week) and self.emails_per_week >= 0):
            raise ValueError(f"emails_per_week must be >= 0, got {self.emails_per_week}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def _check_personas(self) -> None:
        names = {p.name for p in self.personas}
        if len(names) != len(self.personas):
            raise ValueError("persona names must be unique")
        for label, mix in (("initial_mix", self.initial_mix), ("arrival_mix", self.arrival_mix)):
            unknown = sorted(set(mix) - names)
            if unknown:
                raise ValueError(f"{label}: unknown personas {unknown}; known: {sorted(names)}")
            if sum(mix.values()) <= 0:
                raise ValueError(f"{label}: needs a positive weight")
        for src, targets in self.drift.items():
            unknown = sorted(({src} | {t for t, _ in targets}) - names)
            if unknown:
                raise ValueError(f"drift: unknown personas {unknown}; known: {sorted(names)}")

    @property
    def arrival_rate(self) -> float:
        """New customers per day."""
        return self.customers * 0.005 if self.arrivals_per_day is None else self.arrivals_per_day


@dataclass(frozen=True)
class TruthEntry:
    """One step of a customer's persona timeline: ``persona`` holds from ``start`` on.

    ``cause`` is ``initial`` (present at the run's start), ``arrival`` (signed
    up during the run) or ``drift`` (switched persona).
    """

    customer_id: str
    persona: str
    start: float
    cause: str

    def to_json(self) -> dict[str, Any]:
        """The truth-file line: ``customer_id``, ``persona``, ``from`` (ISO event time), ``cause``."""
        return {"customer_id": self.customer_id, "persona": self.persona, "from": iso(self.start), "cause": self.cause}


class SimEvent(NamedTuple):
    """One generated event: its epoch time, Kafka key, JSON-ready dict and the persona that produced it."""

    ts: float
    key: bytes
    event: dict[str, Any]
    persona: str


class _Draws:
    """Buffered draws from one numpy Generator (scalar numpy calls are slow on the hot path)."""

    __slots__ = ("_block", "_gen", "_n", "_ni", "_u", "_ui")

    def __init__(self, gen: np.random.Generator, block: int = 16384) -> None:
        self._gen = gen
        self._block = block
        self._u: list[float] = []
        self._ui = 0
        self._n: list[float] = []
        self._ni = 0

    def uniform(self) -> float:
        i = self._ui
        if i >= len(self._u):
            self._u = self._gen.random(self._block).tolist()
            i = 0
        self._ui = i + 1
        return self._u[i]

    def normal(self) -> float:
        i = self._ni
        if i >= len(self._n):
            self._n = self._gen.standard_normal(self._block).tolist()
            i = 0
        self._ni = i + 1
        return self._n[i]

    def exponential(self, mean: float) -> float:
        return -mean * math.log(1.0 - self.uniform())

    def poisson(self, lam: float) -> int:
        # Knuth's method: fine for the small means used per session.
        if lam <= 0:
            return 0
        limit = math.exp(-lam)
        k = 0
        p = self.uniform()
        while p > limit:
            k += 1
            p *= self.uniform()
        return k

    def pick(self, cumulative: list[float]) -> int:
        return min(bisect_right(cumulative, self.uniform() * cumulative[-1]), len(cumulative) - 1)


class _Visit(NamedTuple):
    """One session under way: the customer's row, persona and persona index, and the tags of its events."""

    idx: int
    persona: Persona
    tags: dict[str, str]
    """``channel`` and ``session_id`` (the fields every in-session event carries)."""
    pi: int


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


class Simulator:
    """Generate a deterministic, event-time ordered stream of customer behaviour.

    Parameters
    ----------
    config
        The run's settings.

    Attributes
    ----------
    truth
        Persona timeline entries, appended as customers appear and drift
        (only what happened up to the point the stream was consumed).
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.truth: list[TruthEntry] = []
        self._personas = config.personas
        self._index = {p.name: i for i, p in enumerate(config.personas)}
        self._draw = _Draws(np.random.default_rng(config.seed))
        self._prefix = f"s{config.seed}-"
        self._seq = itertools.count()
        self._event_no = itertools.count()
        self._sched: list[tuple[float, int, int, int, int]] = []
        self._out: list[tuple[float, int, bytes, dict[str, Any], int]] = []
        self._start = config.start_epoch
        self._end = config.end_epoch
        # per-customer columns
        self._cid: list[str] = []
        self._key: list[bytes] = []
        self._persona: list[int] = []
        self._since: list[float] = []
        self._version: list[int] = []
        self._sessions: list[int] = []
        self._channel: list[str] = []
        names = [p.name for p in config.personas]
        self._initial_cum = _cumulative([config.initial_mix.get(n, 0.0) for n in names])
        self._arrival_cum = _cumulative([config.arrival_mix.get(n, 0.0) for n in names])
        self._cat_names = [[c for c, _ in p.categories] for p in config.personas]
        self._cat_cum = [_cumulative([w for _, w in p.categories]) for p in config.personas]
        self._drift_to: list[tuple[list[int], list[float]]] = []
        for p in config.personas:
            targets = config.drift.get(p.name, ())
            self._drift_to.append(([self._index[t] for t, _ in targets], _cumulative([w for _, w in targets])))
        self._email_mean_gap = 7.0 * DAY / config.emails_per_week if config.emails_per_week > 0 else math.inf
        self.drifts = 0
        self.arrivals = 0
        self._started = False

    # -- public ---------------------------------------------------------------------------------

    @property
    def customer_count(self) -> int:
        """Customers created so far."""
        return len(self._cid)

    def persona_counts(self) -> dict[str, int]:
        """Customers per current persona."""
        counts = Counter(self._personas[i].name for i in self._persona)
        return {p.name: counts.get(p.name, 0) for p in self._personas}

    def events(self) -> Iterator[SimEvent]:
        """Yield every event of the run in non-decreasing event time.

        Can be consumed only once; stopping early is fine (``truth`` then
        covers what happened up to the last yielded event's time, give or
        take the scheduled actions already processed).
        """
        if self._started:
            raise RuntimeError("Simulator.events() can be consumed only once; create a new Simulator")
        self._started = True
        self._setup()
        sched, out = self._sched, self._out
        pop, names = heapq.heappop, [p.name for p in self._personas]
        end = self._end
        while sched or out:
            horizon = sched[0][0] if sched else math.inf
            while out and out[0][0] <= horizon:
                t, _, key, event, persona = pop(out)
                yield SimEvent(t, key, event, names[persona])
            if not sched:
                break
            t, _, kind, idx, version = pop(sched)
            if t >= end:
                sched.clear()
                continue
            if kind == _SESSION:
                if version == self._version[idx]:
                    self._session(idx, t)
            elif kind == _EMAIL:
                self._email(idx, t)
            elif kind == _ARRIVAL:
                self._arrival(t)
            else:
                self._drift(idx, t)

    # -- scheduling -----------------------------------------------------------------------------

    def _push(self, t: float, kind: int, idx: int, version: int = 0) -> None:
        if t < self._end:
            heapq.heappush(self._sched, (t, next(self._seq), kind, idx, version))

    def _emit(self, t: float, idx: int, etype: str, fields: dict[str, Any]) -> None:
        if t < self._end:
            event = {
                "event_id": f"{self._prefix}{next(self._event_no)}",
                "customer_id": self._cid[idx],
                "type": etype,
                "ts": iso(t),
            }
            event.update(fields)
            heapq.heappush(self._out, (t, next(self._seq), self._key[idx], event, self._persona[idx]))

    def _setup(self) -> None:
        cfg = self.config
        for _ in range(cfg.customers):
            persona = self._draw.pick(self._initial_cum)
            # lapsing customers have been lapsing for a while already
            since = self._start - self._draw.uniform() * 20 * DAY
            self._new_customer(self._start, persona, since, "initial")
        if cfg.arrival_rate > 0:
            self._push(self._start + self._draw.exponential(DAY / cfg.arrival_rate), _ARRIVAL, -1)

    def _new_customer(self, t: float, persona: int, since: float, cause: str) -> int:
        idx = len(self._cid)
        cid = f"c{idx:07d}"
        self._cid.append(cid)
        self._key.append(cid.encode())
        self._persona.append(persona)
        self._since.append(since)
        self._version.append(0)
        self._sessions.append(0)
        self._channel.append("app" if self._draw.uniform() < 0.4 else "web")
        self.truth.append(TruthEntry(cid, self._personas[persona].name, t, cause))
        if cause == "arrival":
            # a new customer explores right after signing up
            self._push(t + self._draw.exponential(600.0), _SESSION, idx, 0)
        else:
            self._schedule_session(idx, t)
        self._push(t + self._draw.exponential(self._email_mean_gap), _EMAIL, idx)
        if self._draw.uniform() < self.config.drift_share and self._drift_to[persona][0]:
            when = t + (0.25 + 0.5 * self._draw.uniform()) * (self._end - t)
            self._push(when, _DRIFT, idx)
        return idx

    def _schedule_session(self, idx: int, t: float) -> None:
        p = self._personas[self._persona[idx]]
        rate = p.sessions_per_day / DAY  # per second
        if rate <= 0:
            return
        unit = self._draw.exponential(1.0)
        if p.activity_half_life_days is None:
            gap = unit / rate
        else:
            # Non-homogeneous Poisson process with rate(t) = rate * 2**(-(t - since) / half_life):
            # invert its cumulative intensity; past its total mass there is no further session.
            k = math.log(2) / (p.activity_half_life_days * DAY)
            now = rate * math.exp(-k * (t - self._since[idx]))
            mass = unit * k / now if now > 0 else math.inf
            if mass >= 1.0:
                return
            gap = -math.log1p(-mass) / k
        self._push(t + gap, _SESSION, idx, self._version[idx])

    # -- actions --------------------------------------------------------------------------------

    def _arrival(self, t: float) -> None:
        self.arrivals += 1
        persona = self._draw.pick(self._arrival_cum)
        idx = self._new_customer(t, persona, t, "arrival")
        self._emit(t, idx, "signup", {"channel": self._channel[idx]})
        self._push(t + self._draw.exponential(DAY / self.config.arrival_rate), _ARRIVAL, -1)

    def _drift(self, idx: int, t: float) -> None:
        targets, cum = self._drift_to[self._persona[idx]]
        new = targets[self._draw.pick(cum)]
        self.drifts += 1
        self._persona[idx] = new
        self._since[idx] = t
        self._version[idx] += 1  # the pending session was drawn with the old rate
        self.truth.append(TruthEntry(self._cid[idx], self._personas[new].name, t, "drift"))
        self._schedule_session(idx, t)

    def _email(self, idx: int, t: float) -> None:
        p = self._personas[self._persona[idx]]
        draw = self._draw
        if draw.uniform() < p.email_open_prob:
            opened = t + draw.exponential(3 * 3600.0)
            self._emit(opened, idx, "email_open", {"channel": "email"})
            if draw.uniform() < p.email_click_prob:
                clicked = opened + draw.exponential(120.0)
                self._emit(clicked, idx, "email_click", {"channel": "email"})
        self._push(t + draw.exponential(self._email_mean_gap), _EMAIL, idx)

    def _session(self, idx: int, t: float) -> None:
        """A web session: views, searches and cart moves, then a purchase, an abandoned checkout or nothing."""
        pi = self._persona[idx]
        p = self._personas[pi]
        draw = self._draw
        n = self._sessions[idx]
        self._sessions[idx] = n + 1
        visit = _Visit(idx, p, {"channel": self._channel[idx], "session_id": f"{self._cid[idx]}-{n}"}, pi)
        self._emit(t, idx, "session_start", visit.tags)
        pages, products, searches = draw.poisson(p.page_views), draw.poisson(p.product_views), draw.poisson(p.searches)
        buy = draw.uniform() < p.purchase_prob
        t, cart = self._browse(visit, t, pages, products, searches)
        if buy and not cart:  # a buyer who put nothing in the cart picks one product
            t, cat = self._view_product(visit, t + draw.exponential(40.0))
            t = self._add_to_cart(visit, t + draw.exponential(20.0), cat, cart)
        t, kept = self._trim_cart(visit, t, cart, buy)
        if buy:
            t = self._purchase(visit, t, kept)
        elif kept and draw.uniform() < p.checkout_abandon_prob:
            t += draw.exponential(60.0)
            self._emit(t, idx, "checkout_start", visit.tags)
        self._schedule_session(idx, t)

    def _browse(self, visit: _Visit, t: float, pages: int, products: int, searches: int) -> tuple[float, list[str]]:
        """The session's page views, searches and product views in random order; returns (time, cart)."""
        draw = self._draw
        uniform, step, emit = draw.uniform, draw.exponential, self._emit
        idx, tags, add_prob = visit.idx, visit.tags, visit.persona.cart_add_prob
        cart: list[str] = []
        remaining = pages + products + searches
        while remaining:
            t += step(40.0)
            r = uniform() * remaining
            if r < pages:
                pages -= 1
                emit(t, idx, "page_view", tags)
            elif r < pages + searches:
                searches -= 1
                emit(t, idx, "search", tags)
            else:
                products -= 1
                t, cat = self._view_product(visit, t)
                if uniform() < add_prob:
                    t = self._add_to_cart(visit, t + step(20.0), cat, cart)
            remaining = pages + products + searches
        return t, cart

    def _view_product(self, visit: _Visit, t: float) -> tuple[float, str]:
        """A ``product_view`` of a category drawn from the persona's mix; returns (time, category)."""
        cat = self._cat_names[visit.pi][self._draw.pick(self._cat_cum[visit.pi])]
        self._emit(t, visit.idx, "product_view", {**visit.tags, "category": cat})
        return t, cat

    def _add_to_cart(self, visit: _Visit, t: float, cat: str, cart: list[str]) -> float:
        """An ``add_to_cart`` of one item of ``cat`` at ``t`` (appended to ``cart``); returns ``t``."""
        cart.append(cat)
        self._emit(t, visit.idx, "add_to_cart", {**visit.tags, "category": cat, "quantity": 1})
        return t

    def _trim_cart(self, visit: _Visit, t: float, cart: list[str], buy: bool) -> tuple[float, list[str]]:
        """Items taken out again (a buyer keeps at least the last one); returns (time, the items kept)."""
        draw = self._draw
        remove_prob = visit.persona.remove_prob
        kept: list[str] = []
        for i, cat in enumerate(cart):
            last_needed = buy and not kept and i == len(cart) - 1
            if not last_needed and draw.uniform() < remove_prob:
                t += draw.exponential(20.0)
                self._emit(t, visit.idx, "remove_from_cart", {**visit.tags, "category": cat, "quantity": 1})
            else:
                kept.append(cat)
        return t, kept

    def _purchase(self, visit: _Visit, t: float, kept: list[str]) -> float:
        """Checkout and ``purchase`` of the ``kept`` items, perhaps refunded days later; returns the time."""
        draw, p, idx = self._draw, visit.persona, visit.idx
        currency = self.config.currency
        t += draw.exponential(60.0)
        self._emit(t, idx, "checkout_start", visit.tags)
        t += draw.exponential(90.0)
        amount = round(math.exp(p.amount_mu + p.amount_sigma * draw.normal()), 2)
        purchase = {**visit.tags, "amount": amount, "currency": currency, "quantity": len(kept), "category": kept[0]}
        self._emit(t, idx, "purchase", purchase)
        if draw.uniform() < p.refund_prob:
            refund = {"channel": visit.tags["channel"], "amount": amount, "currency": currency, "category": kept[0]}
            self._emit(t + (2 + 18 * draw.uniform()) * DAY, idx, "refund", refund)
        return t


class EventSource(Protocol):
    """A generator of simulated events (:class:`Simulator`, :class:`producer.retail.SparseRetail`)."""

    def events(self) -> Iterator[SimEvent]:
        """Every event of the run in non-decreasing event time."""


def encoded(sim: EventSource) -> Iterator[Outgoing]:
    """The generator's events encoded with orjson, ready for :func:`producer.runner.run`."""
    dumps = orjson.dumps
    for ts, key, event, _ in sim.events():
        yield Outgoing(ts, key, dumps(event), event["type"])
