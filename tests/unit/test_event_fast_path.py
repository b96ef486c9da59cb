"""parse_event's fast path gives what the full model gives: the same event for valid input, the same error otherwise.

The reference is :class:`~segmenter.events.CustomerEvent` itself (its Python validators
included), worded by the same error mapping. The generated events sit on the edges of the
rules the fast path checks outside pydantic: the UTC range after an offset, ``amount`` for
money, the bounds of ``properties``; often more than one field is wrong at once.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError, field_validator

from segmenter.errors import EventError
from segmenter.events import (
    MAX_AMOUNT,
    MAX_PROPERTIES,
    MAX_PROPERTIES_DEPTH,
    CustomerEvent,
    EventType,
    _event_error,
    _validator_without_python_rules,
    parse_event,
    validate_event,
)

Outcome = tuple[Any, ...]


def reference(raw: bytes) -> Outcome:
    """What the full model makes of ``raw``."""
    try:
        return seen(CustomerEvent.model_validate_json(raw))
    except ValidationError as exc:
        return failed(_event_error(exc))


def seen(ev: CustomerEvent) -> Outcome:
    """Everything of an event that can differ: values and their types, the fields set, the zone object."""
    values = [(name, type(value), value) for name, value in ev.__dict__.items()]
    return ("event", type(ev), values, type(ev.ts.tzinfo), ev.ts.tzinfo, ev.model_fields_set)


def failed(err: EventError) -> Outcome:
    return ("error", err.reason, err.field, err.detail)


def fast(raw: bytes) -> Outcome:
    try:
        return seen(parse_event(raw))
    except EventError as err:
        return failed(err)


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return value


EDGE_TS = [
    "1970-01-01T00:00:00Z",
    "1970-01-01T00:00:00+00:01",
    "1970-01-01T00:00:00-00:01",
    "1969-12-31T23:59:59.999999Z",
    "1969-12-31T23:00:00-01:00",
    "2079-12-31T23:59:59.999999Z",
    "2080-01-01T00:00:00Z",
    "2080-01-01T00:30:00+01:00",
    "2079-12-31T23:30:00-01:00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-03-01T10:00:00",
    "2026-03-01T10:00:00+00:00",
    "2026-03-01T10:00:00.5+05:30",
    "2026-03-01 10:00:00Z",
    "yesterday",
    1767225600,
]
PROPERTIES = [
    None,
    {},
    {"coupon": "X"},
    {str(i): i for i in range(MAX_PROPERTIES)},
    {str(i): i for i in range(MAX_PROPERTIES + 1)},
    {"a": deep(MAX_PROPERTIES_DEPTH - 1)},
    {"a": deep(MAX_PROPERTIES_DEPTH)},
    {"a": {"b": [2**63 - 1, -(2**63)]}},
    {"a": {"b": [2**63]}},
    {"a": [1.5, True, None, "x"]},
    [1, 2],
    "text",
]
AMOUNTS = [None, 0, 0.0, 12.5, MAX_AMOUNT, MAX_AMOUNT * 2, -1, "12", True]


def event_json(rng: random.Random) -> bytes:
    """One generated event: usually valid in its Rust-checked fields, on an edge of the Python-checked rules."""
    data: dict[str, Any] = {
        "event_id": rng.choice(["e1", "", "x" * 129]) if rng.random() < 0.1 else f"e{rng.randrange(10**6)}",
        "customer_id": f"c{rng.randrange(1000)}",
        "type": rng.choice([*(t.value for t in EventType), "purchase", "refund", "teleport"]),
        "ts": rng.choice(EDGE_TS) if rng.random() < 0.5 else f"2026-03-01T10:{rng.randrange(60):02}:00+01:00",
    }
    for name, choices in (("amount", AMOUNTS), ("properties", PROPERTIES)):
        value = rng.choice(choices)
        if value is not None or rng.random() < 0.2:  # a null is sometimes sent, usually the field is left out
            data[name] = value
    if rng.random() < 0.3:
        data.update(currency=rng.choice(["EUR", "eur"]), quantity=rng.choice([1, 0]), channel="web")
    if rng.random() < 0.05:
        data["colour"] = "red"
    if rng.random() < 0.1:
        del data[rng.choice(["event_id", "customer_id", "type", "ts"])]
    return orjson.dumps(data)


def test_the_generated_events_reach_every_branch() -> None:
    outcomes = [reference(event_json(random.Random(seed))) for seed in range(2000)]
    fields = {o[2] for o in outcomes if o[0] == "error"}
    assert {"ts", "amount", "properties", "type", "event_id"} <= fields
    assert sum(o[0] == "event" for o in outcomes) > 200
    assert any(o[0] == "error" and "more)" in o[3] for o in outcomes)  # several faults at once are counted


@pytest.mark.timeout(120)
def test_fast_path_matches_the_full_model_on_generated_events() -> None:
    rng = random.Random(15)
    for _ in range(20_000):
        raw = event_json(rng)
        assert fast(raw) == reference(raw), raw


EDGE_ZONES = st.sampled_from([timezone(timedelta(minutes=m)) for m in (-1439, -60, -1, 0, 1, 60, 1439)])
NEAR_THE_RANGE = st.datetimes(min_value=datetime(1969, 12, 30), max_value=datetime(2080, 1, 2), timezones=EDGE_ZONES)
AROUND_1970 = st.datetimes(min_value=datetime(1969, 12, 31, 23), max_value=datetime(1970, 1, 2), timezones=st.just(UTC))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.sampled_from([t.value for t in EventType]), NEAR_THE_RANGE | AROUND_1970, st.none() | st.floats())
def test_fast_path_matches_the_full_model_at_the_range_edges(kind: str, ts: datetime, amount: float | None) -> None:
    data: dict[str, Any] = {"event_id": "e", "customer_id": "c", "type": kind, "ts": ts.isoformat()}
    if amount is not None:
        data["amount"] = amount
    raw = orjson.dumps(data)
    assert fast(raw) == reference(raw)


TS_PARTS = (
    ["0000", "0001", "1969", "1970", "2024", "2079", "2080", "9999"],
    ["00", "01", "02", "12", "13"],
    ["00", "01", "28", "29", "30", "31", "32"],
    ["T", "t", " "],
    ["00", "23", "24"],
    [":00", ":59", ":60", ""],
    [":00", ":59", ":60", ""],
    ["", ".0", ".5", ".123456", ".9999999", ","],
    ["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+00:60", "+01:30", "+0130", "+01", "-20:45", ""],
)
"""Parts of a timestamp, each with values on and past the edges of the fast path's form and of the calendar."""


