"""File replay: column mapping, time parsing, ordering, bad rows with line numbers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from producer.errors import InputError
from producer.replay import ColumnMapping, load, parse_time
from segmenter.events import validate_event

CSV = """user,when,kind,total,n,cat
u1,2026-01-02T10:00:00+01:00,order,19.90,2,books
u2,1767258000,view,,,toys
u1,2026-01-01T08:00:00Z,order,5,1,books
u3,2026-01-03T00:00:00Z,teleport,1,1,x
u4,2026-01-03T00:00:00Z,order,-3,1,x
,2026-01-03T00:00:00Z,view,,,x
u5,yesterday,view,,,x
u6,2026-01-03T00:00:00Z,order,abc,1,x
u7,2026-01-03T00:00:00Z,order,3,1.5,x
u8,2026-01-03T00:00:00Z
u9,2026-01-04T00:00:00,view,,,books
"""

MAPPING = ColumnMapping(
    customer_col="user",
    time_col="when",
    type_col="kind",
    amount_col="total",
    quantity_col="n",
    category_col="cat",
    type_map={"order": "purchase", "view": "product_view"},
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_mapping_sorting_and_bad_rows(tmp_path: Path) -> None:
    data = load(_write(tmp_path, "orders.csv", CSV), MAPPING)
    assert data.rows == 11
    events = [e for _, _, e in data.events]
    assert [(e["customer_id"], e["type"]) for e in events] == [
        ("u1", "purchase"),
        ("u2", "product_view"),
        ("u1", "purchase"),
        ("u9", "product_view"),
    ]
    first = events[0]
    assert first["ts"] == "2026-01-01T08:00:00+00:00"
    assert first["amount"] == 5.0 and first["quantity"] == 1 and first["category"] == "books"
    assert events[2]["ts"] == "2026-01-02T09:00:00+00:00"  # +01:00 converted to UTC
    assert events[3]["ts"] == "2026-01-04T00:00:00+00:00"  # naive read as UTC by default
    for e in events:
        validate_event(e)
    bad = {b.line: b.reason for b in data.bad}
    assert sorted(bad) == [5, 6, 7, 8, 9, 10, 11]
    assert "unknown event type 'teleport'" in bad[5] and "--type-map" in bad[5]
    assert "amount" in bad[6]
    assert "user: empty or missing" in bad[7]
    assert "when: 'yesterday' is neither ISO-8601 nor an epoch number" in bad[8]
    assert "total: 'abc' is not a number" in bad[9]
    assert "n: quantity '1.5' is not a whole number" in bad[10]
    assert "expected 6 fields, got 2" in bad[11]
    assert all(b.row for b in data.bad)


def test_event_ids_are_deterministic_from_file_name_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "orders.csv", CSV)
    ids1 = [e["event_id"] for _, _, e in load(path, MAPPING).events]
    ids2 = [e["event_id"] for _, _, e in load(path, MAPPING).events]
    assert ids1 == ids2 and len(set(ids1)) == len(ids1)
    other = _write(tmp_path, "other.csv", CSV)
    assert set(ids1).isdisjoint(e["event_id"] for _, _, e in load(other, MAPPING).events)


def test_event_id_column_and_fixed_type(tmp_path: Path) -> None:
    path = _write(tmp_path, "p.csv", "id,cust,t,amt\nA1,c1,1767225600000,3.5\nA2,c2,1767225600,4\n")
    mapping = ColumnMapping(
        customer_col="cust", time_col="t", fixed_type="purchase", amount_col="amt", event_id_col="id"
    )
    data = load(path, mapping)
    assert not data.bad
    assert [(e["event_id"], e["type"], e["ts"]) for _, _, e in data.events] == [
        ("A1", "purchase", "2026-01-01T00:00:00+00:00"),
        ("A2", "purchase", "2026-01-01T00:00:00+00:00"),
    ]


def test_jsonl_with_contract_names_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        orjson.dumps(
            {
                "customer_id": "c1",
                "ts": "2026-01-01T00:00:02Z",
                "type": "purchase",
                "amount": 3,
                "currency": "EUR",
                "session_id": "s1",
            }
        ).decode(),
        "",
        "{not json",
        "[1, 2]",
        orjson.dumps({"customer_id": "c2", "ts": 1767225601.5, "type": "search", "channel": "app"}).decode(),
        orjson.dumps({"customer_id": "c3", "ts": "2026-01-01T00:00:00Z", "type": "refund"}).decode(),
    ]
    data = load(_write(tmp_path, "ev.jsonl", "\n".join(lines) + "\n"), ColumnMapping())
    assert [(e["customer_id"], e["ts"]) for _, _, e in data.events] == [
        ("c2", "2026-01-01T00:00:01.500000+00:00"),
        ("c1", "2026-01-01T00:00:02+00:00"),
    ]
    assert data.events[1][2]["currency"] == "EUR" and data.events[1][2]["session_id"] == "s1"
    assert data.events[0][2]["channel"] == "app"
    bad = {b.line: b.reason for b in data.bad}
    assert sorted(bad) == [3, 4, 6]
    assert bad[3].startswith("not valid JSON")
    assert bad[4] == "expected a JSON object, got list"
    assert "amount" in bad[6] and "required" in bad[6]


def test_timezone_and_time_format_for_naive_times(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "customer_id,ts,type\nc1,01/07/2026 12:00,page_view\n")
    mapping = ColumnMapping(time_format="%d/%m/%Y %H:%M", timezone="Europe/Paris")
    ((_, _, event),) = load(path, mapping).events
    assert event["ts"] == "2026-07-01T10:00:00+00:00"
    bad = load(path, ColumnMapping(time_format="%Y-%m-%d"))
    assert "does not match --time-format" in bad.bad[0].reason


def test_file_level_problems_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        load(tmp_path / "missing.csv", ColumnMapping())
    with pytest.raises(InputError, match="empty file"):
        load(_write(tmp_path, "empty.csv", ""), ColumnMapping())
    with pytest.raises(InputError, match=r"no column 'user'.*columns are: customer_id, ts, type"):
        load(_write(tmp_path, "h.csv", "customer_id,ts,type\n"), ColumnMapping(customer_col="user"))
    with pytest.raises(InputError, match="unknown time zone"):
        load(_write(tmp_path, "z.csv", "customer_id,ts,type\n"), ColumnMapping(timezone="Mars/Olympus"))


def test_invalid_utf8_row_is_reported_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"customer_id,ts,type\nc\xff1,2026-01-01T00:00:00Z,page_view\nc2,2026-01-01T00:00:00Z,search\n")
    data = load(path, ColumnMapping())
    assert len(data.events) == 1
    assert [(b.line, b.reason) for b in data.bad] == [(2, "not valid UTF-8")]


RETAIL = """Invoice,StockCode,Description,Quantity,InvoiceDate,Price,Customer ID,Country
489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085.0,United Kingdom
489434,79323P,PINK CHERRY LIGHTS,12,2009-12-01 07:45:00,6.75,13085.0,United Kingdom
C489449,22087,PAPER BUNTING WHITE LACE,-12,2009-12-01 10:33:00,2.95,16321.0,Australia
489464,21733,85123a mixed,-96,2009-12-01 10:52:00,0.0,,United Kingdom
C496350,M,Manual,-1,2010-02-01 08:24:00,373.57,,United Kingdom
489435,22350,CAT BOWL,0,2009-12-01 07:46:00,2.55,13085.0,United Kingdom
A506401,B,Adjust bad debt,1,2010-04-29 13:36:00,-53594.36,,United Kingdom
"""
"""Laid out like a real retail ledger (Online Retail II): one line per item, a unit price, returns as
negative quantities on 'C' invoices, lines without a customer."""


def test_a_retail_ledger_replays_with_unit_prices_and_returns_as_refunds(tmp_path: Path) -> None:
    mapping = ColumnMapping(customer_col="Customer ID", time_col="InvoiceDate", fixed_type="purchase",
                            quantity_col="Quantity", price_col="Price", timezone="Europe/London")  # fmt: skip
    data = load(_write(tmp_path, "online_retail_II.csv", RETAIL), mapping)
    events = [e for _, _, e in data.events]
    assert [(e["customer_id"], e["type"], e["amount"], e["quantity"]) for e in events] == [
        ("13085.0", "purchase", 83.4, 12),
        ("13085.0", "purchase", 81.0, 12),
        ("16321.0", "refund", 35.4, 12),  # the cancelled line: the money goes back
    ]
    assert events[0]["ts"] == "2009-12-01T07:45:00+00:00"  # London in winter is UTC
    for e in events:
        validate_event(e)
    bad = {b.line: b.reason for b in data.bad}
    assert sorted(bad) == [5, 6, 7, 8]
    assert all("Customer ID: empty or missing" in bad[line] for line in (5, 6, 8))  # no customer: reported
    assert "quantity" in bad[7]  # a zero quantity is no purchase


LEDGER = """Invoice,Quantity,InvoiceDate,Price,Customer ID,Category,Currency
536365,6,2010-12-01 08:26:00,2.55,17850.0,lights,GBP
536366,2,2010-12-01 08:28:00,1.85,17850.0,lights,GBP
536365,8,2010-12-01 08:26:00,3.39,17850.0,cups,GBP
536365,2,2010-12-01 08:26:00,7.65,13047.0,cups,GBP
C536379,-1,2010-12-01 09:41:00,27.5,17850.0,cups,GBP
C536379,-3,2010-12-01 09:41:00,4.25,17850.0,cups,GBP
536370,24,2010-12-01 08:45:00,3.75,12583.0,toys,EUR
536370,12,2010-12-01 08:45:00,1.0,12583.0,toys,USD
,1,2010-12-01 10:00:00,5.0,12583.0,toys,EUR
536365,,2010-12-01 08:26:00,2.1,17850.0,lights,GBP
"""
"""Line items of several invoices: one with two lines of one customer and one of another customer, a
cancelled invoice of two lines, an invoice whose second line is in another currency, a line without an
invoice number and a line without its quantity."""


def test_the_lines_of_an_order_become_one_event(tmp_path: Path) -> None:
    mapping = ColumnMapping(customer_col="Customer ID", time_col="InvoiceDate", fixed_type="purchase",
                            quantity_col="Quantity", price_col="Price", order_col="Invoice", category_col="Category",
                            currency_col="Currency")  # fmt: skip
    path = _write(tmp_path, "ledger.csv", LEDGER)
    data = load(path, mapping)
    got = [(e["customer_id"], e["type"], e["amount"], e.get("quantity"), e.get("category")) for _, _, e in data.events]
    assert got == [
        ("17850.0", "purchase", 6 * 2.55 + 8 * 3.39, 14, None),  # two lines, two categories: none kept
        ("13047.0", "purchase", 15.3, 2, "cups"),  # the same invoice number, another customer: its own order
        ("17850.0", "purchase", 3.7, 2, "lights"),
        ("12583.0", "purchase", 90.0, 24, "toys"),
        ("17850.0", "refund", 27.5 + 3 * 4.25, 4, "cups"),  # the cancelled invoice: one refund
        ("12583.0", "purchase", 5.0, 1, "toys"),  # no invoice number: a line of its own
    ]
    assert [(b.line, b.reason.split(";")[0]) for b in data.bad] == [
        (9, "currency 'USD' differs from 'EUR' of order '536370' (line 8)"),
        (11, "Quantity: empty or missing (needed for amount = price x quantity)"),
    ]
    assert (data.rows, data.valid_rows) == (10, 8)
    for _, _, event in data.events:
        validate_event(event)
    ids = [e["event_id"] for _, _, e in data.events]
    assert len(set(ids)) == len(ids)
    assert ids == [e["event_id"] for _, _, e in load(path, mapping).events]  # a replay repeats each order's id
    assert [e["customer_id"] for _, _, e in load(path, replace(mapping, order_col=None)).events].count("17850.0") == 5


def test_a_unit_price_needs_its_quantity(tmp_path: Path) -> None:
    mapping = ColumnMapping(customer_col="c", time_col="t", fixed_type="purchase", price_col="p")
    data = load(_write(tmp_path, "p.csv", "c,t,p\nu1,2026-01-01T00:00:00Z,2.5\n"), mapping)
    assert [b.reason for b in data.bad] == ["quantity: empty or missing (needed for amount = price x quantity)"]


def test_mapping_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="not an event type"):
        ColumnMapping(fixed_type="buy")
    with pytest.raises(ValueError, match="--type-map x=buy"):
        ColumnMapping(type_map={"x": "buy"})
    with pytest.raises(ValueError, match="--type-col"):
        ColumnMapping(type_col=None)
    with pytest.raises(ValueError, match=r"--amount-col.*--price-col"):
        ColumnMapping(amount_col="total", price_col="price")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T00:00:00+00:00", 1767225600.0),
        ("2026-01-01T01:00:00+01:00", 1767225600.0),
        (1767225600, 1767225600.0),
        ("1767225600000", 1767225600.0),
        (1767225600000000, 1767225600.0),
        (" 2026-01-01 00:00:00 ", 1767225600.0),
    ],
)
def test_parse_time(value: object, expected: float) -> None:
    assert parse_time(value, UTC) == expected
    assert datetime.fromtimestamp(expected, UTC).year == 2026


@pytest.mark.parametrize(("name", "text"), [("orders.csv", CSV), ("orders.jsonl", None)])
def test_a_leading_utf8_byte_order_mark_is_skipped(tmp_path: Path, name: str, text: str | None) -> None:
    """Spreadsheet tools' "CSV UTF-8" starts with a BOM: the header's first column keeps its name, line 1 its event."""
    if text is None:
        text = '{"event_id":"a","customer_id":"c","type":"signup","ts":"2026-01-01T00:00:00Z"}\n'
    plain = load(_write(tmp_path, name, text), MAPPING if name.endswith(".csv") else ColumnMapping())
    path = tmp_path / "marked" / name  # the same name: event ids derive from it
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    marked = load(path, MAPPING if name.endswith(".csv") else ColumnMapping())
    assert [e for _, _, e in marked.events] == [e for _, _, e in plain.events] != []
    assert marked.bad == plain.bad
