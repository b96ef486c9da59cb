"""consumer.record_encoding writes the bytes kafka-python's own record builder writes."""

from __future__ import annotations

import random

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder

from consumer.record_encoding import RecordEncoder, varint
from consumer.sink import OutRecord

PREFIX = DefaultRecordBatchBuilder.HEADER_STRUCT.size


def _kafka_python_batches(records: list[OutRecord], batch_size: int) -> list[tuple[bytes, int]]:
    """The unheadered bodies and record counts kafka-python's builders make of ``records`` (one timestamp)."""
    out = []
    builder = MemoryRecordsBuilder(2, 0, batch_size)
    for record in records:
        if builder.append(0, record.key, record.value, list(record.headers)) is None:
            out.append((bytes(builder._builder._buffer), builder.next_offset()))
            builder = MemoryRecordsBuilder(2, 0, batch_size)
            assert builder.append(0, record.key, record.value, list(record.headers)) is not None
    out.append((bytes(builder._builder._buffer), builder.next_offset()))
    return out


def _records(n: int, seed: int = 1) -> list[OutRecord]:
    rnd = random.Random(seed)
    headers = [(), (("kind", b"segment_change"),), (("format", b"segmenter-customer-1"), ("\u00e9t\u00e9", b""))]
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else f"c{rnd.randrange(10**6)}".encode()
        value = None if i % 11 == 5 else bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 60, 300, 9000])))
        out.append(OutRecord("t", key, value, rnd.choice(headers), 0))
    return out


@pytest.mark.parametrize(("n", "batch_size"), [(1, 1 << 20), (50, 1 << 20), (400, 16384), (9000, 1 << 22)])
def test_bodies_are_the_bytes_kafka_pythons_builder_writes(n: int, batch_size: int) -> None:
    records = _records(n)
    ours = RecordEncoder(PREFIX, batch_size).runs(records)
    theirs = _kafka_python_batches(records, batch_size)
    assert [(bytes(run.buffer), run.count) for run in ours] == theirs
    assert sum(run.count for run in ours) == n


def test_a_record_larger_than_the_limit_gets_a_body_of_its_own() -> None:
    records = [OutRecord("t", b"a", b"x" * 10), OutRecord("t", b"b", b"y" * 5000), OutRecord("t", b"c", b"z")]
    ours = RecordEncoder(PREFIX, 1000).runs(records)
    assert [(bytes(run.buffer), run.count) for run in ours] == _kafka_python_batches(records, 1000)
    assert [run.count for run in ours] == [1, 1, 1]
    assert ours[1].max_record_size > 5000


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 8191, 8192, 2**31, -(2**40), 2**62])
def test_varint_is_kafkas_zigzag_varint(value: int) -> None:
    from kafka.record.util import decode_varint, encode_varint  # noqa: PLC0415

    out = bytearray()
    encode_varint(value, out.append)
    assert varint(value) == bytes(out)
    assert decode_varint(varint(value), 0) == (value, len(out))


@pytest.mark.parametrize("slack", [-2, -1, 0, 1, 2])
def test_a_body_closes_at_the_same_record_as_kafka_pythons_batch(slack: int) -> None:
    records = [OutRecord("t", b"key", bytes(40), (("kind", b"k"),), 0) for _ in range(12)]
    size = RecordEncoder(PREFIX, 1 << 20).runs(records[:1])[0].max_record_size
    limit = PREFIX + 5 * size + slack  # five records fit exactly at slack 0
    ours = RecordEncoder(PREFIX, limit).runs(records)
    assert [(bytes(run.buffer), run.count) for run in ours] == _kafka_python_batches(records, limit)
    assert ours[0].count == (4 if slack < 0 else 5)
