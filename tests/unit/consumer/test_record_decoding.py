"""consumer.record_decoding and FastPartitionRecords read what kafka-python's fetcher reads."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from kafka.consumer.fetcher import ConsumerRecord, Fetcher
from kafka.protocol.consumer import IsolationLevel
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

from consumer.kafka_io import FastPartitionRecords, _in_record
from consumer.record_decoding import BatchOf, CorruptRecordError, decode_records
from consumer.sink import InRecord

TP = TopicPartition("events", 2)


def _records(n: int, seed: int) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]]:
    rnd = random.Random(seed)
    headers: list[list[tuple[str, bytes | None]]] = [
        [],
        [("kind", b"segment_change")],
        [("format", b"segmenter-customer-1"), ("\u00e9t\u00e9", None)],
    ]
    out = []
    for i in range(n):
        key = None if i % 7 == 3 else f"c{rnd.randrange(10**6)}".encode()
        value = None if i % 11 == 5 else bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 60, 300, 9000])))
        # timestamps: mostly one per batch (delta 0), some far apart (multi-byte deltas)
        out.append((key, value, rnd.choice(headers), rnd.choice([0, 0, 0, 1, 63, 64, 10**6])))
    return out


def _fetched(batches: list[list[tuple[Any, ...]]], *, base: int = 0, log_append: bool = False,
             compression: int = 0) -> bytes:  # fmt: skip
    """The bytes of a fetch response's records: the batches one after the other, offsets from ``base``."""
    out = b""
    offset = base
    for records in batches:
        builder = MemoryRecordsBuilder(2, compression, 1 << 24, offset=offset)
        for key, value, headers, stamp in records:
            assert builder.append(1_700_000_000_000 + stamp, key, value, headers) is not None
        builder.close()
        batch = bytearray(builder.buffer())
        if log_append:  # the broker's stamp: the batch's attributes say so, its CRC covers them
            at = DefaultRecordBatchBuilder.ATTRIBUTES_OFFSET
            attributes = struct.unpack_from(">h", batch, at)[0] | DefaultRecordBatchBuilder.TIMESTAMP_TYPE_MASK
            struct.pack_into(">h", batch, at, attributes)
            struct.pack_into(">I", batch, DefaultRecordBatchBuilder.CRC_OFFSET, calc_crc32c(memoryview(batch)[at:]))
        out += bytes(batch)
        offset += len(records) + 3  # a gap: offsets need not be consecutive across batches (compaction)
    return out


def _kafka_pythons(data: bytes, fetch_offset: int = 0) -> list[InRecord]:
    part = Fetcher.PartitionRecords(
        fetch_offset, TP, MemoryRecords(data), isolation_level=IsolationLevel.READ_COMMITTED
    )
    records: list[ConsumerRecord] = part.take()
    return [_in_record(r) for r in records]


def _ours(data: bytes, fetch_offset: int = 0) -> tuple[list[InRecord], Any]:
    part = FastPartitionRecords(fetch_offset, TP, MemoryRecords(data), isolation_level=IsolationLevel.READ_COMMITTED)
    return part.take(), part


@pytest.mark.parametrize(("sizes", "seed"), [([1], 1), ([50], 2), ([300, 1, 40], 3), ([2000], 4)])
@pytest.mark.parametrize("log_append", [False, True])
def test_fast_records_are_the_records_kafka_python_reads(sizes: list[int], seed: int, log_append: bool) -> None:
    batches = [_records(n, seed + i) for i, n in enumerate(sizes)]
    data = _fetched(batches, base=1000, log_append=log_append)
    ours, part = _ours(data)
    theirs = _kafka_pythons(data)
    assert ours == theirs
    assert all(type(r) is InRecord for r in ours)
    assert len(ours) == sum(sizes)
    assert part.next_fetch_offset == theirs[-1].offset + 1
    assert part.records_read == len(ours)


