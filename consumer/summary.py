"""The periodic INFO summary line of ``segmenter-consumer`` (one every 30 s by default).

Example::

    summary: 1840 events/s over the last 30 s, lag 0 records, DLQ {invalid_json: 2}, moves {event: 412, inactivity: 9},
    triggers 37

and, only when some arrived since the last line, ``, records keyed other than by customer_id N``
(:mod:`consumer.key_check`). Everything but the moves comes from the service's own counters
(:class:`~consumer.metrics.Metrics`); the moves by cause come from the core's
:meth:`~segmenter.pipeline.Segmenter.stats` (``changes``), read only when a
line is due. A core rebuilt after a failure starts its counters afresh, which
:class:`Summary` takes into account.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import Counter

from consumer.metrics import Metrics

__all__ = ["Summary"]

log = logging.getLogger(__name__)

TRIGGER_KIND = "campaign_trigger"
"""The output kind of a campaign trigger (the ``outputs`` counter's label)."""


class _HasStats(Protocol):
    def stats(self) -> object: ...


def _by_label(counter: Counter) -> dict[str, float]:
    """A one-label counter's totals by label value."""
    out: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels:
                out[next(iter(sample.labels.values()))] = sample.value
    return out


def _delta(now: Mapping[str, float], before: Mapping[str, float]) -> dict[str, int]:
    """What each count grew by; a count that went down was restarted (a rebuilt core) and counts in full."""
    out: dict[str, int] = {}
    for key, value in now.items():
        grown = value - before.get(key, 0.0)
        grown = value if grown < 0 else grown
        if grown > 0:
            out[key] = int(grown)
    return out


def _fmt(counts: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + "}"


class Summary:
    """Logs one INFO line every ``interval_s`` on what the service did since the previous line.

    Parameters
    ----------
    metrics
        The service's counters.
    interval_s
        Seconds between lines.
    clock
        Monotonic seconds (injected by tests).
    """

    def __init__(self, metrics: Metrics, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._interval_s = interval_s
        self._clock = clock
        self._since: float | None = None
        self._counts: dict[str, float] = {}
        self._dlq: dict[str, float] = {}
        self._moves: dict[str, float] = {}

    def tick(self, core: _HasStats | None) -> str | None:
        """Called on every loop iteration; logs and returns the line when one is due (else ``None``)."""
        now = self._clock()
        if self._since is None:
            self._since = now
            self._counts, self._dlq, self._moves = self._read(core)
            return None
        elapsed = now - self._since
        if elapsed < self._interval_s:
            return None
        counts, dlq, moves = self._read(core)
        grown = _delta(counts, self._counts)
        lag = sum(_gauge_values(self._metrics))
        line = (
            f"summary: {grown.get('events', 0) / elapsed:.0f} events/s over the last {elapsed:.0f} s, "
            f"lag {lag:.0f} records, DLQ {_fmt(_delta(dlq, self._dlq))}, moves {_fmt(_delta(moves, self._moves))}, "
            f"triggers {grown.get('triggers', 0)}"
        )
        if grown.get("key_mismatches"):  # a healthy stream has none: not shown then
            line += f", records keyed other than by customer_id {grown['key_mismatches']}"
        log.info("%s", line)
        self._since, self._counts, self._dlq, self._moves = now, counts, dlq, moves
        return line

    def _read(self, core: _HasStats | None) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        m = self._metrics
        events = m.registry.get_sample_value("segmenter_events_in_total") or 0.0
        counts = {
            "events": events,
            "triggers": _by_label(m.outputs).get(TRIGGER_KIND, 0.0),
            "key_mismatches": m.registry.get_sample_value("segmenter_key_mismatches_total") or 0.0,
        }
        moves: dict[str, float] = dict(self._moves)
        if core is not None:
            try:
                changes = getattr(core.stats(), "changes", {})
            except Exception:  # the summary is best effort, like the gauges
                log.debug("stats() failed", exc_info=True)
            else:
                moves = {str(k): float(v) for k, v in changes.items()}
        return counts, _by_label(m.rejected), moves


def _gauge_values(metrics: Metrics) -> list[float]:
    return [s.value for family in metrics.consumer_lag.collect() for s in family.samples]
