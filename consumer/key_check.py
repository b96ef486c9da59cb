"""Input records whose Kafka key is not their event's ``customer_id``: counted, and a warning per partition.

The contract keys the input by customer id: one customer's events then share a
partition, Kafka keeps them in order, and lateness is judged against the
customer's own history. A producer that sends null keys (kafka-python's and
many clients' default) or keys by something else spreads a customer over
partitions; the events still count, but a consumer that reads one partition
ahead of another can then see a customer's later event first and refuse the
earlier one as ``late``, and the partition-wise state no longer holds all of a
customer across a rebalance. Nothing is refused for its key: a single-partition
topic works either way. :class:`KeyCheck` makes it visible instead: the
``segmenter_key_mismatches_total`` counter, and one WARNING per partition and
process naming the first such record.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from consumer.sink import TP, InRecord

__all__ = ["KeyCheck"]

log = logging.getLogger(__name__)


class KeyCheck:
    """Counts records keyed other than by their customer id; warns once per partition."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._warned: set[TP] = set()

    def check(self, rec: InRecord, customer_id: str) -> None:
        """Note ``rec`` if its key is not ``customer_id`` (UTF-8)."""
        if rec.key is not None and rec.key == customer_id.encode():
            return
        self._counter.inc()
        tp = rec.tp
        if tp in self._warned:
            return
        self._warned.add(tp)
        key = "null" if rec.key is None else repr(rec.key[:60])
        log.warning(
            "%s[%d]@%d: the record's key is %s, not its customer_id %r (counted in segmenter_key_mismatches_total; "
            "no further warning for this partition): a customer keyed so can be spread over partitions and its "
            "events refused as late when one partition is read ahead of another; key the input by customer_id",
            rec.topic, rec.partition, rec.offset, key, customer_id[:60],
        )  # fmt: skip
