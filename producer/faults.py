"""Deliberate faults in an encoded event stream: malformed messages, duplicates, late events.

The injector sits between the encoder and the sink. Each fault is counted by
kind (``FaultInjector.counts``) and can be reported line by line to a fault
log, so a consumer's DLQ, duplicate and lateness counters can be checked
against what was injected.

Kinds:

``malformed.bad_json``
    an extra message: the event's JSON cut in half.
``malformed.missing_field``
    an extra message: the event without one of ``event_id``, ``customer_id``, ``type``, ``ts``.
``malformed.negative_amount``
    an extra message: the event as a ``purchase`` with a negative amount.
``malformed.naive_timestamp``
    an extra message: the event with its ``ts`` stripped of the UTC offset.
``duplicate``
    the same bytes (same ``event_id``) sent again 1–``duplicate_max_lag`` messages later.
``late``
    the event held back and sent once the stream's event time has moved
    ``late_min_s``–``late_max_s`` past it (out of order).
``bad_clock``
    one event (the ``bad_clock_at``-th valid event, counted from 0) sent with
    its ``ts`` moved ``bad_clock_ahead_s`` (a year by default) into the future,
    in place of the original: a device with a wrong clock. Its id is unchanged.

Malformed copies get the event id ``<event_id>-malformed`` so they never
collide with the valid original, which is still sent.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson

MALFORMED_KINDS: tuple[str, ...] = (
    "malformed.bad_json",
    "malformed.missing_field",
    "malformed.negative_amount",
    "malformed.naive_timestamp",
)
"""Every malformed-message kind, in the order they are drawn."""

FAULT_KINDS: tuple[str, ...] = (*MALFORMED_KINDS, "duplicate", "late", "bad_clock")
"""Every fault kind the injector counts."""

_REQUIRED = ("event_id", "customer_id", "type", "ts")

FaultListener = Callable[[str, dict[str, Any]], None]
"""Called with ``(kind, details)`` for each injected fault; details hold ``event_id``, ``customer_id``, ``ts``."""


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates, each a probability per valid event.

    Attributes
    ----------
    malformed_rate
        Probability of emitting an extra malformed message after an event.
    duplicate_rate
        Probability of re-sending an event later.
    late_rate
        Probability of delaying an event past later ones.
    late_min_s, late_max_s
        Range of the event-time delay of a late event (uniform).
    duplicate_max_lag
        A duplicate follows its original within this many messages.
    bad_clock_at
        Index (from 0, among valid events) of the one event sent dated ahead; ``None``: none.
    bad_clock_ahead_s
        How far ahead that event is dated (default 365 days).
    seed
        Seed of the injector's own random generator (independent of the simulator's).
    """

    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    late_rate: float = 0.0
    late_min_s: float = 600.0
    late_max_s: float = 6 * 3600.0
    duplicate_max_lag: int = 50
    bad_clock_at: int | None = None
    bad_clock_ahead_s: float = 365 * 86400.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("malformed_rate", "duplicate_rate", "late_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not (0 <= self.late_min_s <= self.late_max_s and math.isfinite(self.late_max_s)):
            raise ValueError(f"need 0 <= late_min_s <= late_max_s, got {self.late_min_s}, {self.late_max_s}")
        if self.duplicate_max_lag < 1:
            raise ValueError(f"duplicate_max_lag must be >= 1, got {self.duplicate_max_lag}")
        if self.bad_clock_at is not None and self.bad_clock_at < 0:
            raise ValueError(f"bad_clock_at must be >= 0, got {self.bad_clock_at}")
        if not (math.isfinite(self.bad_clock_ahead_s) and self.bad_clock_ahead_s > 0):
            raise ValueError(f"bad_clock_ahead_s must be > 0, got {self.bad_clock_ahead_s}")

    @property
    def active(self) -> bool:
        """Whether any fault can be injected."""
        return self.malformed_rate > 0 or self.duplicate_rate > 0 or self.late_rate > 0 or self.bad_clock_at is not None


Message = tuple[bytes, bytes]
"""An encoded message: ``(key, value)``."""


class FaultInjector:
    """Apply :class:`FaultConfig` to a stream of encoded events.

    Parameters
    ----------
    config
        Rates and delays.
    listener
        Optional callback told about each fault (for a fault log).

    Examples
    --------
    >>> inj = FaultInjector(FaultConfig(duplicate_rate=1.0, duplicate_max_lag=1))
    >>> out: list[tuple[bytes, bytes]] = []
    >>> inj.process(0.0, b"c1", b'{"event_id":"e1","customer_id":"c1"}', out)
    >>> inj.drain(out)
    >>> len(out), inj.counts["duplicate"]
    (2, 1)
    """

    def __init__(self, config: FaultConfig, listener: FaultListener | None = None) -> None:
        self.config = config
        self.counts: Counter[str] = Counter()
        self._listener = listener
        rng = np.random.default_rng([config.seed, 0x6661756C74])
        self._rng = rng
        self._u: list[float] = []
        self._ui = 0
        self._seq = itertools.count()
        self._late: list[tuple[float, int, bytes, bytes]] = []
        self._dups: list[tuple[int, int, bytes, bytes]] = []
        self._n = 0
        self._valid = 0

    def _uniform(self) -> float:
        i = self._ui
        if i >= len(self._u):
            self._u = self._rng.random(4096).tolist()
            i = 0
        self._ui = i + 1
        return self._u[i]

    def process(self, ts: float, key: bytes, value: bytes, out: list[Message]) -> None:
        """Append to ``out`` what the sink should receive now for this event (possibly nothing)."""
        cfg = self.config
        if self._valid == cfg.bad_clock_at:
            value = self._redate(value, cfg.bad_clock_ahead_s)
            self._record("bad_clock", value)
        self._valid += 1
        late = self._late
        while late and late[0][0] <= ts:
            _, _, k, v = heapq.heappop(late)
            self._append(k, v, out)
        if cfg.late_rate and self._uniform() < cfg.late_rate:
            delay = cfg.late_min_s + (cfg.late_max_s - cfg.late_min_s) * self._uniform()
            heapq.heappush(late, (ts + delay, next(self._seq), key, value))
            self._record("late", value)
        else:
            self._append(key, value, out)
        if cfg.duplicate_rate and self._uniform() < cfg.duplicate_rate:
            lag = 1 + int(self._uniform() * cfg.duplicate_max_lag)
            heapq.heappush(self._dups, (self._n + lag, next(self._seq), key, value))
            self._record("duplicate", value)
        if cfg.malformed_rate and self._uniform() < cfg.malformed_rate:
            kind = MALFORMED_KINDS[min(int(self._uniform() * len(MALFORMED_KINDS)), len(MALFORMED_KINDS) - 1)]
            bad = self._malform(kind, value)
            self._record(kind, value)
            self._append(key, bad, out)

    def drain(self, out: list[Message]) -> None:
        """Append every held-back message (late events, pending duplicates) to ``out``; call at the end."""
        merged = sorted([(t, s, k, v) for t, s, k, v in self._late], key=lambda r: (r[0], r[1]))
        self._late.clear()
        for _, _, k, v in merged:
            self._append(k, v, out)
        while self._dups:
            _, _, k, v = heapq.heappop(self._dups)
            out.append((k, v))
            self._n += 1

    @property
    def pending(self) -> int:
        """Messages held back (late and duplicates) not yet released."""
        return len(self._late) + len(self._dups)

    def _append(self, key: bytes, value: bytes, out: list[Message]) -> None:
        out.append((key, value))
        self._n += 1
        dups = self._dups
        while dups and dups[0][0] <= self._n:
            _, _, k, v = heapq.heappop(dups)
            out.append((k, v))
            self._n += 1

    def _record(self, kind: str, value: bytes) -> None:
        self.counts[kind] += 1
        if self._listener is not None:
            event = orjson.loads(value)
            self._listener(
                kind,
                {"event_id": event.get("event_id"), "customer_id": event.get("customer_id"), "ts": event.get("ts")},
            )

    @staticmethod
    def _redate(value: bytes, ahead_s: float) -> bytes:
        event: dict[str, Any] = orjson.loads(value)
        moved = datetime.fromisoformat(event["ts"]) + timedelta(seconds=ahead_s)
        event["ts"] = moved.isoformat(timespec="milliseconds")
        return orjson.dumps(event)

    def _malform(self, kind: str, value: bytes) -> bytes:
        event: dict[str, Any] = orjson.loads(value)
        event["event_id"] = f"{event['event_id']}-malformed"
        if kind == "malformed.bad_json":
            encoded = orjson.dumps(event)
            return encoded[: max(1, len(encoded) // 2)]
        if kind == "malformed.missing_field":
            drop = _REQUIRED[min(int(self._uniform() * len(_REQUIRED)), len(_REQUIRED) - 1)]
            event.pop(drop, None)
        elif kind == "malformed.negative_amount":
            event["type"] = "purchase"
            event["amount"] = -round(abs(float(event.get("amount") or 10.0)), 2) or -1.0
        else:
            event["ts"] = str(event["ts"])[:23]  # 2026-01-01T00:00:00.000 without the offset
        return orjson.dumps(event)
