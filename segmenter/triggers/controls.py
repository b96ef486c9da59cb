"""Delivery controls as small pure pieces: durations, quiet hours, cooldown, cap.

All times are event times in epoch seconds (UTC); nothing here reads a clock.

Examples
--------
>>> parse_duration("1d12h"), format_duration(129600.0)
(129600.0, '1d12h')
>>> from zoneinfo import ZoneInfo
>>> q = QuietHours(start=parse_clock("21:00"), end=parse_clock("08:00"), zone=ZoneInfo("Europe/Berlin"), action="hold")
>>> t = 1774735200.0            # 2026-03-28T22:00:00Z = 23:00 in Berlin, the night clocks go forward
>>> q.is_quiet(t), q.ends_at(t) - t   # 08:00 CEST is 06:00Z: 8 hours later, not 9
(True, 28800.0)
>>> cooldown_blocks([(0.0, "a"), (50.0, "b")], "a", 99.0, cooldown=100.0)
True
>>> cap_blocks([0.0, 10.0], 20.0, limit=2, period=30.0), cap_blocks([0.0, 10.0], 30.0, limit=2, period=30.0)
(True, False)
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

__all__ = [
    "QuietAction",
    "QuietHours",
    "cap_blocks",
    "cooldown_blocks",
    "format_duration",
    "parse_clock",
    "parse_duration",
    "reentry_blocks",
]

QuietAction = Literal["hold", "drop"]

_UNITS: tuple[tuple[str, int], ...] = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_UNIT = dict(_UNITS)
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[wdhms])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(value: object) -> float:
    """A duration in seconds from ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``, ``"1d12h"`` or a number of seconds.

    Raises
    ------
    ValueError
        If the value is negative, not finite or not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '7d', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text.startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
        if not _DURATION.match(text):
            raise ValueError(
                f"not a duration: {value!r}; write e.g. '30m', '12h', '7d', '2w', '1d12h' or a number of seconds"
            )
        seconds = sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"expected a duration such as '7d', got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest ``1d12h``-style text for a duration (``0s`` for zero)."""
    if seconds <= 0:
        return "0s"
    rest = seconds
    out: list[str] = []
    for unit, size in _UNITS[1:]:  # days, not weeks: "14d" reads better than "2w"
        n = int(rest // size)
        if n:
            out.append(f"{n}{unit}")
            rest -= n * size
    if rest > 1e-9:
        out.append(f"{rest:g}s")
    return "".join(out)


def parse_clock(value: object) -> time:
    """A wall-clock time from ``"HH:MM"`` (24-hour) or a :class:`datetime.time` (TOML local time).

    Raises
    ------
    ValueError
        On anything else; YAML users must quote times (``"21:00"``), since
        unquoted ``21:00`` is a base-60 integer in YAML 1.1.
    """
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise ValueError("write a local wall-clock time without offset; the zone is set by 'timezone'")
        return value.replace(second=0, microsecond=0)
    if isinstance(value, str):
        m = _CLOCK.match(value.strip())
        if m is None:
            raise ValueError(f"not a time of day: {value!r}; write 'HH:MM', e.g. '21:00'")
        return time(int(m.group(1)), int(m.group(2)))
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"got the number {value}; write times as quoted strings, e.g. '21:00' (YAML reads 21:00 as 1260)"
        )
    raise ValueError(f"not a time of day: {value!r}; write 'HH:MM', e.g. '21:00'")


@dataclass(frozen=True)
class QuietHours:
    """A daily quiet window in a time zone, e.g. 21:00-08:00 Europe/Berlin.

    The window is ``start <= local wall time < end`` and wraps midnight when
    ``start > end``. Local wall time comes from :mod:`zoneinfo`, so a window
    keeps its wall-clock edges across daylight-saving changes (the night the
    clocks go forward is one hour shorter in UTC). An ``end`` that falls in a
    DST gap is read with ``fold=0`` (PEP 495), i.e. just after the gap.
    """

    start: time
    end: time
    zone: ZoneInfo
    action: QuietAction

    def is_quiet(self, epoch: float) -> bool:
        """Whether the instant falls inside the quiet window."""
        now = datetime.fromtimestamp(epoch, self.zone).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def ends_at(self, epoch: float) -> float:
        """When the quiet period containing ``epoch`` ends (epoch seconds; ``epoch`` itself if not quiet)."""
        if not self.is_quiet(epoch):
            return epoch
        local = datetime.fromtimestamp(epoch, self.zone)
        day: date = local.date()
        if self.start > self.end and local.time().replace(tzinfo=None) >= self.start:
            day = day + timedelta(days=1)
        end = datetime.combine(day, self.end, tzinfo=self.zone).timestamp()
        return max(end, epoch)

    def describe(self) -> str:
        """``21:00-08:00 Europe/Berlin``."""
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}"


def cooldown_blocks(history: Sequence[tuple[float, str]], campaign: str, at: float, cooldown: float) -> bool:
    """Whether a delivery of ``campaign`` at ``at`` would be within ``cooldown`` of another one.

    ``history`` holds ``(delivered_at, campaign)`` of this customer's deliveries
    (including reserved, held ones). Deliveries on both sides of ``at`` count,
    so the rule holds for out-of-order input too.
    """
    if cooldown <= 0:
        return False
    return any(c == campaign and abs(at - t) < cooldown for t, c in history)


def cap_blocks(times: Sequence[float], at: float, limit: int, period: float) -> bool:
    """Whether one more delivery at ``at`` would put more than ``limit`` into some window of length ``period``.

    Windows are half-open, ``[s, s + period)``, anywhere on the time line; the
    fullest window containing ``at`` starts at ``at`` or at an earlier delivery.
    """
    ordered = sorted(times)
    starts = [t for t in ordered if at - period < t <= at]
    starts.append(at)
    for s in starts:
        lo = bisect.bisect_left(ordered, s)
        hi = bisect.bisect_left(ordered, s + period)
        if hi - lo + 1 > limit:
            return True
    return False


def reentry_blocks(mode: str, last_fired: float | None, at: float, period: float) -> bool:
    """Whether a rule's re-entry control stops it firing at ``at``.

    ``last_fired`` is the rule's last delivery time for the customer while it
    is *not re-armed* (``None`` when armed): ``after_exit`` and ``once`` block
    whenever it is set, ``after_period`` blocks within ``period`` of it,
    ``always`` never blocks.
    """
    if last_fired is None or mode == "always":
        return False
    if mode == "after_period":
        return abs(at - last_fired) < period
    return True