def test_fast_path_matches_the_full_model_on_timestamps_at_the_edges_of_its_form() -> None:
    rng = random.Random(17)
    accepted = 0
    for _ in range(20_000):
        ts = "{}-{}-{}{}{}{}{}{}{}".format(*(rng.choice(part) for part in TS_PARTS))
        raw = orjson.dumps({"event_id": "e", "customer_id": "c", "type": "page_view", "ts": ts})
        expected = reference(raw)
        assert fast(raw) == expected, ts
        accepted += expected[0] == "event"
    assert accepted > 200


def test_validate_event_takes_the_same_path() -> None:
    rng = random.Random(16)
    for _ in range(2000):
        raw = event_json(rng)
        try:
            got = seen(validate_event(orjson.loads(raw)))
        except EventError as err:
            got = failed(err)
        assert got == reference(raw)


def test_fast_path_matches_the_full_model_on_the_hostile_corpus() -> None:
    files = sorted((Path(__file__).parent / "data" / "hostile_events").iterdir())
    assert len(files) > 10
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".json":  # not the .bin files: parse_event's UTF-8 check answers them first
            assert fast(raw) == reference(raw), path.name


class WithANewRule(CustomerEvent):
    @field_validator("channel")
    @classmethod
    def _known_channel(cls, value: str | None) -> str | None:
        if value not in (None, "web", "app"):
            raise ValueError("unknown channel")
        return value


def test_a_validator_the_fast_path_does_not_replicate_stops_it_from_being_built() -> None:
    assert _validator_without_python_rules(CustomerEvent) is not None
    with pytest.raises(RuntimeError, match="_known_channel"):
        _validator_without_python_rules(WithANewRule)
