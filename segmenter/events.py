"""The input event contract (docs/contracts.md, "Input event").

An event arrives as UTF-8 JSON bytes. :func:`parse_event` turns bytes into a
:class:`CustomerEvent` or raises :class:`~segmenter.errors.EventError` naming
the field and the reason; nothing is silently defaulted.

Examples
--------
>>> ev = parse_event(b'{"event_id": "e1", "customer_id": "c1", "type": "purchase",'
...                  b' "ts": "2026-01-02T03:04:05+01:00", "amount": 19.5}')
>>> ev.type.value, ev.amount, ev.ts.isoformat()
('purchase', 19.5, '2026-01-02T02:04:05+00:00')
>>> parse_event(b'{"event_id": "e1", "customer_id": "c1", "type": "purchase",'
...             b' "ts": "2026-01-02T03:04:05Z"}')
Traceback (most recent call last):
...
segmenter.errors.EventError: schema: amount: required for purchase and refund events
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import SchemaValidator

from segmenter.errors import EventError

MAX_EVENT_BYTES = 64 * 1024
"""Largest accepted encoded event; larger messages are rejected as ``too_large``."""

MAX_PROPERTIES = 64
"""Most keys accepted in ``properties``."""

MAX_PROPERTIES_DEPTH = 8
"""Deepest nesting of objects and lists accepted in ``properties`` (``properties`` itself is level 1)."""

EARLIEST_TS = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TS = datetime(2080, 1, 1, tzinfo=UTC)
"""Accepted event times, after conversion to UTC: ``EARLIEST_TS <= ts < LATEST_TS`` (years 1970 to 2079).

