"""Loading the core's compiled code before the first record, not inside the first batch.

The core's loops are numba functions cached on disk; the first call of the
first of them in a process initialises numba's compiler context and loads the
cached machine code (about 0.25 s of CPU on the reference machine). Paid inside
the first batch, that is a quarter of a second more latency for its records and
a commit that much later. :func:`warm_up` pays it at start-up, on a throwaway
core that never sees a real record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from segmenter.events import CustomerEvent, parse_event

log = logging.getLogger(__name__)

WARM_UP_EVENTS = (
    b'{"event_id":"warm-up-1","customer_id":"warm-up","type":"session_start","ts":"2026-01-01T00:00:00Z"}',
    b'{"event_id":"warm-up-2","customer_id":"warm-up","type":"purchase","amount":1.0,"ts":"2026-01-01T00:01:00Z"}',
)
"""Two events of one new customer: a new row, then a known customer's event."""


class BatchCore(Protocol):
    """The part of the core a warm-up drives."""

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None]) -> object:
        """Process events in order."""


def warm_up(make_core: Callable[[], BatchCore]) -> float:
    """Run :data:`WARM_UP_EVENTS` through a fresh core from ``make_core`` and drop it; returns the seconds taken."""
    started = time.perf_counter()
    events = [parse_event(raw) for raw in WARM_UP_EVENTS]
    make_core().process_batch(events, [0] * len(events))
    seconds = time.perf_counter() - started
    log.debug("loaded the core's compiled code in %.2fs", seconds)
    return seconds
