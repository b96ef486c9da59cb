"""Partition ownership: what the group assigned, its restore and release, and the partitions' clocks.

The rebalance callbacks only note what changed (:class:`Assignment`); the
loop restores newly assigned partitions right after the poll that assigned
them, before any of their records is processed:

* restore: the model topic's newest model (or view), then the state
  partitions read to their end with ``read_committed``, waiting until no
  transaction of a killed previous owner is left open on them;
* each restored input partition then holds the watermark
  (``open_source``) until it has events or is idle;
* idleness (as Flink's idle sources, Kafka Streams' ``max.task.idle.ms``):
  after a poll's records are processed, a partition whose position has reached
  its end offset is marked idle (``set_idle(partition, True)``); a poll that
  returns records of an idle partition marks it active again *before* they are
  processed;
* release (revocation, loss): the partitions' customers and clocks are
  dropped (``drop_partitions``, ``drop_sources``); the watermark is over the
  owned partitions only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic

from consumer.core import C, Core, ModelKeeper
from consumer.errors import TopicSetupError
from consumer.metrics import Metrics
from consumer.sink import TP, InRecord, Transport
from consumer.state import restore_customers
from consumer.topics import GREW

log = logging.getLogger(__name__)


@dataclass
class Assignment:
    """The partitions this member owns, and those assigned but not restored yet (shared with the trainer role)."""

    owned: set[TP] = field(default_factory=set)
    pending: set[TP] = field(default_factory=set)

    def assigned(self, partitions: Iterable[TP]) -> None:
        """The group assigned ``partitions`` (called inside a poll; restored after it)."""
        self.pending |= set(partitions)

    def take_pending(self) -> set[TP] | None:
        """The assigned partitions not owned yet, once (``None``: no assignment since the last call)."""
        if not self.pending:
            return None
        new = self.pending - self.owned
        self.pending.clear()
        return new

    def revoked(self, partitions: Iterable[TP]) -> None:
        """``partitions`` are no longer this member's."""
        gone = set(partitions)
        self.owned -= gone
        self.pending -= gone

    def clear(self) -> None:
        """A new session: nothing owned."""
        self.owned.clear()
        self.pending.clear()


class Ownership(Generic[C]):
    """The input partitions this instance owns: restore, release, positions and clocks.

    Parameters
    ----------
    input_topic, state_topic, model_topic
        The topics restore reads and clocks are kept for.
    keeper
        Restores the model (or view) at each assignment.
    metrics
        ``restored_customers`` and ``assigned_partitions``.
    """

    def __init__(
        self, input_topic: str, state_topic: str, model_topic: str, keeper: ModelKeeper[C], metrics: Metrics
    ) -> None:
        self._input = input_topic
        self._state_topic = state_topic
        self._model_topic = model_topic
        self._keeper = keeper
        self._metrics = metrics
        self.assignment = Assignment()
        self.positions: dict[TP, int] = {}
        """The next offset to process of each partition, as of the last commit."""
        self._idle: dict[TP, bool] = {}
        """Input partitions told to the core as idle (True) or active (False) since their restore."""

    def owns(self, tp: TP) -> bool:
        """Whether records of ``tp`` are this instance's to process."""
        return tp in self.assignment.owned

    def clear(self) -> None:
        """A new session: nothing owned, nothing known."""
        self.assignment.clear()
        self.positions.clear()
        self._idle.clear()

    def restore(self, transport: Transport, core: C, partitions: set[TP]) -> None:
        """Load the newest valid model (or view) and the partitions' customers; a bad record never stops it."""
        started = time.perf_counter()
        snapshot = self._keeper.restore(core, transport.read_to_end(self._model_topic, [0]))
        numbers = sorted(tp.partition for tp in partitions)
        try:
            state = transport.read_to_end(self._state_topic, numbers, stable=True)
        except TopicSetupError as exc:
            raise TopicSetupError(f"{exc}, and input partitions {numbers} are assigned: {GREW}") from exc
        loaded = restore_customers(core, state)
        self.assignment.owned |= partitions
        self._drop_foreign_clocks(core)
        for tp in sorted(partitions):
            if tp.topic == self._input:
                self._idle[tp] = False
                core.open_source(tp.partition)
        self._metrics.restored_customers.inc(loaded)
        self._metrics.assigned_partitions.set(len(self.assignment.owned))
        log.info(
            "restored %d customers of partitions %s%s in %.2fs",
            loaded,
            numbers,
            " and the newest model" if snapshot is not None else "",
            time.perf_counter() - started,
        )

    def rewound(self) -> set[TP]:
        """Everything owned, to be restored again into a rebuilt core (ownership starts over)."""
        owned = set(self.assignment.owned)
        self.assignment.owned.clear()
        return owned

    def release(self, core: Core | None, partitions: set[TP]) -> None:
        """Forget the partitions, their positions and clocks, and drop their customers from ``core``."""
        self.assignment.revoked(partitions)
        for tp in partitions:
            self.positions.pop(tp, None)
            self._idle.pop(tp, None)
        numbers = [tp.partition for tp in partitions if tp.topic == self._input]
        dropped = 0
        if core is not None:
            dropped = core.drop_partitions(numbers) if numbers else 0
            self._drop_foreign_clocks(core)
        self._metrics.assigned_partitions.set(len(self.assignment.owned))
        log.info("released partitions %s (%d customers)", sorted(p.partition for p in partitions), dropped)

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """A commit moved the positions to ``offsets``."""
        self.positions.update(offsets)

    def behind(self, transport: Transport, first: InRecord) -> int:
        """Input records behind the end of the owned partitions, with ``first`` the next one of its partition."""
        positions = {tp: offset for tp, offset in self.positions.items() if self.owns(tp)}
        positions[first.tp] = first.offset
        return sum(transport.lag(positions).values())

    def wake(self, core: Core, records: Sequence[InRecord]) -> None:
        """Idle partitions with records in this poll are active again, before their records are processed."""
        if any(self._idle.values()):  # most polls: none is idle, and the records need not be looked at
            self._tell_idle(core, {rec.tp for rec in records if self._idle.get(rec.tp)}, idle=False)

    def mark_idle(self, core: Core, transport: Transport) -> None:
        """Owned input partitions read to their end offset are idle (they no longer hold the watermark)."""
        candidates = [tp for tp, idle in self._idle.items() if not idle and self.owns(tp)]
        if candidates:
            self._tell_idle(core, transport.caught_up(candidates), idle=True)

    def _tell_idle(self, core: Core, partitions: set[TP], *, idle: bool) -> None:
        for tp in sorted(partitions):
            self._idle[tp] = idle
            core.set_idle(tp.partition, idle)
            log.debug("%s[%d] %s", tp.topic, tp.partition, "read to its end: idle" if idle else "active again")

    def _drop_foreign_clocks(self, core: Core) -> None:
        """The watermark is the minimum over the *owned* input partitions only."""
        owned = {tp.partition for tp in self.assignment.owned if tp.topic == self._input}
        core.drop_sources(lambda source: source in owned)
