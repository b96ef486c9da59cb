"""The records of a Kafka record batch (magic 2) decoded in one pass, as :class:`~consumer.sink.InRecord`.

kafka-python's fetcher reads each record of a fetched batch through a chain of
pure-Python steps: a ``DefaultRecord`` (seven varint calls, after a copy of
the whole batch into a ``bytearray``), a ``ConsumerRecord`` with sizes and
deserializer calls, and then the service's own :class:`InRecord` made from it.
:func:`decode_records` finds every record's fields in one compiled pass over
the batch's bytes (:func:`_layout`: offsets, lengths, deltas) and then makes
the ``InRecord`` of each in a short Python loop (two slices and a tuple).
What it reads is what kafka-python reads
(``tests/unit/consumer/test_record_decoding.py`` compares them over generated
batches, headers and null keys and values included); a record that is not
well formed raises :class:`CorruptRecordError`.
:class:`consumer.kafka_io.FastPartitionRecords` calls it for every
uncompressed, non-control batch.

Layout of one record: see :mod:`consumer.record_encoding`. A null header value
becomes ``b""`` (as :class:`InRecord` holds headers).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numba import njit

from consumer.record_encoding import RecordEncoder
from consumer.sink import InRecord, OutRecord

__all__ = ["BatchOf", "CorruptRecordError", "decode_records", "warm_up"]

_FIELDS = 8
"""Per record, :func:`_layout`'s row: offset delta, timestamp delta, key start, key length (-1: null),
value start, value length (-1: null), header count, headers start."""

_PROBLEMS = (
    "",
    "a varint runs past the end of the batch or is longer than 10 bytes",
    "a record's length does not match the bytes its fields take",
    "a negative number of headers",
    "a negative header key length",
    "a key, value or header runs past the end of the batch",
    "bytes left after the last record",
)
"""Why :func:`_layout` stopped, by its error code (0: it did not)."""


class CorruptRecordError(ValueError):
    """A record of the batch is not well formed (the reason says how)."""


class BatchOf(NamedTuple):
    """What :func:`decode_records` needs to know of a batch besides its bytes (from its header)."""

    topic: str
    partition: int
    base_offset: int
    records: int
    """Records in the batch."""
    first_timestamp: int
    log_append_time: int | None = None
    """The batch's max timestamp when it is log-append time (every record has it); ``None``: create time (each
    record's is ``first_timestamp`` plus its delta)."""


@njit(cache=True)
def _varint(buf: npt.NDArray[np.uint8], pos: int) -> tuple[int, int]:  # pragma: no cover - compiled
    """The zig-zag varint at ``pos`` and the position after it; position -1: it runs past the end or is too long."""
    result = 0
    shift = 0
    end = len(buf)
    while pos < end and shift <= 63:
        b = int(buf[pos])
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
    return 0, -1


@njit(cache=True)
def _bytes_field(buf: npt.NDArray[np.uint8], pos: int) -> tuple[int, int, int]:  # pragma: no cover - compiled
    """A length-prefixed field at ``pos``: (length (-1: null), start, position after it or minus an error code)."""
    size, pos = _varint(buf, pos)
    if pos < 0:
        return 0, 0, -1
    start = pos
    if size > 0:
        pos += size
        if pos > len(buf):
            return 0, 0, -5
    return size, start, pos


@njit(cache=True)
def _skip_headers(buf: npt.NDArray[np.uint8], pos: int, count: int) -> int:  # pragma: no cover - compiled
    """The position after ``count`` headers at ``pos``, or minus an error code."""
    for _ in range(count):
        size, _, pos = _bytes_field(buf, pos)  # the key: a string, never null
        if pos < 0:
            return pos
        if size < 0:
            return -4
        _, _, pos = _bytes_field(buf, pos)  # the value (-1: null)
        if pos < 0:
            return pos
    return pos