def test_fast_records_start_at_the_fetch_offset_inside_a_batch() -> None:
    data = _fetched([_records(20, 5)], base=100)
    ours, _ = _ours(data, fetch_offset=110)
    assert ours == _kafka_pythons(data, fetch_offset=110)
    assert [r.offset for r in ours] == list(range(110, 120))


def test_a_compressed_batch_is_read_by_kafka_pythons_loop() -> None:
    data = _fetched([_records(30, 6)], compression=1)  # gzip
    ours, _ = _ours(data)
    assert ours == _kafka_pythons(data)
    assert all(type(r) is InRecord for r in ours) and len(ours) == 30


@pytest.mark.parametrize("cut", [1, 5, 17])
def test_a_truncated_record_is_corrupt(cut: int) -> None:
    data = _fetched([_records(3, 7)])
    body = data[DefaultRecordBatchBuilder.HEADER_STRUCT.size :]
    with pytest.raises(CorruptRecordError):
        decode_records(body[:-cut], 0, BatchOf("t", 0, 0, 3, 0))


def test_bytes_after_the_last_record_are_corrupt() -> None:
    data = _fetched([_records(3, 8)])
    body = data[DefaultRecordBatchBuilder.HEADER_STRUCT.size :]
    with pytest.raises(CorruptRecordError, match="bytes left after the last record"):
        decode_records(body + b"\x00", 0, BatchOf("t", 0, 0, 3, 0))
    assert len(decode_records(body, 0, BatchOf("t", 0, 0, 3, 0))) == 3


