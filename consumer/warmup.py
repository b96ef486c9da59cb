"""Loading and compiling the core's compiled code before the first record, not inside the first batches.

The core's loops are numba functions cached on disk; the first call of each
in a process loads its cached machine code (or, with no cache yet: a fresh
image, another numba version, compiles it, seconds each). Paid inside the
first batches, that is latency for their records and commits that much later.
:func:`warm_up` pays it at start-up, on a throwaway core that never sees a
real record: two events of one customer (a new row, then a known customer's
event), then a synthetic stream (:func:`warm_up_stream`) long enough for the
lenses of the default config to finish their warm-up, move customers (with
explanations), re-score quiet customers and refine, which each call compiled
code of their own (the change blocks' lines too); last, the lenses' quality
and segment rules, which are computed when first read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import orjson

from segmenter.change_blocks import Output, encode_parts
from segmenter.events import CustomerEvent, parse_event

log = logging.getLogger(__name__)

WARM_UP_EVENTS = (
    b'{"event_id":"warm-up-1","customer_id":"warm-up","type":"session_start","ts":"2026-01-01T00:00:00Z"}',
    b'{"event_id":"warm-up-2","customer_id":"warm-up","type":"purchase","amount":1.0,"ts":"2026-01-01T00:01:00Z"}',
)
"""Two events of one new customer: a new row, then a known customer's event."""

_TYPES = ("session_start", "product_view", "add_to_cart", "purchase", "email_open", "page_view", "email_click")
_STREAM_CUSTOMERS = 1000
"""More than half the id index's first table (1,024 slots): the index grows once, as a real stream's does."""
_STREAM_EVENTS = 3000
_STREAM_STEP = timedelta(minutes=10)
"""3,000 events ten minutes apart: three weeks of event time (daily re-scoring; the lenses are ready after about
two thirds of it, and a weekly refinement tick follows)."""
_BATCH = 500


def warm_up_stream(customers: int = _STREAM_CUSTOMERS, events: int = _STREAM_EVENTS) -> list[CustomerEvent]:
    """A deterministic synthetic stream: ``events`` events of ``customers`` customers, ten minutes apart."""
    start = datetime(2026, 1, 2, tzinfo=UTC)
    out = []
    for i in range(events):
        kind = _TYPES[(i * 7 + i // customers) % len(_TYPES)]
        event: dict[str, object] = {"event_id": f"warm-up-s{i}", "customer_id": f"warm-up-{(i * 37) % customers}",
                                    "type": kind, "ts": (start + i * _STREAM_STEP).isoformat()}  # fmt: skip
        if kind == "purchase":
            event["amount"] = float(5 + (i * 53) % 300)
        out.append(parse_event(orjson.dumps(event)))
    return out


class ProfiledLens(Protocol):
    """A lens whose profiles (with their segment rules, fitted when first read) a warm-up reads."""

    def profiles(self) -> Sequence[object]:
        """The live segments' profiles."""


class BatchOutputs(Protocol):
    """What a warm-up reads of a batch's result: its outputs, change blocks among them."""

    @property
    def parts(self) -> Sequence[Output]:
        """The outputs in order."""


class BatchCore(Protocol):
    """The part of the core a warm-up drives."""

    @property
    def lenses(self) -> Sequence[ProfiledLens]:
        """The core's lenses."""

    def lens_quality(self) -> Mapping[str, object]:
        """Each refined lens's quality (measured when first read)."""

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None]) -> BatchOutputs:
        """Process events in order."""


def warm_up(make_core: Callable[[], BatchCore], stream: Sequence[CustomerEvent] | None = None) -> float:
    """Run :data:`WARM_UP_EVENTS`, then ``stream`` (default :func:`warm_up_stream`), through one fresh core.

    The stream goes in batches of 500, as a consumer's runs do; the core is dropped. Returns the seconds taken.
    """
    started = time.perf_counter()
    core = make_core()
    first = [parse_event(raw) for raw in WARM_UP_EVENTS]
    core.process_batch(first, [0] * len(first))
    events = warm_up_stream() if stream is None else stream
    for at in range(0, len(events), _BATCH):
        batch = events[at : at + _BATCH]
        # the edge writes a large change block from its lines: their compiled writer too
        encode_parts(core.process_batch(batch, [0] * len(batch)).parts)
    core.lens_quality()  # read by the gauges after each refinement: batch k-means and the silhouette
    for lens in core.lenses:
        lens.profiles()  # read by lifecycle messages and the explorer: the segment rules' compiled split search
    seconds = time.perf_counter() - started
    log.debug("loaded the core's compiled code in %.2fs", seconds)
    return seconds
