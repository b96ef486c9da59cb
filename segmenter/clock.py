"""The event clock: per-source time, idleness and the watermark (event time only, no wall clock).

A *source* is an input partition (``None``: the one source of an offline run).
Kafka keeps one customer's events in order within its partition, so lateness
is judged per customer, against that customer's latest applied event time
(:mod:`segmenter.kernel`); the clock here drives only *time-driven* work:
inactivity re-scoring, the release of held triggers and refinement ticks.

Per source
    a **sample** of the ``2 * quorum - 1`` distinct customers (by crc32 of
    the id) with the latest times seen from it, and its **clock**: the
    ``q``-th largest time in that sample, never decreasing, where ``q`` is
    ``quorum`` or, with ``n`` fewer customers in the sample, ``ceil(n / 2)``.
    One customer's bad clock cannot move it; ``q`` customers agreeing can.

    its **latest time** (``smax``): the latest event time of a customer not
    isolated (below) accepted from it.

    its **ahead sample**: the ``q`` latest distinct customers whose events
    came more than ``max_future`` ahead of both the clock and the latest time
    (entries no longer ahead are dropped first). When ``q`` of them are ahead
    (a real gap in the stream, not one bad clock) the clock jumps to the
    ``q``-th largest of them.

    Nothing is refused for being ahead. A customer whose latest time is more
    than ``max_future`` ahead of its source's clock and latest time is
    **isolated** (:func:`segmenter.kernel.isolated`): its events are applied
    to its own features, segments and outputs, but it takes no part in
    anything shared (lens learning, refinement, shared-mode samples), its
    events do not move the clock, the latest time or ``max_t``, and it is not
    judged for lateness (its own latest time is not trusted). One bad clock
    stays isolated (and harmless) until the stream really reaches its time;
    after a real gap, the first ``q - 1`` customers back are isolated until
    the ``q``-th arrives and the jump makes them rejoin, with nothing lost.
    The very first event of a source has nothing to be judged against (the
    Kafka edge dead-letters events far ahead of their record timestamp, as
    ``future``, before they get here).

    its **idleness**: a source is *active* (it holds the watermark) or
    *idle* (it does not). The edge marks a partition idle when it has read it
    to its end offset, and active again when it has data; an event from a
    source makes it active again by itself. This is Flink's watermark
    idleness (a split without records is marked idle and excluded from the
    minimum) and what Kafka Streams' ``max.task.idle.ms`` decides for a task
    whose partition has no buffered data: here the edge decides it from the
    end offset, so nothing waits on a timer.

The watermark
    ``min`` over the active sources' clocks, minus the allowed lateness. An
    active source without a clock yet (assigned, not read) holds it; with
    every source idle it holds. It never decreases.

Assignment (:meth:`EventClock.open_source`)
    the partition becomes an active source without a clock: it holds the
    watermark until its first event, its restored clock (:meth:`EventClock.load`)
    or its idleness.
Revocation (:meth:`EventClock.drop_sources`)
    its clock is forgotten here (it travels with the partition's state, see
    :meth:`EventClock.take_dirty`); the watermark does not move back.
Restore (:meth:`EventClock.load`, :meth:`EventClock.load_state`)
    clocks keep the later of what is held and what is loaded. State written
    by older code may hold a clock or watermark poisoned by one far-future
    event: :meth:`EventClock.repair` clamps them to the restored customers'
    own robust time before the next event (see docs/internals.md, "Event time").

The samples live only in memory: after a restore a source's clock is its
loaded value and the samples refill from new events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from segmenter.features import BASE_EPOCH

__all__ = ["UNSET", "EventClock", "iso", "watermark_of"]

logger = logging.getLogger(__name__)


def iso(t_rel: int) -> str:
    """An event time (seconds relative to :data:`~segmenter.features.BASE_EPOCH`) as ISO-8601 UTC."""
    return datetime.fromtimestamp(t_rel + BASE_EPOCH, UTC).isoformat()


UNSET = np.iinfo(np.int64).min
"""A source clock not known yet."""
_NO_LOW = np.iinfo(np.int64).max

SourceState = tuple[int, int, list[list[int]], list[list[int]]]
"""One source: ``(clock, latest time, sample [[time, key], ...], ahead sample [[time, key], ...])``."""
ClockState = tuple[int | None, int | None, int | None, int | None, dict[int | None, SourceState]]
"""``(max_t, watermark, next_check, released_at, {source: SourceState})`` (:meth:`EventClock.state`)."""


@njit(cache=True)
def watermark_of(clock: Any, idle: Any, lateness: int) -> tuple[bool, int]:  # pragma: no cover - compiled
    """``(defined, watermark)``: min over active sources' clocks minus ``lateness``; undefined while it holds."""
    low = _NO_LOW
    for s in range(len(clock)):
        if idle[s]:
            continue
        if clock[s] == UNSET:
            return False, 0
        low = min(low, clock[s])
    if low == _NO_LOW:
        return False, 0
    return True, low - lateness


