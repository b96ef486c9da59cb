"""Builders shared by the trigger tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from segmenter.events import CustomerEvent, EventType
from segmenter.outputs import SegmentChange, SegmentRef
from segmenter.triggers.rules import RuleSet, rules_from_dict

LOW = SegmentRef(id="value-1", name="low spend · infrequent")
MID = SegmentRef(id="value-2", name="typical")
HIGH = SegmentRef(id="value-3", name="high spend · frequent")
HIGH2 = SegmentRef(id="value-4", name="high spend · big baskets")
LAPSED = SegmentRef(id="value-5", name="lapsed · high spend")

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()
"""A Monday, noon UTC (13:00 in Berlin): outside any usual quiet hours."""
DAY = 86_400.0
FEATURES = {"spend": 800.0, "recency_days": 3.0, "frequency": 4.0, "aov": 95.5, "refund_rate": 0.0}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def rule(**overrides: Any) -> dict[str, Any]:
    """A valid rule dict (enter '*high spend*' on lens value), with overrides."""
    base: dict[str, Any] = {
        "name": "vip",
        "campaign": "vip-invite",
        "channel": "email",
        "on": {"lens": "value", "enter": "*high spend*"},
    }
    base.update(overrides)
    return base


def ruleset(*rules: dict[str, Any], **top: Any) -> RuleSet:
    return rules_from_dict({"rules": list(rules), **top})


def change(
    at: float,
    to: SegmentRef | None,
    frm: SegmentRef | None = None,
    *,
    customer: str = "c1",
    cause: str = "event",
    event_id: str | None = "auto",
    lens: str = "value",
    features: dict[str, float] | None = None,
) -> SegmentChange:
    if event_id == "auto":
        event_id = f"e-{customer}-{at:.0f}" if cause == "event" else None
    return SegmentChange(
        customer_id=customer,
        lens=lens,
        from_segment=frm,
        to_segment=to,
        cause=cause,
        cause_event_id=event_id,
        event_ts=iso(at),
        model_version=1,
        distance=0.5,
        features=dict(FEATURES if features is None else features),
        explanation=None,
    )


def event(at: float, type_: str = "purchase", **fields: Any) -> CustomerEvent:
    data: dict[str, Any] = {
        "event_id": f"ev-{at:.0f}",
        "customer_id": "c1",
        "type": EventType(type_),
        "ts": datetime.fromtimestamp(at, UTC),
    }
    if type_ in ("purchase", "refund"):
        data["amount"] = 10.0
    data.update(fields)
    return CustomerEvent.model_validate(data)
