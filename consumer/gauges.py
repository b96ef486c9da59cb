"""The gauges refreshed from the loop every few seconds: input lag, segment sizes, suppressed triggers, lens
quality."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from consumer.core import Core
from consumer.explorer import Explorer
from consumer.metrics import Metrics
from consumer.sink import TP, Transport

log = logging.getLogger(__name__)


class Gauges:
    """Sets the lag, segment-size, suppression and lens-quality gauges and refreshes the explorer.

    At most every ``every_s``.

    Parameters
    ----------
    metrics
        The gauges.
    explorer
        The segment explorer's document.
    every_s
        Seconds between refreshes.
    """

    def __init__(self, metrics: Metrics, explorer: Explorer, every_s: float = 2.0) -> None:
        self._metrics = metrics
        self._explorer = explorer
        self._every_s = every_s
        self._next = 0.0

    def update(self, transport: Transport | None, positions: Mapping[TP, int], core: Core | None) -> None:
        """Refresh when due; stats are best effort (a failure is logged at DEBUG)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every_s
        if transport is not None and positions:
            for tp, lag in transport.lag(positions).items():
                self._metrics.consumer_lag.labels(str(tp.partition)).set(lag)
        if core is None:
            return
        try:
            stats = core.stats()
            quality = core.lens_quality()
        except Exception:  # stats are best effort
            log.debug("stats() failed", exc_info=True)
            return
        for lens, sizes in stats.segments.items():
            for entry in sizes:
                self._metrics.segment_size.labels(str(lens), str(entry.id)).set(float(entry.size))
        for campaign, controls in stats.suppressed.items():
            for control, count in controls.items():
                self._metrics.suppressed.labels(campaign, control).set(count)
        self._metrics.set_lens_quality(quality)
        self._explorer.refresh(core)
