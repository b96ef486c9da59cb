"""Replay a CSV or JSONL file as contract events, in event-time order.

Columns are mapped to event fields by :class:`ColumnMapping`. Every row either
becomes a valid event (checked with :func:`segmenter.events.validate_event`)
or a :class:`BadRow` with its line number and the reason; nothing is dropped
silently. Rows are sorted by event time (stable: ties keep file order).

Times are parsed automatically: a number is epoch seconds (or milliseconds /
microseconds when it is that large), anything else ISO-8601. Timestamps
without an offset are read in ``ColumnMapping.timezone`` (UTC by default).

The whole file is loaded in memory to sort it.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from producer.errors import InputError
from producer.orders import Orders
from producer.runner import Outgoing
from segmenter.errors import EventError
from segmenter.events import EARLIEST_TS, LATEST_TS, EventType, validate_event

log = logging.getLogger(__name__)

_EVENT_TYPES = frozenset(t.value for t in EventType)
_OPTIONAL_FIELDS = ("amount", "quantity", "category", "currency", "channel", "session_id")


@dataclass(frozen=True)
class ColumnMapping:
    """How a file's columns become event fields.

    Attributes
    ----------
    customer_col, time_col
        Columns of ``customer_id`` and the event time (required).
    type_col, fixed_type
        The column of the event type, or one type for every row (``fixed_type`` wins).
    amount_col, quantity_col, category_col, currency_col, channel_col, session_col
        Optional columns; ``None`` uses a column named like the field if the file has one.
    price_col
        A unit-price column instead of an amount (retail ledgers): ``amount`` is price x quantity, and a
        purchase row with a negative quantity (a return or cancellation) becomes a ``refund`` of
        price x |quantity|.
    order_col
        Column of an order (invoice) number: the purchase lines of one order and customer become one
        purchase, its refund lines one refund (:mod:`producer.orders`). ``None``: every line is an event.
    event_id_col
        Column of a unique event id; ``None`` uses ``event_id`` if present, else a
        deterministic id from the file name and line number.
    type_map
        Renames type values, e.g. ``{"order": "purchase"}``.
    time_format
        A ``strptime`` format instead of automatic ISO/epoch detection.
    timezone
        IANA zone for timestamps without an offset.
    file_format
        ``"csv"``, ``"jsonl"`` or ``"auto"`` (by extension: ``.jsonl``/``.ndjson``/``.json`` = JSONL).
    delimiter
        CSV delimiter.
    """

    customer_col: str = "customer_id"
    time_col: str = "ts"
    type_col: str | None = "type"
    fixed_type: str | None = None
    amount_col: str | None = None
    quantity_col: str | None = None
    category_col: str | None = None
    currency_col: str | None = None
    channel_col: str | None = None
    session_col: str | None = None
    event_id_col: str | None = None
    price_col: str | None = None
    order_col: str | None = None
    type_map: Mapping[str, str] = field(default_factory=dict)
    time_format: str | None = None
    timezone: str = "UTC"
    file_format: str = "auto"
    delimiter: str = ","

    def __post_init__(self) -> None:
        if self.fixed_type is not None and self.fixed_type not in _EVENT_TYPES:
            raise ValueError(f"--type {self.fixed_type!r} is not an event type; allowed: {sorted(_EVENT_TYPES)}")
        if self.fixed_type is None and self.type_col is None:
            raise ValueError("give a type column (--type-col) or one type for every row (--type)")
        if self.price_col is not None and self.amount_col is not None:
            raise ValueError("give an amount column (--amount-col) or a unit-price column (--price-col), not both")
        for src, dst in self.type_map.items():
            if dst not in _EVENT_TYPES:
                raise ValueError(f"--type-map {src}={dst}: {dst!r} is not an event type")
        if self.file_format not in ("auto", "csv", "jsonl"):
            raise ValueError(f"file format must be auto, csv or jsonl, got {self.file_format!r}")
        if len(self.delimiter) != 1:
            raise ValueError(f"--delimiter must be one character, got {self.delimiter!r}")


@dataclass(frozen=True)
class BadRow:
    """A row that could not become an event: 1-based ``line``, ``reason`` and the row as read."""

    line: int
    reason: str
    row: Any

    def to_json(self) -> dict[str, Any]:
        """The DLQ-file line."""
        return {"line": self.line, "reason": self.reason, "row": self.row}


@dataclass
class ReplayInput:
    """A loaded file: valid events sorted by time, bad rows in file order."""

    path: Path
    events: list[tuple[float, int, dict[str, Any]]]
    bad: list[BadRow]
    valid_rows: int
    """Rows that became events (more than ``events`` when the lines of an order become one)."""

    @property
    def rows(self) -> int:
        """Data rows read (valid + bad)."""
        return self.valid_rows + len(self.bad)

    def outgoing(self) -> Iterator[Outgoing]:
        """The events encoded for the sink, in time order."""
        dumps = orjson.dumps
        for ts, _, event in self.events:
            yield Outgoing(ts, event["customer_id"].encode(), dumps(event), event["type"])


class _RowError(Exception):
    pass


class _Converter:
    def __init__(self, mapping: ColumnMapping, path: Path, columns: set[str] | None) -> None:
        self.m = mapping
        self.file_tag = path.name
        try:
            self.tz: tzinfo = UTC if mapping.timezone.upper() == "UTC" else ZoneInfo(mapping.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory, a name too long
            raise InputError(f"unknown time zone {mapping.timezone!r} (use an IANA name like Europe/Paris)") from None
        explicit = {
            "customer_id": mapping.customer_col,
            "ts": mapping.time_col,
            "type": mapping.type_col,
            "amount": mapping.amount_col,
            "quantity": mapping.quantity_col,
            "category": mapping.category_col,
            "currency": mapping.currency_col,
            "channel": mapping.channel_col,
            "session_id": mapping.session_col,
            "event_id": mapping.event_id_col,
            "price": mapping.price_col,
            "order": mapping.order_col,
        }
        if mapping.fixed_type is not None:
            explicit["type"] = None
        self.cols: dict[str, str] = {}
        for fld, col in explicit.items():
            if col is not None:
                if columns is not None and col not in columns:
                    raise InputError(
                        f"{path}: no column {col!r} (for {fld}); columns are: {', '.join(sorted(columns))}"
                    )
                self.cols[fld] = col
            elif fld in (*_OPTIONAL_FIELDS, "event_id") and (columns is None or fld in columns):
                self.cols[fld] = fld

    def convert(self, row: Mapping[str, Any], line: int) -> tuple[float, dict[str, Any]]:
        cols, m = self.cols, self.m
        event: dict[str, Any] = {}
        eid = self._text(row, "event_id", required=False)
        event["event_id"] = eid if eid is not None else self._default_id(line)
        event["customer_id"] = self._text(row, "customer_id", required=True)
        if m.fixed_type is not None:
            event["type"] = m.fixed_type
        else:
            raw_type = self._text(row, "type", required=True)
            assert raw_type is not None
            etype = m.type_map.get(raw_type, raw_type)
            if etype not in _EVENT_TYPES:
                raise _RowError(
                    f"{cols['type']}: unknown event type {raw_type!r} (map it with --type-map {raw_type}=<type>)"
                )
            event["type"] = etype
        epoch = self._time(row)
        event["ts"] = datetime.fromtimestamp(epoch, UTC).isoformat()
        self._money(row, event)
        for fld in ("category", "currency", "channel", "session_id"):
            text = self._text(row, fld, required=False)
            if text is not None:
                event[fld] = text
        try:
            validate_event(event)
        except EventError as exc:
            raise _RowError(exc.detail) from None
        return epoch, event

    def order_of(self, row: Mapping[str, Any]) -> str | None:
        """The row's order number (``None`` without ``--order-col`` or when the row has none)."""
        return self._text(row, "order", required=False) if "order" in self.cols else None

    def _money(self, row: Mapping[str, Any], event: dict[str, Any]) -> None:
        """``amount`` and ``quantity`` of ``event``: as read, or from the unit price (see :class:`ColumnMapping`)."""
        quantity = self._value(row, "quantity")
        if quantity is not None:
            q = self._number(quantity, "quantity")
            if q != int(q):
                raise _RowError(f"{self.cols['quantity']}: quantity {quantity!r} is not a whole number")
            event["quantity"] = int(q)
        if "price" not in self.cols:
            amount = self._value(row, "amount")
            if amount is not None:
                event["amount"] = self._number(amount, "amount")
            return
        price = self._value(row, "price")
        if price is None or quantity is None:
            missing = self.cols["price"] if price is None else self.cols.get("quantity", "quantity")
            raise _RowError(f"{missing}: empty or missing (needed for amount = price x quantity)")
        if event["quantity"] < 0 and event["type"] == "purchase":  # a return: the money goes back
            event["type"], event["quantity"] = "refund", -event["quantity"]
        event["amount"] = round(self._number(price, "price") * event["quantity"], 6)

    def _default_id(self, line: int) -> str:
        digest = hashlib.blake2b(f"{self.file_tag}:{line}".encode(), digest_size=10).hexdigest()
        return f"r-{digest}"

    def _value(self, row: Mapping[str, Any], fld: str) -> Any:
        col = self.cols.get(fld)
        if col is None:
            return None
        value = row.get(col)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    def _text(self, row: Mapping[str, Any], fld: str, *, required: bool) -> str | None:
        value = self._value(row, fld)
        if value is None:
            if required:
                raise _RowError(f"{self.cols.get(fld, fld)}: empty or missing (needed for {fld})")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise _RowError(f"{self.cols[fld]}: expected text, got {type(value).__name__}")
        return str(value).strip()

    def _number(self, value: Any, fld: str) -> float:
        if isinstance(value, bool):
            raise _RowError(f"{self.cols[fld]}: {value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _RowError(f"{self.cols[fld]}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise _RowError(f"{self.cols[fld]}: {value!r} is not a finite number")
        return number

    def _time(self, row: Mapping[str, Any]) -> float:
        value = self._value(row, "ts")
        col = self.cols["ts"]
        if value is None:
            raise _RowError(f"{col}: empty or missing (needed for ts)")
        if self.m.time_format is not None:
            try:
                parsed = datetime.strptime(str(value).strip(), self.m.time_format)
            except ValueError:
                raise _RowError(f"{col}: {value!r} does not match --time-format {self.m.time_format!r}") from None
            return _in_range(self._aware(parsed).timestamp(), value, col)
        return parse_time(value, self.tz, col)

    def _aware(self, parsed: datetime) -> datetime:
        return parsed.replace(tzinfo=self.tz) if parsed.tzinfo is None else parsed


def _in_range(epoch: float, value: Any, column: str) -> float:
    """``epoch`` if it is within the event contract's years (1970 to 2079, UTC), else a :class:`_RowError`."""
    if not EARLIEST_TS.timestamp() <= epoch < LATEST_TS.timestamp():
        raise _RowError(f"{column}: {value!r} is outside the accepted time range (years 1970 to 2079, UTC)")
    return epoch


def _as_number(value: Any) -> float | None:
    """``value`` as a float if it is a number or a string that reads as one (not a bool), else ``None``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _epoch_unit(number: float) -> float:
    """Units of an epoch number per second, by magnitude: 1e6 (µs) above 1e14, 1e3 (ms) above 1e11, else 1 (s)."""
    if number > 1e14:
        return 1e6
    if number > 1e11:
        return 1e3
    return 1.0


def parse_time(value: Any, tz: tzinfo = UTC, column: str = "time") -> float:
    """Parse an epoch number (s, ms or µs, by magnitude) or an ISO-8601 string into epoch seconds.

    Times outside the years 1970 to 2079 (UTC) are refused, as the event contract does.

    Examples
    --------
    >>> parse_time("2026-01-01T00:00:00Z"), parse_time(1767225600000), parse_time("1767225600")
    (1767225600.0, 1767225600.0, 1767225600.0)
    """
    number = _as_number(value)
    if number is not None:
        if not math.isfinite(number) or number < 0:
            raise _RowError(f"{column}: {value!r} is not a valid epoch time")
        return _in_range(number / _epoch_unit(number), value, column)
    if not isinstance(value, str):
        raise _RowError(f"{column}: expected a time, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _RowError(
            f"{column}: {value!r} is neither ISO-8601 nor an epoch number (use --time-format for other layouts)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return _in_range(parsed.timestamp(), value, column)


_Events = list[tuple[float, int, dict[str, Any]]]
"""(epoch, line, event) of the valid rows."""


@dataclass
class _Rows:
    """What the readers collect: the valid rows' events, the bad rows, and each valid row's order number."""

    events: _Events = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    orders: dict[int, str] = field(default_factory=dict)


def _format_of(path: Path, mapping: ColumnMapping) -> str:
    if mapping.file_format != "auto":
        return mapping.file_format
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"


def _has_surrogates(values: Any) -> bool:
    return any(isinstance(v, str) and any("\udc80" <= ch <= "\udcff" for ch in v) for v in values)


def load(path: str | Path, mapping: ColumnMapping) -> ReplayInput:
    """Read ``path`` into sorted valid events and bad rows.

    Raises
    ------
    InputError
        The file cannot be opened, a CSV has no header, or a named column does not exist.
    """
    path = Path(path)
    try:
        raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)  # spreadsheet tools' "CSV UTF-8" starts with one
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    fmt = _format_of(path, mapping)
    rows = _Rows()
    bad = rows.bad
    if fmt == "jsonl":
        conv = _Converter(mapping, path, None)
        for line_no, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            text = line.decode("utf-8", errors="replace")
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                bad.append(BadRow(line_no, f"not valid JSON ({exc})", text))
                continue
            if not isinstance(row, dict):
                bad.append(BadRow(line_no, f"expected a JSON object, got {type(row).__name__}", text))
                continue
            _convert(conv, row, line_no, rows)
    else:
        _load_csv(raw, path, mapping, rows)
    events, valid = rows.events, len(rows.events)
    if mapping.order_col is not None:
        events, rejected = Orders(path.name).merge(events, rows.orders)
        bad.extend(BadRow(r.line, r.reason, r.event) for r in rejected)
        bad.sort(key=lambda b: b.line)
        valid -= len(rejected)
    events.sort(key=lambda e: (e[0], e[1]))
    log.info("%s: %d rows, %d valid, %d bad, %d events", path, valid + len(bad), valid, len(bad), len(events))
    return ReplayInput(path, events, bad, valid)


def _load_csv(raw: bytes, path: Path, mapping: ColumnMapping, rows: _Rows) -> None:
    """The CSV half of :func:`load`.

    Raises
    ------
    InputError
        No header, a header the csv reader cannot read, or a named column missing. A row it cannot read
        (e.g. a field over its 128 KiB limit) is a bad row; the reader goes on at the next line.
    """
    text = raw.decode("utf-8", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
    try:
        if reader.fieldnames is None:
            raise InputError(f"{path}: empty file, expected a CSV header line")
    except csv.Error as exc:
        raise InputError(f"{path} line {reader.reader.line_num}: not valid CSV: {exc}") from None
    conv = _Converter(mapping, path, set(reader.fieldnames))
    width = len(reader.fieldnames)
    for line_no, row in _readable_rows(reader, rows.bad):
        extra = row.pop(None, None)
        if extra is not None or any(v is None for v in row.values()):
            got = width + len(extra or []) - sum(v is None for v in row.values())
            rows.bad.append(BadRow(line_no, f"expected {width} fields, got {got}", row | {"_extra": extra}))
            continue
        if _has_surrogates(row.values()):
            fixed = {k: v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for k, v in row.items()}
            rows.bad.append(BadRow(line_no, "not valid UTF-8", fixed))
            continue
        _convert(conv, row, line_no, rows)


def _readable_rows(reader: csv.DictReader[str], bad: list[BadRow]) -> Iterator[tuple[int, dict[Any, Any]]]:
    """``(first line, row)`` of each row the csv reader can read; a row it cannot is a :class:`BadRow`.

    The reader starts afresh at the next line after an error, so only the unreadable row is lost (and
    reported by its line; the file holds it).
    """
    lines = reader.reader  # DictReader.line_num moves only on rows it returns
    last = lines.line_num
    while True:
        line_no = last + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # an open quote can carry a row over many lines: name them all
            span = f" (lines {line_no}-{lines.line_num}: a quote opened on line {line_no} is not closed?)"
            bad.append(BadRow(line_no, f"not valid CSV: {exc}" + (span if lines.line_num > line_no else ""), {}))
            continue
        finally:
            last = lines.line_num
        yield line_no, row


def _convert(conv: _Converter, row: Mapping[str, Any], line_no: int, rows: _Rows) -> None:
    try:
        epoch, event = conv.convert(row, line_no)
        order = conv.order_of(row)
    except _RowError as exc:
        rows.bad.append(BadRow(line_no, str(exc), dict(row)))
        return
    rows.events.append((epoch, line_no, event))
    if order is not None:
        rows.orders[line_no] = order
