"""Kafka record-batch bodies (magic 2) built a partition's run of records at a time.

kafka-python encodes each record it is given through ``send`` in pure Python,
a varint at a time, and makes a future per record (about 6.5 us a record on
the reference machine). A commit sends its records all at once and needs no
per-record future, so :class:`RecordEncoder` encodes the records of one partition
in one loop, with the varints of small numbers from a table and each distinct
header tuple encoded once (about 0.4 us a record). The bytes are exactly what
kafka-python's ``DefaultRecordBatchBuilder.append`` writes for the same
records, offsets and timestamp (``tests/unit/consumer/test_record_encoding.py``
compares them), so the batch header, CRC and compression stay kafka-python's
(:class:`consumer.kafka_io.Appender` hands the bodies to it).

Layout of one record (Kafka protocol, "Record" of RecordBatch v2)::

    length: varint | attributes: int8 (0) | timestampDelta: varint (0: one timestamp per run)
    | offsetDelta: varint | keyLength: varint | key | valueLength: varint | value
    | headerCount: varint | (keyLength: varint | key (UTF-8) | valueLength: varint | value) *

Varints are zig-zag encoded; a ``None`` key or value is length -1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumer.sink import OutRecord

__all__ = ["EncodedRun", "RecordEncoder", "varint"]

_NULL = b"\x01"
"""Length -1 (zig-zag), a ``None`` key, value or header value."""
_RECORD_START = b"\x00\x00"
"""Attributes 0 and timestamp delta 0."""
_TABLE_SIZE = 1 << 13
"""Varints of 0 .. 8191 come from a table (two bytes at most); larger numbers are encoded on the spot."""
_HEADER_CACHE = 1024
"""Distinct header tuples kept encoded; the cache is cleared when it grows past this."""


def varint(value: int) -> bytes:
    """The zig-zag varint of a signed 64-bit ``value`` (Kafka's, protobuf's ``sint64``)."""
    v = (value << 1) ^ (value >> 63)
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_VARINTS = tuple(varint(n) for n in range(_TABLE_SIZE))


def _v(n: int) -> bytes:
    return _VARINTS[n] if n < _TABLE_SIZE else varint(n)


@dataclass
class EncodedRun:
    """The body of one record batch: ``prefix`` zero bytes (room for the batch header), then the records."""

    buffer: bytearray
    count: int
    max_record_size: int


class _Headers:
    """Encoded header sections (count, then each pair), one per distinct header tuple."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[str, bytes], ...], bytes] = {(): b"\x00"}

    def encoded(self, headers: tuple[tuple[str, bytes], ...]) -> bytes:
        section = self._cache.get(headers)
        if section is None:
            parts = [_v(len(headers))]
            for name, value in headers:
                raw = name.encode("utf-8")
                parts += (_v(len(raw)), raw, _v(len(value)), value)
            section = b"".join(parts)
            if len(self._cache) >= _HEADER_CACHE:
                self._cache.clear()
            self._cache[headers] = section
        return section


class RecordEncoder:
    """Encodes a partition's records into record-batch bodies (see the module docstring).

    Parameters
    ----------
    prefix
        Zero bytes each body starts with: the room of the batch header, which kafka-python writes at drain.
    limit
        The most bytes of one body, ``prefix`` included (the producer's ``batch_size``).
    """

    def __init__(self, prefix: int, limit: int) -> None:
        self._prefix = prefix
        self._limit = limit
        self._headers = _Headers()

    def runs(self, records: Sequence[OutRecord]) -> list[EncodedRun]:
        """Encode one partition's ``records``, in order, into bodies of at most ``limit`` bytes each.

        A record that does not fit starts the next body, as kafka-python's
        builder closes a batch; a record larger than ``limit`` still gets a
        body of its own (the caller sends records that may be too large
        through ``send``, which checks them). Offsets count from 0 in each body.
        """
        return _encode(records, self._prefix, self._limit, self._headers.encoded)


def _encode(
    records: Sequence[OutRecord], prefix: int, limit: int, headers: Callable[[tuple[tuple[str, bytes], ...]], bytes]
) -> list[EncodedRun]:
    runs: list[EncodedRun] = []
    buffer = bytearray(prefix)
    count = largest = 0
    join, table, start = b"".join, _VARINTS, _RECORD_START
    last_headers: tuple[tuple[str, bytes], ...] | None = None
    section = b""
    for record in records:
        key, value, these = record.key, record.value, record.headers
        if these is not last_headers:  # a route's records share one headers tuple: encoded once per run of them
            section, last_headers = headers(these), these
        tail = join((
            _NULL if key is None else _v(len(key)), key or b"",
            _NULL if value is None else _v(len(value)), value or b"",
            section,
        ))  # fmt: skip
        delta = table[count] if count < _TABLE_SIZE else varint(count)
        size = len(start) + len(delta) + len(tail)  # the body: attributes and timestamp delta, offset delta, tail
        length = _v(size)
        size += len(length)
        if count and len(buffer) + size > limit:
            runs.append(EncodedRun(buffer, count, largest))
            buffer, count, largest = bytearray(prefix), 0, 0
            delta = table[0]
            size = len(start) + len(delta) + len(tail)
            length = _v(size)
            size += len(length)
        buffer += length
        buffer += start
        buffer += delta
        buffer += tail
        count += 1
        largest = max(largest, size)
    if count:
        runs.append(EncodedRun(buffer, count, largest))
    return runs