@njit(cache=True)
def remember(  # noqa: PLR0913, PLR0917 - compiled; the kernel's loop passes one sample's three columns
    ktime: Any, kkey: Any, kcount: Any, si: int, key: int, at: int
) -> None:  # pragma: no cover - compiled
    """Record customer ``key``'s event at ``at`` in source ``si``'s sample (the latest distinct customers)."""
    n = kcount[si]
    low = 0
    for j in range(n):
        if kkey[si, j] == key:
            ktime[si, j] = max(ktime[si, j], at)
            return
        if ktime[si, j] < ktime[si, low]:
            low = j
    if n < ktime.shape[1]:
        ktime[si, n] = at
        kkey[si, n] = key
        kcount[si] = n + 1
    elif at > ktime[si, low]:
        ktime[si, low] = at
        kkey[si, low] = key


@njit(cache=True)
def prune_ahead(atime: Any, akey: Any, acount: Any, si: int, limit: int) -> None:  # pragma: no cover
    """Drop from source ``si``'s ahead sample the customers no longer ahead (time ``<= limit``)."""
    n = 0
    for j in range(acount[si]):
        if atime[si, j] > limit:
            atime[si, n] = atime[si, j]
            akey[si, n] = akey[si, j]
            n += 1
    acount[si] = n


