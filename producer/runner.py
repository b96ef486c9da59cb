"""The emit loop shared by ``synth`` and ``replay``: faults, pacing, limits, progress, counting.

Input is an iterator of :class:`Outgoing` (event time, key, encoded value,
event type); output goes to a :class:`~producer.sinks.Sink`. Wall-clock time
is used only here, for pacing and for the events/s figure.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from producer.faults import FaultInjector, Message
from producer.sinks import Sink

log = logging.getLogger(__name__)

PROGRESS_EVERY = 4096
"""Messages between two progress callbacks."""


class Outgoing(NamedTuple):
    """One valid encoded event on its way to the sink."""

    ts: float
    key: bytes
    value: bytes
    type: str


@dataclass(frozen=True)
class Pacing:
    """How fast to send.

    Attributes
    ----------
    rate
        At most this many messages per wall-clock second (``None`` = full speed).
    speed
        Follow the events' own timing, ``speed`` times faster (``None`` = ignore timing).
        ``speed=1`` replays in real time, ``speed=60`` an hour per minute.
    """

    rate: float | None = None
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.rate is not None and not self.rate > 0:
            raise ValueError(f"rate must be > 0 events/s, got {self.rate}")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")


@dataclass
class RunStats:
    """What one run sent.

    Attributes
    ----------
    messages
        Messages handed to the sink (valid events, duplicates, malformed).
    by_type
        Valid events per type (each counted once, duplicates excluded).
    faults
        Injected faults per kind.
    first_ts, last_ts
        Event-time span of the valid events (epoch seconds; ``None`` if none).
    elapsed_s
        Wall-clock duration including the final flush.
    stopped_early
        Whether the run stopped before the source was exhausted (``max_events`` or an interrupt).
    interrupted
        Whether a ``KeyboardInterrupt`` stopped the run.
    """

    messages: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    first_ts: float | None = None
    last_ts: float | None = None
    elapsed_s: float = 0.0
    stopped_early: bool = False
    interrupted: bool = False

    @property
    def events(self) -> int:
        """Valid events generated (without injected duplicates and malformed copies)."""
        return sum(self.by_type.values())

    @property
    def rate(self) -> float:
        """Messages per wall-clock second."""
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[int, float], None]
"""Called with ``(messages sent, event time of the latest event)`` every :data:`PROGRESS_EVERY` messages."""


@dataclass(frozen=True)
class RunOptions:
    """How one run sends, besides where to.

    Attributes
    ----------
    faults
        Optional fault injector (its held-back messages are sent at the end).
    max_events
        Stop taking events from the source after this many messages were sent.
    pacing
        Rate limit or timing-faithful replay (default: full speed).
    on_progress
        Progress callback.
    """

    faults: FaultInjector | None = None
    max_events: int | None = None
    pacing: Pacing = field(default_factory=Pacing)
    on_progress: ProgressCallback | None = None


def run(source: Iterable[Outgoing], sink: Sink, options: RunOptions | None = None) -> RunStats:
    """Send every message of ``source`` to ``sink``, then flush it.

    Parameters
    ----------
    source
        Valid events in the order to send them.
    sink
        Destination; flushed (not closed) at the end.
    options
        Faults, limit, pacing and progress (default: none of them, full speed).

    Returns
    -------
    RunStats
        Counts and timing. A ``KeyboardInterrupt`` stops the loop cleanly
        (held-back messages are still sent and the sink flushed).
    """
    options = options or RunOptions()
    stats = RunStats()
    started = time.perf_counter()
    try:
        _send_all(source, sink, options, stats, started)
    except KeyboardInterrupt:
        log.warning("interrupted: sending what is held back and flushing")
        stats.stopped_early = True
        stats.interrupted = True
    if options.faults is not None:
        stats.messages += _drain(options.faults, sink)
        stats.faults.update(options.faults.counts)
    sink.flush()
    stats.elapsed_s = time.perf_counter() - started
    if options.on_progress is not None:
        options.on_progress(stats.messages, stats.last_ts if stats.last_ts is not None else 0.0)
    return stats


def _send_all(source: Iterable[Outgoing], sink: Sink, options: RunOptions, stats: RunStats, started: float) -> None:
    """The loop of :func:`run`: counts go to ``stats`` even when an interrupt ends it."""
    send = sink.send
    faults, pacing, on_progress = options.faults, options.pacing, options.on_progress
    by_type = stats.by_type
    next_progress = PROGRESS_EVERY
    buffer: list[Message] = []
    sent = 0
    first_ts: float | None = None
    last_ts = 0.0
    limit = options.max_events if options.max_events is not None else -1
    paced = pacing.rate is not None or pacing.speed is not None
    try:
        for ts, key, value, etype in source:
            if sent == limit:
                stats.stopped_early = True
                break
            last_ts = ts
            if first_ts is None:
                first_ts = ts
            by_type[etype] += 1
            if paced:
                _wait(pacing, started, sent, ts - first_ts)
            if faults is None:
                send(key, value)
                sent += 1
            else:
                faults.process(ts, key, value, buffer)
                for k, v in buffer:
                    send(k, v)
                sent += len(buffer)
                buffer.clear()
            if on_progress is not None and sent >= next_progress:
                on_progress(sent, ts)
                next_progress = sent + PROGRESS_EVERY
    finally:
        stats.messages = sent
        stats.first_ts = first_ts
        stats.last_ts = last_ts if first_ts is not None else None


def _drain(faults: FaultInjector, sink: Sink) -> int:
    """Send the messages ``faults`` still holds back; returns how many."""
    buffer: list[Message] = []
    faults.drain(buffer)
    for k, v in buffer:
        sink.send(k, v)
    return len(buffer)


def _wait(pacing: Pacing, started: float, sent: int, event_offset: float) -> None:
    due = started
    if pacing.rate is not None:
        due = max(due, started + sent / pacing.rate)
    if pacing.speed is not None:
        due = max(due, started + event_offset / pacing.speed)
    delay = due - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