The core stores times as int32 seconds from 2020 (up to 2088-01-19); the end of
2079 leaves eight years for the horizons computed from an event time."""

MAX_AMOUNT = 1e12
"""Largest accepted ``amount``: far above any real order, far below where sums of amounts lose precision."""

_INT64 = 2**63


class EventType(StrEnum):
    """Every event type the contract allows."""

    SESSION_START = "session_start"
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_START = "checkout_start"
    PURCHASE = "purchase"
    REFUND = "refund"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    SIGNUP = "signup"
    ERASURE_REQUEST = "erasure_request"


MONETARY_TYPES = frozenset({EventType.PURCHASE, EventType.REFUND})

Id = Annotated[str, Field(min_length=1, max_length=128)]
ShortText = Annotated[str, Field(min_length=1, max_length=256)]


class CustomerEvent(BaseModel):
    """One customer behaviour event, validated strictly.

    ``ts`` is always converted to UTC and must fall in the years 1970 to 2079.
    ``amount`` is required (and finite, 0 to :data:`MAX_AMOUNT`) for
    ``purchase`` and ``refund``. Unknown top-level fields are rejected:
    free-form data belongs in ``properties`` (at most :data:`MAX_PROPERTIES`
    keys, :data:`MAX_PROPERTIES_DEPTH` levels, finite numbers, integers
    within 64 bits).
    """

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")

    event_id: Id
    customer_id: Id
    type: EventType
    ts: AwareDatetime
    amount: Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    category: ShortText | None = None
    channel: ShortText | None = None
    session_id: Id | None = None
    properties: dict[str, Any] | None = None

    @field_validator("ts")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        utc = _utc_in_range(value)
        if utc is None:
            raise ValueError(
                f"{value.isoformat()} is outside the accepted range: from 1970-01-01T00:00:00Z "
                "up to the end of 2079 (UTC)"
            )
        return utc

    @field_validator("properties")
    @classmethod
    def _bounded_properties(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = None if value is None else _properties_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _amount_for_money(self) -> CustomerEvent:
        if _lacks_amount(self.type, self.amount):
            raise ValueError("amount: required for purchase and refund events")
        return self

    @property
    def epoch(self) -> float:
        """Event time in seconds since the Unix epoch (UTC)."""
        return self.ts.timestamp()


def _utc_in_range(value: datetime) -> datetime | None:
    """``value`` in UTC if it falls in ``EARLIEST_TS <= ts < LATEST_TS``, else ``None``."""
    try:
        utc = value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is in the year 10000 in UTC
        return None
    return utc if EARLIEST_TS <= utc < LATEST_TS else None


def _lacks_amount(event_type: EventType, amount: float | None) -> bool:
    return amount is None and event_type in MONETARY_TYPES


def _properties_problem(properties: dict[str, Any]) -> str | None:
    """What breaks the bounds of ``properties`` (too many keys, see :func:`_free_form_problem`), or ``None``."""
    if len(properties) > MAX_PROPERTIES:
        return f"at most {MAX_PROPERTIES} keys allowed, got {len(properties)}"
    return _free_form_problem(properties)


def _free_form_problem(properties: dict[str, Any]) -> str | None:
    """What makes ``properties`` unacceptable (too deep, a non-finite or huge number), or ``None``.

    Iterative, so any depth the JSON decoder let through is measured without recursion.
    """
    stack: list[tuple[str, Any, int]] = [("properties", properties, 1)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_PROPERTIES_DEPTH:
                return f"at {path}: nested deeper than {MAX_PROPERTIES_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((f"{path}.{key}", item, depth + 1) for key, item in items)
        elif isinstance(value, float) and not math.isfinite(value):
            return f"at {path}: must be a finite number"
        elif isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
            return f"at {path}: integers must fit in 64 bits"
    return None


def parse_event(raw: bytes | str) -> CustomerEvent:
    """Decode and validate one event.

    Every input either parses or raises :class:`EventError`; nothing else
    escapes (``tests/unit/test_hostile_input.py`` fuzzes this).

    Raises
    ------
    EventError
        ``too_large``, ``not_utf8``, ``not_json`` or ``schema`` (with the field).
    """
    if isinstance(raw, str):
        if len(raw) > MAX_EVENT_BYTES:  # at least as many bytes as characters: too large either way
            raise EventError("too_large", f"event is over {MAX_EVENT_BYTES} bytes; the limit is {MAX_EVENT_BYTES}")
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EventError("not_utf8", f"event text has an unpaired surrogate at character {exc.start}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise EventError("too_large", f"event is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}")
    if raw[:3] == _BOM:  # RFC 8259 lets a parser ignore a byte order mark; some UTF-8 writers add one
        raw = raw[3:]
    try:
        if not raw.isascii():  # ASCII is UTF-8: only other bytes need the decoder's check
            raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EventError("not_utf8", f"event is not valid UTF-8 at byte {exc.start}") from None
    return _from_json(raw)


_BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte order mark."""


def _from_json(raw: bytes) -> CustomerEvent:
    """Validate JSON bytes: pydantic's checks without the model's Python validators, then their rules here.

    Each Python validator costs a call from Rust into Python; here the three rules are checked
    on the values in one go. Only an event that fails any check goes through the full model
    (the same rules, run by its validators), which gives the exact error; a valid event never does.
    """
    try:
        event: CustomerEvent = _WITHOUT_VALIDATORS.validate_json(raw)
    except ValidationError:
        return _validated(raw)  # raises, worded by the full model
    fields = event.__dict__
    utc = _plain_utc(fields["ts"])
    props = fields["properties"]
    if (
        utc is None
        or (props is not None and _properties_problem(props) is not None)
        or _lacks_amount(fields["type"], fields["amount"])
    ):
        return _validated(raw)  # raises, worded by the full model
    fields["ts"] = utc  # what _to_utc returns; the other validators return their input
    return event


PLAIN_TS = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"  # date and time
    r"(?:\.[0-9]{1,6})?"  # up to microseconds
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"  # the UTC offset
)
"""The timestamps the fast path reads itself (``datetime.fromisoformat``): those it reads as pydantic does.

Any other ``ts`` (another ISO-8601 form, a 7th digit, an offset of ``+00:60``, which Python
reads and pydantic refuses) goes through the full model. On this form they agree on every
value and refuse the same dates: checked once over all 510,300 combinations of edge values
of each part, and on 20,000 of them by tests/unit/test_event_fast_path.py."""