def test_damaged_bodies_read_as_kafka_python_reads_them_or_are_corrupt() -> None:
    """Bytes flipped or cut: the records kafka-python reads, or CorruptRecord where its reading fails."""
    from kafka.errors import CorruptRecordError as KafkaCorruptRecordError  # noqa: PLC0415
    from kafka.record.default_records import DefaultRecordBatch  # noqa: PLC0415

    rnd = random.Random(9)
    records = _records(12, 10)
    data = _fetched([records])
    head = DefaultRecordBatchBuilder.HEADER_STRUCT.size
    agreed = corrupt = 0
    for _ in range(400):
        body = bytearray(data[head:])
        for _ in range(rnd.choice([1, 2, 3])):
            body[rnd.randrange(len(body))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            del body[rnd.randrange(len(body)) :]
        batch = DefaultRecordBatch(bytearray(data[:head]) + body)
        try:
            theirs = [_in_record(ConsumerRecord("t", 0, -1, r.offset, r.timestamp, 0, r.key, r.value, r.headers,
                                                None, 0, 0, 0)) for r in batch]  # fmt: skip
        except (KafkaCorruptRecordError, UnicodeDecodeError):
            theirs = None
        try:
            ours = decode_records(bytes(data[:head]) + bytes(body), head, BatchOf("t", 0, 0, 12, batch.first_timestamp))
        except CorruptRecordError:
            ours = None
        if theirs is None:
            corrupt += 1
            assert ours is None
        else:
            agreed += 1
            assert ours == theirs
    assert agreed > 10 and corrupt > 100  # both outcomes were exercised


def test_use_fast_records_replaces_the_fetchers_record_maker_and_refuses_a_fetcher_without_one() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from consumer.errors import UnsupportedClientError  # noqa: PLC0415
    from consumer.kafka_io import use_fast_records  # noqa: PLC0415

    consumer: Any = SimpleNamespace(_fetcher=SimpleNamespace(PartitionRecords=Fetcher.PartitionRecords))
    use_fast_records(consumer)
    assert consumer._fetcher.PartitionRecords is FastPartitionRecords
    for renamed in (SimpleNamespace(), SimpleNamespace(_fetcher=SimpleNamespace(Records=Fetcher.PartitionRecords))):
        with pytest.raises(UnsupportedClientError, match=r"kafka-python==3\.0\.12"):
            use_fast_records(renamed)


def test_private_hook_check_names_a_missing_fetch_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from consumer.errors import UnsupportedClientError  # noqa: PLC0415
    from consumer.kafka_io import require_private_hooks  # noqa: PLC0415
    from tests.unit.consumer.test_kafka_io import _stub_coordinator  # noqa: PLC0415

    consumer: Any = SimpleNamespace(_coordinator=_stub_coordinator())
    require_private_hooks(consumer)
    monkeypatch.delattr(Fetcher.PartitionRecords, "_contains_abort_marker")
    with pytest.raises(UnsupportedClientError, match=r"Fetcher\.PartitionRecords\._contains_abort_marker"):
        require_private_hooks(consumer)


def _txn_batch(base: int, producer_id: int, records: list[tuple[Any, ...]], *, control: bool = False) -> bytes:
    """A transactional batch of ``producer_id`` at offset ``base`` (``control``: a marker batch)."""
    builder = DefaultRecordBatchBuilder(2, 0, 1, producer_id, 0, 0 if not control else -1, 1 << 20)
    for i, (key, value, headers, stamp) in enumerate(records):
        assert builder.append(i, 1_700_000_000_000 + stamp, key, value, headers) is not None
    batch = bytearray(builder.build())
    struct.pack_into(">q", batch, 0, base)
    if control:
        at = DefaultRecordBatchBuilder.ATTRIBUTES_OFFSET
        attributes = struct.unpack_from(">h", batch, at)[0] | DefaultRecordBatchBuilder.CONTROL_MASK
        struct.pack_into(">h", batch, at, attributes)
        struct.pack_into(">I", batch, DefaultRecordBatchBuilder.CRC_OFFSET, calc_crc32c(memoryview(batch)[at:]))
    return bytes(batch)


def test_an_aborted_transaction_and_the_markers_are_skipped_as_kafka_python_skips_them() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    abort, commit = (struct.pack(">hh", 0, kind) for kind in (0, 1))  # control record keys: version, type
    data = (
        _txn_batch(0, 7, _records(5, 11))  # aborted below
        + _txn_batch(5, 7, [(abort, b"", [], 0)], control=True)
        + _txn_batch(6, 8, _records(4, 12))  # committed
        + _txn_batch(10, 8, [(commit, b"", [], 0)], control=True)
    )
    aborted = [SimpleNamespace(producer_id=7, first_offset=0)]
    parts = [
        cls(0, TP, MemoryRecords(data), isolation_level=IsolationLevel.READ_COMMITTED, aborted_transactions=aborted)
        for cls in (Fetcher.PartitionRecords, FastPartitionRecords)
    ]
    theirs, ours = ([_in_record(r) for r in parts[0].take()], parts[1].take())
    assert ours == theirs
    assert [r.offset for r in ours] == [6, 7, 8, 9]
    assert parts[1].next_fetch_offset == parts[0].next_fetch_offset == 11


@pytest.mark.parametrize("first", [1, 7, 13])
def test_a_partial_take_moves_the_next_fetch_offset_only_past_the_records_taken(first: int) -> None:
    """A poll may take part of a batch: the fetcher moves the consumer's position to the next fetch offset."""
    data = _fetched([_records(10, 13), _records(10, 14)])
    parts = [
        cls(0, TP, MemoryRecords(data), isolation_level=IsolationLevel.READ_COMMITTED)
        for cls in (Fetcher.PartitionRecords, FastPartitionRecords)
    ]
    theirs, ours = [_in_record(r) for r in parts[0].take(first)], parts[1].take(first)
    assert ours == theirs and len(ours) == first
    assert parts[1].next_fetch_offset == parts[0].next_fetch_offset == ours[-1].offset + 1
    rest_theirs, rest_ours = [_in_record(r) for r in parts[0].take()], parts[1].take()
    assert rest_ours == rest_theirs and len(ours) + len(rest_ours) == 20
    assert parts[1].next_fetch_offset == parts[0].next_fetch_offset
