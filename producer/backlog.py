"""The ``backlog`` orderings: the same events as a multi-partition backlog whose partitions' clocks disagree.

A stream in event-time order, produced to a topic of several partitions with
the default partitioner, gives partitions whose clocks advance together. A
backlog written by a bulk tool (``kcat -P -K`` over a file sorted some other
way, or a job exporting partition by partition) does not: every customer's
events are still in order (one key, one partition), but one partition's clock
is far ahead of another's. Two such orders:

``partitions``
    Every event of partition 0 (Kafka's default partitioner, murmur2 of the
    key), then every event of partition 1, and so on: what producing a
    partition-by-partition export gives. Each partition is in time order; when
    a consumer reads the topic, partition 0 is at the end of the run before
    partition 1 has started.
``blocks``
    Customer histories in blocks: the whole history of the first
    ``block_customers`` customers (in order of first appearance), in time
    order, then the next block, and so on (a file grouped by customer). Each
    customer is in order; each partition's clock runs to the end of the run
    and jumps back at every block.

Both keep every customer's events in their original relative order.

Examples
--------
>>> kafka_partition(b"c0000001", 3) in range(3)
True
>>> order = backlog_order([b"a", b"b", b"a", b"b"], "blocks", partitions=2, block_customers=1)
>>> order
[0, 2, 1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

BacklogOrder = Literal["time", "partitions", "blocks"]
ORDERS: tuple[str, ...] = ("time", "partitions", "blocks")
"""Every order ``segmenter-producer synth --order`` accepts (``time``: the stream as generated)."""

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` (the Java client's ``Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a non-empty ``key`` (``toPositive(murmur2) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def backlog_order(
    keys: Sequence[bytes], order: BacklogOrder, *, partitions: int = 3, block_customers: int = 1000
) -> list[int]:
    """Indices of ``keys`` (a stream in event-time order) in the send order of a backlog.

    Parameters
    ----------
    keys
        Each event's Kafka key (the customer id), in stream order.
    order
        ``time`` (unchanged), ``partitions`` or ``blocks`` (see the module docstring).
    partitions
        Partitions of the topic (``partitions`` order).
    block_customers
        Customers per block (``blocks`` order).

    Raises
    ------
    ValueError
        An unknown order, or a count below 1.
    """
    if partitions < 1 or block_customers < 1:
        raise ValueError(f"partitions and block_customers must be >= 1, got {partitions}, {block_customers}")
    n = len(keys)
    if order == "time":
        return list(range(n))
    if order == "partitions":
        cache: dict[bytes, int] = {}
        part: list[int] = []
        for k in keys:
            p = cache.get(k)
            if p is None:
                p = cache[k] = kafka_partition(k, partitions)
            part.append(p)
        return sorted(range(n), key=part.__getitem__)
    if order == "blocks":
        first: dict[bytes, int] = {}
        for k in keys:
            first.setdefault(k, len(first))
        block = [first[k] // block_customers for k in keys]
        return sorted(range(n), key=block.__getitem__)
    raise ValueError(f"unknown backlog order {order!r}; expected one of {', '.join(ORDERS)}")