@njit(cache=True)
def majority(kcount: Any, si: int, quorum: int) -> int:  # pragma: no cover - compiled
    """How many customers must agree in source ``si``: ``quorum``, or a majority of fewer (at least 1)."""
    n: int = kcount[si]
    return max(1, min(quorum, (n + 1) // 2))


@njit(cache=True)
def kth_latest(ktime: Any, kcount: Any, si: int, q: int) -> int:  # pragma: no cover - compiled
    """The ``q``-th largest time in source ``si``'s sample (``q <= kcount[si]``)."""
    n = kcount[si]
    for j in range(n):  # the one value with fewer than q larger and at least q at least as large (no allocation)
        v = ktime[si, j]
        above = 0
        at_least = 0
        for k in range(n):
            w = ktime[si, k]
            above += w > v
            at_least += w >= v
        if above < q <= at_least:
            out: int = v
            return out
    return int(ktime[si, 0])  # unreachable for 1 <= q <= n


class EventClock:
    """Per-source clocks and idleness, the watermark and the ticks of time-driven work.

    Parameters
    ----------
    lateness
        Allowed lateness in seconds (the watermark is this far behind the slowest active clock).
    quorum
        Distinct customers who must agree to move a source's clock (see the module).
    max_future
        Seconds a customer may run ahead of its source's clock and latest time before it is isolated.

    Attributes
    ----------
    max_t
        Latest event time accepted, relative seconds.
    watermark, next_check, released_at
        The watermark, the next inactivity boundary, the watermark at the last release of held triggers.
    clock, smax, idle, dirty, ktime, kkey, kcount, atime, akey, acount
        Per source index (see :attr:`keys`): the arrays the compiled loop reads and writes.
    """

    clock: npt.NDArray[np.int64]
    smax: npt.NDArray[np.int64]
    idle: npt.NDArray[np.uint8]
    dirty: npt.NDArray[np.uint8]
    ktime: npt.NDArray[np.int64]
    kkey: npt.NDArray[np.int64]
    kcount: npt.NDArray[np.int64]
    atime: npt.NDArray[np.int64]
    akey: npt.NDArray[np.int64]
    acount: npt.NDArray[np.int64]

    def __init__(self, lateness: int, quorum: int, max_future: int) -> None:
        self.lateness = lateness
        self.quorum = max(1, quorum)
        self.max_future = max_future
        self.max_t: int | None = None
        self.watermark: int | None = None
        self.next_check: int | None = None
        self.released_at: int | None = None
        self.keys: list[int | None] = []
        self._index: dict[int | None, int] = {}
        # per source: (array name, row shape, fill)
        self._layout: tuple[tuple[str, tuple[int, ...], int, type], ...] = (
            ("clock", (), UNSET, np.int64), ("smax", (), UNSET, np.int64), ("idle", (), 0, np.uint8),
            ("dirty", (), 0, np.uint8), ("ktime", (2 * self.quorum - 1,), 0, np.int64),
            ("kkey", (2 * self.quorum - 1,), -1, np.int64), ("kcount", (), 0, np.int64),
            ("atime", (self.quorum,), 0, np.int64), ("akey", (self.quorum,), -1, np.int64),
            ("acount", (), 0, np.int64),
        )  # fmt: skip
        self._select(np.zeros(0, np.intp))
        self.needs_repair = False

    def _select(self, rows: npt.NDArray[np.intp], grow: int = 0) -> None:
        """Keep the sources at ``rows`` (in that order) and append ``grow`` new ones."""
        for name, shape, fill, dtype in self._layout:
            old: npt.NDArray[Any] = getattr(self, name, np.zeros((0, *shape), dtype))
            setattr(self, name, np.concatenate([old[rows], np.full((grow, *shape), fill, dtype)]))

    # ------------------------------------------------------------- sources
    def index(self, source: int | None) -> int:
        """The source's index in the arrays; a source not known yet becomes active without a clock."""
        si = self._index.get(source)
        if si is None:
            si = self._index[source] = len(self.keys)
            self.keys.append(source)
            self._select(np.arange(si), grow=1)
        return si

    def open_source(self, source: int) -> None:
        """An assigned partition: active; without a clock (events or :meth:`load`) it holds the watermark."""
        si = self.index(source)  # first: it may reallocate the arrays
        self.idle[si] = 0

    def set_idle(self, source: int, idle: bool) -> None:
        """Mark a source idle (read to its end: it stops holding the watermark) or active again."""
        si = self.index(source)
        self.idle[si] = 1 if idle else 0
        self.recompute()

    def load(self, source: int, t: int) -> None:
        """Restore a source's clock (keeps the later of what is held and ``t``); repaired before the next event."""
        si = self.index(source)
        self.clock[si] = t if self.clock[si] == UNSET else max(int(self.clock[si]), t)
        self.smax[si] = max(int(self.smax[si]), t)
        if self.max_t is None or t > self.max_t:
            self.max_t = t
        self.needs_repair = True
        self.recompute()

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        """Forget every source for which ``keep(source)`` is false; the watermark does not move back."""
        kept = [i for i, s in enumerate(self.keys) if keep(s)]
        if len(kept) == len(self.keys):
            return
        self._select(np.array(kept, np.intp))
        self.keys = [self.keys[i] for i in kept]
        self._index = {s: i for i, s in enumerate(self.keys)}
        self.recompute()

    def forget(self, key: int) -> None:
        """Drop customer ``key`` (crc32 of its id) from every source's samples (an erasure); clocks stay."""
        for times, keys, count in ((self.ktime, self.kkey, self.kcount), (self.atime, self.akey, self.acount)):
            for si in np.flatnonzero((keys == key).any(axis=1)).tolist():
                n = int(count[si])
                keep = keys[si, :n] != key
                m = int(keep.sum())
                times[si, :m], keys[si, :m] = times[si, :n][keep], keys[si, :n][keep]
                times[si, m:n], keys[si, m:n] = 0, -1
                count[si] = m

    def take_dirty(self) -> dict[int, int]:
        """Sources (``None`` excluded) whose clock moved since the last call: ``{source: clock}``."""
        out = {s: int(self.clock[i]) for i, s in enumerate(self.keys) if self.dirty[i] and s is not None}
        self.dirty[:] = 0
        return dict(sorted(out.items()))

    def horizon(self) -> int | None:
        """The latest time a customer may have and not be isolated from every source (``None``: no clock yet).

        ``max_future`` past the latest of the sources' clocks and latest times;
        refinement leaves out the customers beyond it.
        """
        known = self.clock != UNSET
        if not known.any():
            return None
        return int(np.maximum(self.clock[known], self.smax[known]).max()) + self.max_future

    def clock_of(self, source: int | None) -> int | None:
        """The source's clock (``None``: none yet)."""
        si = self._index.get(source)
        return None if si is None or self.clock[si] == UNSET else int(self.clock[si])

    # ----------------------------------------------------------- watermark
    def recompute(self) -> None:
        """Move the watermark to the slowest active clock minus the lateness, if that is later."""
        defined, wm = watermark_of(self.clock, self.idle, self.lateness)
        if defined and (self.watermark is None or wm > self.watermark):
            self.watermark = int(wm)

    def advance(self, t: int) -> bool:
        """Move the watermark to ``t`` if that is later (``replay --until``); True when it moved."""
        if self.watermark is None or t > self.watermark:
            self.watermark = t
            return True
        return False

    def repair(self, robust: int | None) -> None:
        """Clamp times more than ``max_future`` ahead of ``robust`` (the restored customers' robust time) to it.

        State written before the robust clock existed may hold a source clock, a
        watermark and ticks moved by one far-future event; such a state is
        repaired here (logged as a warning), never refused.
        """
        self.needs_repair = False
        if robust is None:
            return
        limit = robust + self.max_future
        fixed = []
        bad = self.clock > limit
        if bad.any():
            fixed.append(f"{int(bad.sum())} source clock(s)")
            self.clock[bad] = robust
        self.smax = np.where(self.smax > limit, robust, self.smax)
        if self.max_t is not None and self.max_t > limit:
            fixed.append("latest event time")
            self.max_t = robust
        if self.watermark is not None and self.watermark > limit - self.lateness:
            fixed.append("watermark")
            self.watermark = robust - self.lateness
            self.next_check = None
            self.released_at = None
        if fixed:
            logger.warning(
                "restored event clock was ahead of the customers' own times: %s repaired to %d",
                ", ".join(fixed),
                robust,
            )

    # ----------------------------------------------------------- persistence
    def state(self) -> ClockState:
        """The persistent part: ``(max_t, watermark, next_check, released_at, {source: SourceState})``.

        Idleness is not kept: the edge sets it again for the partitions it reads.
        """
        sources: dict[int | None, SourceState] = {}
        for i, s in enumerate(self.keys):
            if self.clock[i] == UNSET:
                continue
            k, a = int(self.kcount[i]), int(self.acount[i])
            sample = [[int(t), int(c)] for t, c in zip(self.ktime[i, :k], self.kkey[i, :k], strict=True)]
            ahead = [[int(t), int(c)] for t, c in zip(self.atime[i, :a], self.akey[i, :a], strict=True)]
            sources[s] = (int(self.clock[i]), int(self.smax[i]), sample, ahead)
        return (self.max_t, self.watermark, self.next_check, self.released_at, sources)

    def load_state(self, state: tuple[Any, ...]) -> None:
        """Restore :meth:`state` output (sources are replaced).

        Also reads the older ``{source: latest event time}`` form (no samples),
        and repairs what it restores before the next event (:meth:`repair`).
        """
        self.max_t, self.watermark, self.next_check, self.released_at = state[:4]
        sources: dict[Any, Any] = dict(state[4]) if len(state) > 4 else {}
        if not sources and self.max_t is not None:
            sources = {None: self.max_t}
        self.keys = []
        self._index = {}
        self._select(np.zeros(0, np.intp))
        for s, src in sources.items():
            si = self.index(s)
            if isinstance(src, int):
                self.clock[si] = self.smax[si] = src
                continue
            self.clock[si], self.smax[si], sample, ahead = src
            self._fill(self.ktime, self.kkey, self.kcount, si, sample)
            self._fill(self.atime, self.akey, self.acount, si, ahead)
        self.needs_repair = True

    @staticmethod
    def _fill(
        times: npt.NDArray[np.int64],
        keys: npt.NDArray[np.int64],
        count: npt.NDArray[np.int64],
        si: int,
        pairs: list[list[int]],
    ) -> None:
        pairs = pairs[: times.shape[1]]
        count[si] = len(pairs)
        for j, (t, c) in enumerate(pairs):
            times[si, j] = t
            keys[si, j] = c