@njit(cache=True)
def _record(buf: npt.NDArray[np.uint8], pos: int, row: npt.NDArray[np.int64]) -> int:  # pragma: no cover - compiled
    """Fill ``row`` (:data:`_FIELDS`) with the fields of the record at ``pos``; the position after it, or minus an
    error code."""
    length, pos = _varint(buf, pos)
    if pos < 0:
        return -1
    start = pos
    for field in (-1, 1, 0):  # attributes (unused; kafka-python reads them as a varint too), deltas of time, offset
        value, pos = _varint(buf, pos)
        if pos < 0:
            return -1
        if field >= 0:
            row[field] = value
    for field in (2, 4):  # key, then value
        row[field + 1], row[field], pos = _bytes_field(buf, pos)
        if pos < 0:
            return pos
    headers, pos = _varint(buf, pos)
    if pos < 0 or headers < 0:
        return -1 if pos < 0 else -3
    row[6] = headers
    row[7] = pos
    pos = _skip_headers(buf, pos, headers)
    return -2 if pos >= 0 and pos - start != length else pos


@njit(cache=True)
def _layout(buf: npt.NDArray[np.uint8], pos: int, rows: npt.NDArray[np.int64]) -> tuple[int, int]:  # pragma: no cover
    """Fill ``rows`` (one per record, :data:`_FIELDS` each) from ``pos``; returns (error code, record index)."""
    for i in range(len(rows)):
        pos = _record(buf, pos, rows[i])
        if pos < 0:
            return -pos, i
    if pos != len(buf):
        return 6, len(rows)
    return 0, len(rows)


def decode_records(buf: bytes, pos: int, batch: BatchOf) -> list[InRecord]:
    """The records of ``batch``, whose body starts at ``pos`` in ``buf`` (which ends with the batch).

    Raises
    ------
    CorruptRecordError
        A record's lengths do not add up, a varint runs past the batch, a header count or key length is
        negative, or bytes are left after the last record.
    """
    rows = np.empty((batch.records, _FIELDS), np.int64)
    error, at = _layout(np.frombuffer(buf, np.uint8), pos, rows)
    if error:
        raise CorruptRecordError(f"Found invalid record structure at record {at} of the batch: {_PROBLEMS[error]}")
    topic, partition, base, _, first, stamp = batch
    out: list[InRecord] = []
    append = out.append
    new = tuple.__new__
    for offset_delta, delta, ks, kn, vs, vn, headers, hs in rows.tolist():
        append(new(InRecord, (
            topic, partition, base + offset_delta,
            None if kn < 0 else buf[ks : ks + kn], None if vn < 0 else buf[vs : vs + vn],
            _headers(buf, hs, headers) if headers else (),
            first + delta if stamp is None else stamp,
        )))  # fmt: skip
    return out


def _headers(buf: bytes, pos: int, count: int) -> tuple[tuple[str, bytes], ...]:
    """``count`` headers at ``pos`` (well formed: :func:`_layout` checked them; a null value as ``b""``)."""
    headers = []
    for _ in range(count):
        size, pos = _py_varint(buf, pos)
        try:
            name = buf[pos : pos + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptRecordError(f"Found invalid record structure: a header key is not UTF-8: {exc}") from None
        pos += size
        size, pos = _py_varint(buf, pos)
        value = b""
        if size >= 0:
            value = buf[pos : pos + size]
            pos += size
        headers.append((name, value))
    return tuple(headers)


def _py_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` (known to be well formed) and the position after it."""
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def warm_up() -> None:
    """Compile (or load from numba's cache) :func:`_layout` now, not in the first poll with records."""
    (run,) = RecordEncoder(0, 1 << 10).runs([OutRecord("t", b"k", b"v", (("h", b"x"),))])
    (record,) = decode_records(bytes(run.buffer), 0, BatchOf("t", 0, 0, 1, 0))
    assert record.value == b"v" and record.headers == (("h", b"x"),), "the decoder reads what the encoder wrote"
