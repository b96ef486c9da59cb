"""The input event contract: valid events parse, every kind of bad input is a typed EventError."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from segmenter.errors import EventError
from segmenter.events import MAX_AMOUNT, MAX_EVENT_BYTES, CustomerEvent, EventType, parse_event, validate_event


def event(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "type": "page_view",
        "ts": "2026-03-01T10:00:00+00:00",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def reject(raw: bytes | dict[str, Any]) -> EventError:
    with pytest.raises(EventError) as info:
        parse_event(raw if isinstance(raw, bytes) else orjson.dumps(raw))
    return info.value


def test_valid_purchase_is_parsed_and_normalised_to_utc() -> None:
    ev = parse_event(
        orjson.dumps(
            event(
                type="purchase",
                amount=12.5,
                currency="EUR",
                quantity=2,
                ts="2026-03-01T12:00:00+02:00",
                properties={"coupon": "X"},
            )
        )
    )
    assert ev.type is EventType.PURCHASE
    assert ev.ts == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert ev.epoch == ev.ts.timestamp()
    assert ev.amount == 12.5 and ev.quantity == 2 and ev.properties == {"coupon": "X"}


def test_a_leading_byte_order_mark_is_ignored_as_rfc_8259_allows() -> None:
    raw = orjson.dumps(event(type="purchase", amount=4.0))
    assert parse_event(b"\xef\xbb\xbf" + raw) == parse_event(raw)
    assert parse_event("\ufeff" + raw.decode()) == parse_event(raw)
    assert reject(b"\xef\xbb\xbf").reason == "not_json"  # nothing after the mark
    assert reject(b" \xef\xbb\xbf" + raw).reason == "not_json"  # a mark elsewhere is not skipped


def test_integer_amount_is_accepted_as_a_number() -> None:
    assert parse_event(orjson.dumps(event(type="refund", amount=3))).amount == 3.0


@pytest.mark.parametrize(
    ("raw", "reason", "field", "words"),
    [
        (b"{not json", "not_json", None, "JSON"),
        (b"[1, 2]", "not_json", None, "JSON object"),
        (b"\xff\xfe{}", "not_utf8", None, "UTF-8"),
        (event(type="purchase"), "schema", "amount", "required"),
        (event(type="refund"), "schema", "amount", "required"),
        (event(type="purchase", amount=-1), "schema", "amount", "greater than or equal to 0"),
        (event(type="purchase", amount="12"), "schema", "amount", "number"),
        (event(ts="2026-03-01T10:00:00"), "schema", "ts", "UTC offset"),
        (event(ts="yesterday"), "schema", "ts", "datetime"),
        (event(type="teleport"), "schema", "type", "unknown event type 'teleport'"),
        (event(event_id=""), "schema", "event_id", "at least 1"),
        (event(customer_id="x" * 129), "schema", "customer_id", "at most 128"),
        (event(customer_id=None), "schema", "customer_id", "required"),
        (event(quantity=0), "schema", "quantity", "greater than or equal to 1"),
        (event(quantity=True), "schema", "quantity", "integer"),
        (event(currency="euro"), "schema", "currency", "pattern"),
        (event(colour="red"), "schema", "colour", "properties"),
        (event(properties={str(i): i for i in range(65)}), "schema", "properties", "at most 64"),
    ],
)
def test_bad_input_names_reason_and_field(
    raw: bytes | dict[str, Any], reason: str, field: str | None, words: str
) -> None:
    err = reject(raw)
    assert err.reason == reason
    assert err.field == field
    assert words in err.detail


def test_non_finite_amount_is_rejected() -> None:
    raw = b'{"event_id":"e","customer_id":"c","type":"purchase","ts":"2026-01-01T00:00:00Z","amount":1e999}'
    err = reject(raw)
    assert (err.reason, err.field) == ("schema", "amount")
    assert "finite" in err.detail


def test_oversized_message_is_rejected_before_decoding() -> None:
    raw = orjson.dumps(event(properties={"blob": "x" * MAX_EVENT_BYTES}))
    assert reject(raw).reason == "too_large"


def test_validate_event_applies_the_same_rules_to_decoded_objects() -> None:
    assert validate_event(event()).customer_id == "c-1"
    with pytest.raises(EventError, match="amount"):
        validate_event(event(type="purchase"))
    with pytest.raises(EventError) as info:
        validate_event(event(properties={"x": object()}))
    assert info.value.reason == "schema"


def test_events_are_immutable() -> None:
    ev = parse_event(orjson.dumps(event()))
    with pytest.raises(ValueError, match="frozen"):
        ev.customer_id = "other"  # type: ignore[misc]


ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=128)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2079, 12, 30), timezones=offsets)
amounts = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(event_id=ids, customer_id=ids, kind=st.sampled_from(list(EventType)), ts=times, amount=amounts)
def test_round_trip_of_any_valid_event(
    event_id: str, customer_id: str, kind: EventType, ts: datetime, amount: float
) -> None:
    raw = orjson.dumps(
        {"event_id": event_id, "customer_id": customer_id, "type": kind.value, "ts": ts.isoformat(), "amount": amount}
    )
    ev = parse_event(raw)
    assert (ev.event_id, ev.customer_id, ev.type) == (event_id, customer_id, kind)
    assert ev.ts == ts and ev.ts.tzinfo == UTC
    assert ev.amount == amount
    assert parse_event(ev.model_dump_json().encode()) == ev


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        ev = parse_event(raw)
    except EventError as err:
        assert err.reason in {"not_utf8", "not_json", "schema"}
    else:
        assert isinstance(ev, CustomerEvent)


@given(
    st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([MAX_AMOUNT, math.nextafter(MAX_AMOUNT, math.inf)])
)
def test_only_finite_amounts_from_zero_to_the_maximum_pass(amount: float) -> None:
    # orjson writes NaN/inf as null; build the JSON text by hand to send the literal tokens
    token = {math.inf: "1e999", -math.inf: "-1e999"}.get(amount, "NaN" if math.isnan(amount) else repr(amount))
    raw = '{"event_id":"e","customer_id":"c","type":"purchase","ts":"2026-01-01T00:00:00Z","amount":' + token + "}"
    valid = math.isfinite(amount) and 0 <= amount <= MAX_AMOUNT
    try:
        ev = parse_event(raw.encode())
    except EventError as err:
        assert not valid
        assert (err.reason, err.field) == ("schema", "amount")
    else:
        assert valid
        assert ev.amount == amount


def test_event_types_match_the_published_contract() -> None:
    contract = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    row = next(line for line in contract.splitlines() if line.startswith("| `type` |"))
    documented = {part.strip(" `") for part in row.split("|")[3].split(",")}
    assert documented == {t.value for t in EventType}
