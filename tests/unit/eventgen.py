"""A small deterministic event generator for the core's unit tests and timings.

Customers follow one of a few personas (big spenders, regulars, browsers,
e-mail readers, one-off buyers who lapse); events are emitted in time order
with optional small disorder and repeated deliveries.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from segmenter.events import CustomerEvent, validate_event

START = datetime(2026, 1, 1, tzinfo=UTC)

# persona: (events per day, purchase share, mean amount, view share, cart share, email share, active days)
PERSONAS: dict[str, tuple[float, float, float, float, float, float, int]] = {
    "whale": (3.0, 0.25, 400.0, 0.35, 0.2, 0.05, 10_000),
    "regular": (1.0, 0.15, 60.0, 0.4, 0.2, 0.1, 10_000),
    "browser": (2.0, 0.01, 30.0, 0.6, 0.25, 0.04, 10_000),
    "reader": (0.5, 0.02, 40.0, 0.1, 0.02, 0.8, 10_000),
    "lapser": (2.0, 0.2, 80.0, 0.4, 0.2, 0.05, 5),
}


def make_events(
    n_customers: int,
    days: float,
    seed: int = 0,
    disorder_s: float = 0.0,
    dup_rate: float = 0.0,
    erase: int = 0,
) -> list[dict[str, Any]]:
    """Event dicts (JSON-ready), sorted by time apart from ``disorder_s`` jitter."""
    rng = random.Random(seed)
    names = list(PERSONAS)
    rows: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    for c in range(n_customers):
        persona = names[c % len(names)]
        rate, p_buy, amount, p_view, p_cart, p_mail, active = PERSONAS[persona]
        cid = f"cust-{c:06d}"
        t = rng.uniform(0, min(days, 3)) * 86_400
        horizon = min(days, t / 86_400 + active) * 86_400
        while t < horizon:
            r = rng.random()
            if r < p_buy:
                ev: dict[str, Any] = {"type": "purchase", "amount": round(rng.expovariate(1 / amount), 2)}
            elif r < p_buy + p_view:
                ev = {"type": "product_view"}
            elif r < p_buy + p_view + p_cart:
                ev = {"type": "add_to_cart"}
            elif r < p_buy + p_view + p_cart + p_mail:
                ev = {"type": rng.choice(["email_open", "email_open", "email_click"])}
            else:
                ev = {"type": rng.choice(["session_start", "page_view", "search"])}
            seq += 1
            ev["event_id"] = f"e{seq}"
            ev["customer_id"] = cid
            rows.append((t + rng.uniform(-disorder_s, disorder_s), seq, ev))
            if dup_rate and rng.random() < dup_rate:
                rows.append((t + rng.uniform(0, disorder_s), seq, dict(ev)))
            t += rng.expovariate(rate) * 86_400
    for _ in range(erase):
        cid = f"cust-{rng.randrange(n_customers):06d}"
        seq += 1
        rows.append(
            (
                rng.uniform(days / 2, days) * 86_400,
                seq,
                {"type": "erasure_request", "event_id": f"e{seq}", "customer_id": cid},
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    out = []
    for t, _, ev in rows:
        ev["ts"] = (START + timedelta(seconds=max(0.0, t))).isoformat().replace("+00:00", "Z")
        out.append(ev)
    return out


def to_events(dicts: list[dict[str, Any]]) -> list[CustomerEvent]:
    """Validate event dicts into :class:`CustomerEvent` objects."""
    return [validate_event(d) for d in dicts]
