"""The lines of one order as one event: a retail ledger's items summed into the purchase a marketer counts.

A retail ledger (Online Retail II and its kind) has one line per item. Replayed
line by line, every item is a ``purchase``: a customer's lifetime ``orders``
counts items, ``aov`` is an item's price, and a campaign rule on ``orders``
fires on a customer's first basket. With ``--order-col`` (the
``order_col`` of :class:`producer.replay.ColumnMapping`), the ``purchase``
lines that share an order number and a customer become one event, and so do
the ``refund`` lines (a cancelled invoice's returns):

* ``amount`` is the lines' sum, ``quantity`` too (when every line has one);
* ``ts`` is the earliest line's time, and the order sorts where that line does;
* ``category``, ``channel`` and ``session_id`` are kept when every line agrees;
  otherwise the order has none (an order of books and toys has no one category);
* ``currency`` must agree: a line in another currency than the order's first is
  a bad row (sums across currencies mean nothing), and the rest are summed;
* ``event_id`` is made from the file name, the order number, the customer and
  the type (for an order of one line too), so a replay of the same file
  repeats it (the segmenter ignores a repeated id).

Lines of other types, and lines with an empty order number, stay events of
their own.

Examples
--------
>>> lines = [(60.0, 2, {"event_id": "a", "customer_id": "c1", "type": "purchase", "ts": "t1", "amount": 2.5,
...                     "quantity": 1, "category": "cups"}),
...          (60.0, 3, {"event_id": "b", "customer_id": "c1", "type": "purchase", "ts": "t1", "amount": 4.0,
...                     "quantity": 2, "category": "bowls"})]
>>> merged, rejected = Orders("ledger.csv").merge(lines, {2: "536365", 3: "536365"})
>>> [(e["type"], e["amount"], e["quantity"], "category" in e) for _, _, e in merged], rejected
([('purchase', 6.5, 3, False)], [])
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ORDER_TYPES", "Orders", "Rejected"]

ORDER_TYPES = frozenset({"purchase", "refund"})
"""The event types whose lines make up an order."""

_AGREED = ("category", "channel", "session_id")
"""Fields an order keeps only when all its lines carry the same value."""

_Line = tuple[float, int, dict[str, Any]]
"""(epoch seconds, line number, event) of a valid line."""


@dataclass(frozen=True)
class Rejected:
    """A line that cannot join its order: its line number, the reason and its event."""

    line: int
    reason: str
    event: dict[str, Any]


@dataclass
class _Open:
    """An order being merged: where it sits in the output, and its lines so far (the first first)."""

    at: int
    order: str
    lines: list[_Line] = field(default_factory=list)


class Orders:
    """Merges the lines of each order in one file into one event (see the module docstring).

    Parameters
    ----------
    file_tag
        The file's name, part of each order's event id.
    """

    def __init__(self, file_tag: str) -> None:
        self._tag = file_tag

    def merge(self, lines: Sequence[_Line], order_of: Mapping[int, str]) -> tuple[list[_Line], list[Rejected]]:
        """The events of ``lines`` with each order's lines merged, and the lines refused.

        ``order_of`` maps a line number to its order number. The events keep the order of each one's first
        line in ``lines``; an order takes its earliest line's time.
        """
        merged: list[_Line] = []
        rejected: list[Rejected] = []
        orders: dict[tuple[str, str, str], _Open] = {}
        for item in lines:
            event = item[2]
            order = order_of.get(item[1])
            if order is None or event["type"] not in ORDER_TYPES:
                merged.append(item)
                continue
            key = (event["customer_id"], event["type"], order)
            open_order = orders.get(key)
            if open_order is None:
                open_order = orders[key] = _Open(len(merged), order)
                merged.append(item)
            elif event.get("currency") != open_order.lines[0][2].get("currency"):
                rejected.append(Rejected(item[1], _currency_reason(event, open_order), event))
                continue
            open_order.lines.append(item)
        for open_order in orders.values():
            merged[open_order.at] = self._order_line(open_order)
        return merged, rejected

    def _order_line(self, open_order: _Open) -> _Line:
        """The order's one event, at its earliest line's time."""
        events = [e for _, _, e in open_order.lines]
        first = events[0]
        epoch, _, earliest = min(open_order.lines, key=lambda item: item[0])
        out: dict[str, Any] = {
            "event_id": self._event_id(first["customer_id"], first["type"], open_order.order),
            "customer_id": first["customer_id"],
            "type": first["type"],
            "ts": earliest["ts"],
            "amount": round(sum(e["amount"] for e in events), 6),
        }
        if all("quantity" in e for e in events):
            out["quantity"] = sum(e["quantity"] for e in events)
        if "currency" in first:
            out["currency"] = first["currency"]
        for fld in _AGREED:
            values = {e.get(fld) for e in events}
            if len(values) == 1 and (value := values.pop()) is not None:
                out[fld] = value
        return epoch, open_order.lines[0][1], out

    def _event_id(self, customer: str, event_type: str, order: str) -> str:
        digest = hashlib.blake2b(f"{self._tag}:{order}:{customer}:{event_type}".encode(), digest_size=10)
        return f"o-{digest.hexdigest()}"


def _currency_reason(event: dict[str, Any], open_order: _Open) -> str:
    first_line, first = open_order.lines[0][1], open_order.lines[0][2]
    return (
        f"currency {event.get('currency')!r} differs from {first.get('currency')!r} of order "
        f"{open_order.order!r} (line {first_line}); an order's lines are summed in one currency"
    )
