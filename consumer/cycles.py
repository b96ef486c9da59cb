"""Collects, every few seconds, the reference cycles kafka-python leaves at each poll that waits in vain.

kafka-python 3.0.12's ``KafkaConsumer.poll`` waits for a fetch through
``NetworkSelector.run``, whose waiter keeps the exception it caught in a dict
its own frame holds: every poll whose timeout ends before a fetch completes
(most polls of a live consumer: "Timed out after 0 ms") leaves a
``KafkaTimeoutError``, its traceback and their frames in a reference cycle,
which only the garbage collector frees (about 80 objects each, a few per
second). :func:`segmenter.gc_tuning.tune_gc` makes collections rare (a
generation-0 threshold of 500,000 allocations, net of deallocations, which a
steady consumer reaches only slowly), so that garbage piled up for tens of
minutes between two collections. :class:`CycleCollector` collects the two
young generations every :data:`COLLECT_EVERY_S` seconds instead: what they
hold is what was allocated since the last time and is still alive, so each
collection is short.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

COLLECT_EVERY_S = 10.0
"""Seconds between two collections of the young generations."""


class CycleCollector:
    """Collects generations 0 and 1 once every ``every_s`` seconds of ``clock`` (:meth:`collect_if_due`)."""

    def __init__(self, every_s: float = COLLECT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._next = clock() + every_s

    def collect_if_due(self) -> int | None:
        """Collect if the time has come: the number of unreachable objects found, ``None`` when not due."""
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._every_s
        return gc.collect(1)
