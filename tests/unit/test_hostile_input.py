"""Hostile input: every input to the event parser is an event or a typed EventError, nothing else.

A corpus of reproductions (``data/hostile_events/``, one raw record per file, each
with the reason and field it must be rejected with) plus hypothesis fuzzing of
structured JSON-ish events, raw bytes, mutated valid events and text.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.errors import EventError
from segmenter.events import MAX_EVENT_BYTES, CustomerEvent, parse_event, validate_event

CORPUS = Path(__file__).parent / "data" / "hostile_events"

EXPECTED: dict[str, tuple[str, str | None]] = {
    "amount_5000_digits.json": ("not_json", None),
    "amount_bigint.json": ("schema", "amount"),
    "amount_huge.json": ("schema", "amount"),
    "amount_infinity.json": ("schema", "amount"),
    "amount_nan.json": ("schema", "amount"),
    "amount_overflowing_literal.json": ("schema", "amount"),
    "customer_id_oversized.json": ("schema", "customer_id"),
    "empty.json": ("not_json", None),
    "not_object_array.json": ("not_json", None),
    "not_object_null.json": ("not_json", None),
    "not_object_string.json": ("not_json", None),
    "not_utf8_byte.bin": ("not_utf8", None),
    "not_utf8_overlong.bin": ("not_utf8", None),
    "not_utf8_surrogate.bin": ("not_utf8", None),
    "properties_bigint.json": ("schema", "properties"),
    "properties_deep.json": ("schema", "properties"),
    "properties_nan.json": ("schema", "properties"),
    "properties_very_deep.json": ("not_json", None),
    "quantity_bigint.json": ("schema", "quantity"),
    "truncated.json": ("not_json", None),
    "ts_after_2079.json": ("schema", "ts"),
    "ts_before_1970.json": ("schema", "ts"),
    "ts_number.json": ("schema", "ts"),
    "ts_overflow.json": ("schema", "ts"),
    "ts_underflow.json": ("schema", "ts"),
}
"""Every corpus file and the (reason, field) it is rejected with."""

REASONS = {"not_utf8", "not_json", "schema", "too_large"}

VALID = b'{"event_id":"e1","customer_id":"c1","type":"purchase","ts":"2026-01-02T03:04:05Z","amount":12.5}'


def outcome(raw: bytes | str) -> CustomerEvent | EventError:
    """The event, or the EventError; any other exception propagates and fails the test."""
    try:
        return parse_event(raw)
    except EventError as err:
        assert err.reason in REASONS
        assert err.detail
        return err


def test_the_corpus_lists_every_reproduction() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_reproduction_is_a_typed_rejection(name: str) -> None:
    got = outcome((CORPUS / name).read_bytes())
    assert isinstance(got, EventError), f"{name} parsed: {got!r}"
    assert (got.reason, got.field) == EXPECTED[name]


def test_the_overflowing_timestamp_names_the_accepted_range() -> None:
    err = outcome((CORPUS / "ts_overflow.json").read_bytes())
    assert isinstance(err, EventError)
    assert "9999-12-31T23:59:59-23:59" in err.detail and "1970" in err.detail and "2079" in err.detail


@pytest.mark.parametrize(
    ("ts", "ok"),
    [
        ("1970-01-01T00:00:00Z", True),
        ("1970-01-01T00:59:59+01:00", False),
        ("2079-12-31T23:59:59.999999Z", True),
        ("2079-12-31T23:00:00-01:00", False),
        ("2079-12-31T23:59:59+01:00", True),
    ],
)
def test_the_time_range_is_checked_after_conversion_to_utc(ts: str, ok: bool) -> None:
    raw = VALID.replace(b"2026-01-02T03:04:05Z", ts.encode())
    assert isinstance(outcome(raw), CustomerEvent) is ok


def test_text_input_is_measured_and_checked_like_bytes() -> None:
    assert outcome(VALID.decode()) == parse_event(VALID)
    surrogate = outcome(VALID.decode().replace("c1", "c\ud800"))
    assert isinstance(surrogate, EventError) and surrogate.reason == "not_utf8"
    wide = VALID.decode()[:-1] + ',"properties":{"x":"' + "é" * (MAX_EVENT_BYTES // 2) + '"}}'
    assert len(wide) < MAX_EVENT_BYTES < len(wide.encode())
    big = outcome(wide)
    assert isinstance(big, EventError) and big.reason == "too_large"


def test_properties_at_the_depth_limit_are_kept() -> None:
    raw = VALID[:-1] + b',"properties":{"a":' + b"[" * 7 + b"1.5" + b"]" * 7 + b"}}"
    ev = outcome(raw)
    assert isinstance(ev, CustomerEvent) and ev.properties is not None


# --------------------------------------------------------------------------- fuzzing

HOSTILE_SCALARS = st.sampled_from(
    [
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-01-02T03:04:05Z",
        "purchase",
        "page_view",
        "NaN",
        "",
        "\x00",
        "9" * 40,
    ]
)
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda minutes: timezone(timedelta(minutes=minutes)))
"""Every UTC offset a timestamp may carry, up to the extreme -23:59 and +23:59."""
EDGE_TIMES = st.datetimes(min_value=datetime(9999, 12, 31), timezones=OFFSETS) | st.datetimes(
    max_value=datetime(1, 1, 2), timezones=OFFSETS
)
"""Times on the first and last day ``datetime`` can hold, where a UTC offset can push them out of range."""
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**300), max_value=2**300), st.floats(),
    st.text(max_size=20), HOSTILE_SCALARS,
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),
    EDGE_TIMES.map(lambda d: d.isoformat()),
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
flat_values = scalars | st.lists(scalars, max_size=2)
FIELDS = ["event_id", "customer_id", "type", "ts", "amount", "currency", "quantity", "category", "channel",
          "session_id", "properties", "extra"]  # fmt: skip


def to_json(value: Any) -> str:
    """JSON text that may hold what orjson refuses to write: NaN, Infinity, integers of any size."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(ch if ch.isalnum() or ch in " -:.+_" else f"\\u{ord(ch):04x}" for ch in value) + '"'
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return "{" + ",".join(f"{to_json(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"


def fuzz(examples: int) -> settings:
    """Many examples, no deadline (20,000 inputs over the four tests below)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.timeout(60)
@fuzz(2000)
@given(st.dictionaries(st.sampled_from(FIELDS), flat_values, max_size=8), st.none() | json_values, st.booleans())
def test_fuzz_structured_events(fields: dict[str, Any], properties: Any, over_valid: bool) -> None:
    data = {"event_id": "e", "customer_id": "c", "type": "purchase", "ts": "2026-01-02T03:04:05Z", "amount": 1}
    data = data | fields if over_valid else fields
    if properties is not None:
        data["properties"] = properties
    outcome(to_json(data).encode())
    try:
        validate_event(data)
    except EventError as err:
        assert err.reason in REASONS


@pytest.mark.timeout(60)
@fuzz(9000)
@given(st.binary(max_size=300))
def test_fuzz_raw_bytes(raw: bytes) -> None:
    outcome(raw)


@pytest.mark.timeout(60)
@fuzz(4000)
@given(st.integers(0, len(VALID)), st.integers(0, 8), st.binary(max_size=12))
def test_fuzz_mutated_valid_events(at: int, cut: int, insert: bytes) -> None:
    outcome(VALID[:at] + insert + VALID[at + cut :])


@pytest.mark.timeout(60)
@fuzz(5000)
@given(st.text(st.characters() | st.sampled_from(["\ud800", "\udfff"]), max_size=200))
def test_fuzz_text_with_surrogates(text: str) -> None:
    outcome(text)


MUTATION_SEEDS = [VALID, *(p.read_bytes() for p in sorted(CORPUS.iterdir()) if p.stat().st_size < 1024)]


@pytest.mark.timeout(60)
def test_seeded_mutations_of_valid_and_hostile_events() -> None:
    """100,000 deterministic byte-level mutations (flip, insert, delete, splice) of the seeds."""
    rng = random.Random(14)
    interesting = [b"-23:59", b"9999", b"NaN", b"1e999", b"[", b"{", b'"', b"\\u", b"\xff", b"\xed\xa0\x80", b"0" * 30]
    kinds: Counter[str] = Counter()
    for _ in range(100_000):
        data = bytearray(rng.choice(MUTATION_SEEDS))
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(data))
            op = rng.randrange(4)
            if op == 0 and data:
                data[min(at, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[at:at] = rng.choice(interesting)
            elif op == 2:
                del data[at : at + rng.randint(1, 8)]
            else:
                other = rng.choice(MUTATION_SEEDS)
                start = rng.randint(0, len(other))
                data[at:at] = other[start : start + rng.randint(1, 20)]
        got = outcome(bytes(data))
        kinds[got.reason if isinstance(got, EventError) else "event"] += 1
    assert kinds["event"] > 0 and kinds["schema"] > 0 and kinds["not_json"] > 0


def test_a_huge_unknown_type_is_quoted_briefly() -> None:
    err = outcome(VALID.replace(b'"purchase"', b'"' + b"x" * 60_000 + b'"'))
    assert isinstance(err, EventError) and (err.reason, err.field) == ("schema", "type")
    assert len(err.detail) < 400 and "allowed: " in err.detail
