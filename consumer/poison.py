"""Poison isolation: which input records the core failed on, and which partitions replay one record at a time.

After a core failure the service aborts the batch, rebuilds the core and
replays. A failed run of records is replayed one record at a time up to its
last offset, so the failing record is found; a record that fails
``max_retries`` times is *isolated*: the partition is processed one record at
a time up to it and it is dead-lettered with ``processing_failed`` (the
reason names the last exception). Nothing here stops a partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from consumer.dlq import describe_exception
from consumer.errors import CoreBatchError, PoisonRecordError
from consumer.sink import TP

Key = tuple[TP, int]
"""A record: its topic partition and offset."""


@dataclass
class PoisonIsolation:
    """The failures per record (until committed) and the partitions processed one record at a time.

    Parameters
    ----------
    max_retries
        Failures on the same record after which it is isolated.
    """

    max_retries: int
    _failures: dict[Key, tuple[int, str]] = field(default_factory=dict)
    """(failures, the last one described) of each record the core failed on, until it is committed."""
    _poison: set[Key] = field(default_factory=set)
    _one_by_one: dict[TP, int] = field(default_factory=dict)
    """Partition -> the last offset up to which it is processed one record at a time."""

    def failed(self, exc: PoisonRecordError) -> int:
        """The core failed on one record: count it (isolate it at ``max_retries``); returns its failures."""
        tp = TP(exc.topic, exc.partition)
        key = (tp, exc.offset)
        failures = self._failures.get(key, (0, ""))[0] + 1
        self._failures[key] = (failures, describe_exception(exc.cause))
        if failures >= self.max_retries:
            self._poison.add(key)
            self._one_by_one[tp] = exc.offset
        return failures

    def failed_run(self, exc: CoreBatchError) -> None:
        """The core failed somewhere in a run: replay its partitions one record at a time up to its end."""
        for (topic, partition), offset in exc.last_offsets.items():
            tp = TP(topic, partition)
            self._one_by_one[tp] = max(offset, self._one_by_one.get(tp, offset))

    def isolated(self, tp: TP, offset: int) -> bool:
        """Whether the record is to be dead-lettered instead of processed."""
        return (tp, offset) in self._poison

    def reason(self, tp: TP, offset: int) -> str:
        """The dead letter's reason for an isolated record."""
        failures, cause = self._failures.get((tp, offset), (0, "unknown"))
        return f"the core failed {failures} times on this record; last: {cause}"

    def one_by_one_until(self, tp: TP) -> int | None:
        """The offset up to which ``tp`` is processed one record at a time (``None``: batched)."""
        return self._one_by_one.get(tp)

    def passed(self, tp: TP, offset: int) -> bool:
        """Record ``offset`` of ``tp`` was committed on its own; True when that ended the one-by-one stretch."""
        until = self._one_by_one.get(tp)
        if until is None or offset < until:
            return False
        del self._one_by_one[tp]
        return True

    def committed(self, offsets: Mapping[TP, int]) -> None:
        """Forget the failures of records a commit moved past (``offsets``: the next offsets)."""
        for key in [k for k in self._failures if k[1] < offsets.get(k[0], -1)]:
            self._failures.pop(key, None)
            self._poison.discard(key)

    def release(self, partitions: Iterable[TP]) -> None:
        """Partitions revoked: another instance replays them its own way."""
        for tp in partitions:
            self._one_by_one.pop(tp, None)