def _plain_utc(ts: str) -> datetime | None:
    """``ts`` (matching :data:`PLAIN_TS`) in UTC if it is a valid date in the accepted range, else ``None``."""
    try:
        return _utc_in_range(datetime.fromisoformat(ts))
    except ValueError:  # e.g. February 30th
        return None


_REPLICATED = frozenset({"_to_utc", "_bounded_properties", "_amount_for_money"})
"""The Python validators of :class:`CustomerEvent` whose rules :func:`_from_json` checks itself."""


def _fast_schema(model: type[BaseModel], dropped: set[str]) -> Any:
    """``model``'s core schema without its Python validators, ``ts`` a string of the form :data:`PLAIN_TS`."""
    schema = _without_python_validators(model.__pydantic_core_schema__, dropped)
    ts = schema["schema"]["fields"]["ts"]
    if ts["schema"].get("type") != "datetime":
        raise RuntimeError(f"{model.__name__}.ts is no longer a datetime field: update _fast_schema")
    ts["schema"] = {"type": "str", "pattern": PLAIN_TS}
    return schema


def _without_python_validators(schema: Any, dropped: set[str]) -> Any:
    """A copy of a pydantic core schema with every ``function-after`` validator replaced by the schema it wraps.

    The names of the validators dropped are added to ``dropped``.
    """
    if isinstance(schema, list):
        return [_without_python_validators(item, dropped) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") == "function-after":
        dropped.add(schema["function"]["function"].__name__)
        return _without_python_validators(schema["schema"], dropped)
    return {key: _without_python_validators(value, dropped) for key, value in schema.items()}


def _validator_without_python_rules(model: type[BaseModel]) -> SchemaValidator:
    """Validates JSON into a ``model`` (same class, fields, fields set) without its Python validators, ``ts`` as text.

    Refuses to start if the model has a validator :func:`_from_json` does not replicate:
    the fast path would skip its rule.
    """
    dropped: set[str] = set()
    validator = SchemaValidator(_fast_schema(model, dropped))
    if dropped != _REPLICATED:
        raise RuntimeError(
            f"{model.__name__}'s after-validators are {sorted(dropped)}, _from_json replicates {sorted(_REPLICATED)}: "
            "check the new rule in _from_json as well and update _REPLICATED"
        )
    return validator


_WITHOUT_VALIDATORS = _validator_without_python_rules(CustomerEvent)


def _validated(raw: bytes) -> CustomerEvent:
    """``raw`` through the full model (its Python validators included): the exact error, or the event."""
    try:
        return CustomerEvent.model_validate_json(raw)
    except ValidationError as exc:
        raise _event_error(exc) from None


def validate_event(data: dict[str, Any]) -> CustomerEvent:
    """Validate an already decoded JSON object (same rules as :func:`parse_event`)."""
    return _from_json(_dumps(data))


def _dumps(data: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError as exc:
        raise EventError("schema", f"value is not JSON-serialisable: {exc}") from None


def _event_error(exc: ValidationError) -> EventError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return EventError("not_json", f"not a JSON object: {first['msg']}")
    if first["type"] == "model_type":
        return EventError("not_json", "the event must be a JSON object")
    loc = ".".join(str(part) for part in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if not loc and msg.startswith("amount:"):
        return EventError("schema", msg, field="amount")
    if first["type"] == "enum" and loc == "type":
        allowed = ", ".join(t.value for t in EventType)
        shown = repr(first.get("input"))
        shown = shown if len(shown) <= 80 else shown[:80] + "…"  # the input may be up to 64 KiB
        msg = f"unknown event type {shown}; allowed: {allowed}"
    elif first["type"] == "missing":
        msg = "field required"
    elif first["type"] == "extra_forbidden":
        msg = "unknown field; put free-form data under 'properties'"
    elif first["type"] == "timezone_aware":
        msg = "timestamp needs a UTC offset, e.g. 2026-01-02T03:04:05Z"
    elif first["type"] == "finite_number" or _non_finite(first.get("input")):
        msg = "must be a finite number"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return EventError("schema", f"{loc}: {msg}{more}", field=loc or None)


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)
