"""The only module of the consumer that imports ``kafka`` (kafka-python 3.0.12).

It wraps the group consumer, the (transactional) producer, a restore consumer
and the admin client behind :class:`~consumer.sink.Transport` and
:class:`~consumer.topics.Admin`, and translates kafka-python's exceptions into
:mod:`consumer.errors` at the edge (:func:`translate_errors`), the way httpx
maps httpcore's exceptions: callers never see a ``kafka.errors`` class.

Threading: kafka-python 3 drives the group protocol on its own IO thread, and
rebalance listeners run there while the caller's :meth:`KafkaTransport.poll`
is blocked waiting for it. The listener therefore hands the events to the
:class:`~consumer.sink.RebalanceHandler` synchronously (the processing loop is
parked in ``poll``, so nothing races) and the handler must not call blocking
*consumer* APIs; producer calls are fine (the producer has its own sender
thread).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import kafka
import kafka.errors as ke
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition, codec
from kafka.consumer.fetcher import Fetcher
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.base import MemberState
from kafka.partitioner.default import murmur2
from kafka.producer.future import FutureRecordMetadata
from kafka.producer.producer_batch import ProducerBatch
from kafka.protocol.consumer import IsolationLevel
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecordsBuilder

from consumer.delivery import DeliveryTracker
from consumer.errors import (
    AuthenticationError,
    BrokerUnavailableError,
    FencedError,
    KafkaIOError,
    TopicSetupError,
    TransactionError,
    UnsupportedClientError,
)
from consumer.record_decoding import BatchOf, CorruptRecordError, decode_records, warm_up
from consumer.record_encoding import EncodedRun, RecordEncoder
from consumer.settings import Settings
from consumer.sink import TP, InRecord, OutRecord, RebalanceHandler, missing_partitions
from consumer.topics import MODEL_MAX_BYTES, TopicSpec
from segmenter.connection import error_text, login_failure, unreachable

log = logging.getLogger(__name__)

PINNED_KAFKA_PYTHON = "3.0.12"
"""The kafka-python version pyproject.toml pins; this module uses its private hooks (:func:`require_private_hooks`)."""

_FENCED = (
    ke.ProducerFencedError,
    ke.InvalidProducerEpochError,
    ke.TransactionalIdAuthorizationFailedError,
    ke.TransactionCoordinatorFencedError,
    ke.FencedInstanceIdError,
)
_UNAVAILABLE = (
    ke.KafkaConnectionError,
    ke.KafkaTimeoutError,
    ke.NodeNotReadyError,
    ke.RequestTimedOutError,
    ke.BrokerNotAvailableError,
    ke.CoordinatorNotAvailableError,
    ke.NotCoordinatorError,
    ke.LeaderNotAvailableError,
    ke.NotLeaderForPartitionError,
    ke.NetworkExceptionError,
)
_SETUP = (
    ke.TopicAuthorizationFailedError,
    ke.ClusterAuthorizationFailedError,
    ke.PolicyViolationError,
    ke.InvalidReplicationFactorError,
    ke.InvalidPartitionsError,
    ke.InvalidConfigurationError,
)
_TXN = (
    ke.CommitFailedError,
    ke.IllegalGenerationError,
    ke.UnknownMemberIdError,
    ke.RebalanceInProgressError,
    ke.TransactionAbortedError,
    ke.InvalidTxnStateError,
    ke.IllegalStateError,
    ke.OutOfOrderSequenceNumberError,
    ke.UnknownProducerIdError,
    ke.MessageSizeTooLargeError,
    ke.RecordListTooLargeError,
)


def _is_fenced(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, _FENCED) or "fenced" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextmanager
def translate_errors(operation: str, *, transactional: bool = False) -> Iterator[None]:
    """Turn kafka-python exceptions raised inside the block into :mod:`consumer.errors`.

    Parameters
    ----------
    operation
        What was being done, for the message ("commit transaction").
    transactional
        Errors inside a transaction become :class:`TransactionError` unless they are
        more specific (fenced, broker unavailable).
    """
    try:
        yield
    except ke.UnsupportedCodecError as exc:  # checked at start-up (require_codecs): a codec newer than the client
        raise UnsupportedClientError(
            f"{operation} failed: {exc}; the records cannot be read with kafka-python {kafka.__version__}: install "
            "the service's dependencies (pip install -e .), or a client that reads this codec"
        ) from exc
    except ke.KafkaError as exc:
        raise _translated(exc, operation, transactional=transactional) from exc


def _translated(exc: ke.KafkaError, operation: str, *, transactional: bool) -> KafkaIOError:
    """The :mod:`consumer.errors` exception for a kafka-python error (see :func:`translate_errors`)."""
    message = f"{operation} failed: {error_text(exc)}"
    if _is_fenced(exc):
        return FencedError(message)
    if isinstance(exc, _SETUP):
        return TopicSetupError(message)
    if isinstance(exc, _UNAVAILABLE):
        return BrokerUnavailableError(message)
    if transactional or isinstance(exc, _TXN):
        return TransactionError(message)
    return KafkaIOError(message)


def _in_record(r: Any, make: Callable[[Iterable[Any]], InRecord] = InRecord._make) -> InRecord:
    """A kafka-python ``ConsumerRecord`` as an :class:`InRecord` (null header values become ``b""``)."""
    headers = r.headers
    return make(
        (
            r.topic,
            r.partition,
            r.offset,
            r.key,
            r.value,
            tuple((k, v if v is not None else b"") for k, v in headers) if headers else (),
            r.timestamp or 0,
        )
    )


class FastPartitionRecords(Fetcher.PartitionRecords):  # type: ignore[misc]
    """kafka-python 3.0.12's fetched records of a partition, as :class:`InRecord`, each batch decoded in one loop.

    ``_unpack_records`` is kafka-python's own (the batch CRC check, the aborted transactions of a
    ``read_committed`` read, control batches skipped, the next fetch offset after the last batch) with
    its per-record loop replaced: an uncompressed v2 batch's records come from
    :func:`consumer.record_decoding.decode_records` (the same records, about a third of the CPU); any
    other batch's records are kafka-python's, made :class:`InRecord` by :func:`_in_record`. The fetcher
    makes one per fetched partition (:func:`use_fast_records`); kafka-python reads only ``offset`` of
    what it yields. The consumer has no deserializers.
    """

    def _unpack_records(self, tp: TopicPartition, records: Any, key_deserializer: Any,
                        value_deserializer: Any) -> Iterator[InRecord]:  # fmt: skip
        try:
            batch = records.next_batch()
            last_batch = None
            while batch is not None:
                last_batch = batch
                if self.check_crcs and not batch.validate_crc():
                    raise ke.CorruptRecordError(f"Record batch for partition {self.topic_partition} at offset "
                                                f"{batch.base_offset} failed crc check")  # fmt: skip
                if batch.magic == 2 and self._skipped(batch):
                    self.next_fetch_offset = batch.next_offset
                    batch = records.next_batch()
                    continue
                for record in self._records_of(tp, batch):
                    # as kafka-python's: past each record as it is taken (a poll may take part of a batch; the
                    # fetcher moves the consumer's position to this offset)
                    self.next_fetch_offset = record.offset + 1
                    yield record
                batch = records.next_batch()
            if last_batch is not None and last_batch.magic == 2:
                self.next_fetch_offset = last_batch.next_offset
            self.drain()
        except StopIteration:  # as kafka-python's: a StopIteration inside a generator would end it silently
            log.exception("StopIteration raised unpacking messageset")
            raise RuntimeError("StopIteration raised unpacking messageset") from None

    def _skipped(self, batch: Any) -> bool:
        """Whether a v2 batch yields nothing: a control batch, or one of an aborted transaction (``read_committed``)."""
        self.leader_epoch = batch.leader_epoch
        if self.isolation_level == _READ_COMMITTED and batch.has_producer_id():
            self._consume_aborted_transactions_up_to(batch.last_offset)
            if self._contains_abort_marker(batch):
                self.aborted_producer_ids.discard(batch.producer_id)
            elif self._is_batch_aborted(batch):
                return True
        return bool(batch.is_control_batch)

    def _records_of(self, tp: TopicPartition, batch: Any) -> list[InRecord]:
        """The records of one batch (the counters moved past them)."""
        if type(batch) is DefaultRecordBatch and batch.compression_type == batch.CODEC_NONE:
            buf = bytes(batch._buffer)
            stamp = batch.max_timestamp if batch.timestamp_type == batch.LOG_APPEND_TIME else None
            of = BatchOf(tp.topic, tp.partition, batch.base_offset, batch.records_count, batch.first_timestamp, stamp)
            try:
                out = decode_records(buf, batch.HEADER_STRUCT.size, of)
            except CorruptRecordError as exc:
                raise ke.CorruptRecordError(str(exc)) from None
            self.bytes_read += len(buf) - batch.HEADER_STRUCT.size
        else:
            out = []
            for record in batch:
                out.append(_in_record(_Consumed(tp.topic, tp.partition, record)))
                self.bytes_read += record.size_in_bytes
        self.records_read += len(out)
        return out


class _Consumed:
    """A batch's record with its topic and partition, as :func:`_in_record` reads a ``ConsumerRecord``."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "topic", "value")

    def __init__(self, topic: str, partition: int, record: Any) -> None:
        self.topic, self.partition, self.offset = topic, partition, record.offset
        self.key, self.value, self.headers, self.timestamp = record.key, record.value, record.headers, record.timestamp


_READ_COMMITTED = IsolationLevel.READ_COMMITTED


def use_fast_records(consumer: KafkaConsumer) -> None:
    """Make ``consumer``'s fetcher return :class:`InRecord` through :class:`FastPartitionRecords`.

    Raises
    ------
    UnsupportedClientError
        The consumer's fetcher does not make its records with ``Fetcher.PartitionRecords``.
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    if getattr(fetcher, "PartitionRecords", None) is not Fetcher.PartitionRecords:
        raise UnsupportedClientError(
            f"kafka-python {kafka.__version__} has no KafkaConsumer._fetcher.PartitionRecords, which "
            f"consumer.kafka_io.use_fast_records replaces; install the pinned version (pip install "
            f"'kafka-python=={PINNED_KAFKA_PYTHON}'), or port consumer.kafka_io to the installed one"
        )
    warm_up()
    fetcher.PartitionRecords = FastPartitionRecords


class KeyPartitioner:
    """kafka-python's default partitioner for keyed records, computed once per key instead of on every send.

    The default partitioner sends a keyed record to ``murmur2(key) & 0x7fffffff``
    modulo the topic's partition count (Kafka's Java client does the same), in
    pure Python on every ``send``. This gives the same partition from a cache.
    The partition count is re-read from the producer's metadata every
    ``refresh_s`` seconds; when it changes the cache starts afresh, as the default
    partitioner would follow the new count.

    Parameters
    ----------
    partitions_for
        Returns the partitions of a topic (``KafkaProducer.partitions_for``).
    refresh_s
        How long a topic's partition count is trusted.
    max_keys
        Cached keys per topic; the cache is cleared when it grows past this.
    """

    def __init__(
        self, partitions_for: Callable[[str], Iterable[int] | None], refresh_s: float = 30.0, max_keys: int = 200_000
    ) -> None:
        self._partitions_for = partitions_for
        self._refresh_s = refresh_s
        self._max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}
        self._cache: dict[str, dict[bytes, int]] = {}

    def partition(self, topic: str, key: bytes) -> int:
        """The partition the default partitioner would choose for ``key`` on ``topic``."""
        entry = self._counts.get(topic)
        now = time.monotonic()
        if entry is None or now >= entry[1]:
            count = len(set(self._partitions_for(topic) or ()))
            if count < 1:
                raise ke.UnknownTopicOrPartitionError(f"no partitions known for topic {topic}")
            if entry is None or entry[0] != count:
                self._cache[topic] = {}
            entry = (count, now + self._refresh_s)
            self._counts[topic] = entry
        count = entry[0]
        if count == 1:
            return 0
        cache = self._cache[topic]
        partition = cache.get(key)
        if partition is None:
            if len(cache) >= self._max_keys:
                cache.clear()
            partition = cache[key] = (murmur2(key) & 0x7FFFFFFF) % count
        return partition


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, handler: RebalanceHandler, consumer: KafkaConsumer) -> None:
        self._handler = handler
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        _hold_rejoin(self._consumer)
        self._handler.on_revoked({TP(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._handler.on_assigned({TP(tp.topic, tp.partition) for tp in assigned})

    def on_partitions_lost(self, lost: Iterable[TopicPartition]) -> None:
        self._handler.on_lost({TP(tp.topic, tp.partition) for tp in lost})


def _hold_rejoin(consumer: KafkaConsumer) -> None:
    """Keep the coordinator's ``rejoin_needed`` set until the rebalance that is starting completes.

    kafka-python 3.0.12 starts a rebalance when the subscribed topics' metadata changed (a topic
    created after the consumer subscribed, partitions added) without setting that flag: the rebalance
    is wanted only while the assignment snapshot differs from the metadata snapshot, and the leader
    overwrites the assignment snapshot when it computes the assignment. If ``poll`` times out between
    that and the SyncGroup response, every later ``poll`` sees no rebalance wanted, never awaits the
    JoinGroup/SyncGroup task again, and the new assignment is never applied: the consumer stays in the
    group owning nothing, for good (seen in CI; ``test_subscribe_survives_a_rebalance_cut_by_poll_timeouts``
    reproduces it every time). The Java client keeps the flag set for the whole rebalance; so does this.

    The rebalance listener's revocation callback runs once at the start of every eager rebalance,
    before the JoinGroup, which is where the flag is raised; the coordinator lowers it when the
    rebalance completes. (The group consumer uses kafka-python's default assignors, range and
    round-robin, which are eager. Its other revocation callback, on close, makes the flag moot.)
    """
    consumer._coordinator.request_rejoin()  # present: require_private_hooks checked it at start-up


def require_private_hooks(consumer: object, producer: object | None = None) -> None:
    """Fail at start-up, loudly, when kafka-python lacks a private hook the service relies on.

    :func:`_hold_rejoin` calls ``consumer._coordinator.request_rejoin()``,
    :func:`_apply_finished_joins` wraps the coordinator's join loop,
    :class:`FastPartitionRecords` replaces the fetcher's per-record loop and
    :class:`Appender` uses the producer's accumulator, transaction manager,
    cluster metadata and sender; none of it is public API: a kafka-python
    release that renames them would otherwise break rebalances or sends at run
    time (or, with a silent fallback, bring back the stuck consumer the
    workaround prevents).

    Raises
    ------
    UnsupportedClientError
        A hook is missing: install the kafka-python version pyproject.toml pins.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    missing = [
        f"KafkaConsumer._coordinator.{name}{'()' if call else ''} (consumer.kafka_io.{user})"
        for name, call, user in _COORDINATOR_HOOKS
        if not (callable(getattr(coordinator, name, None)) if call else hasattr(coordinator, name))
    ]
    missing += [
        f"Fetcher.PartitionRecords.{name} (consumer.kafka_io.FastPartitionRecords)"
        for name in _FETCH_HOOKS
        if not hasattr(Fetcher.PartitionRecords, name)
    ]
    if producer is not None:
        missing += [
            f"KafkaProducer.{owner}.{name}() (consumer.kafka_io.Appender)"
            for owner, name in _PRODUCER_HOOKS
            if not callable(getattr(getattr(producer, owner, None), name, None))
        ]
        accumulator = getattr(producer, "_accumulator", None)
        missing += [
            f"KafkaProducer._accumulator.{name} (consumer.kafka_io.Appender)"
            for name in _ACCUMULATOR_FIELDS
            if not hasattr(accumulator, name)
        ]
        missing += _builder_gaps()
    if missing:
        raise UnsupportedClientError(
            f"kafka-python {kafka.__version__} has no {', no '.join(missing)}, which the service needs; install the "
            f"pinned version (pip install 'kafka-python=={PINNED_KAFKA_PYTHON}'), or port consumer.kafka_io to the "
            f"installed one"
        )


_CODECS = (("lz4", "has_lz4", "lz4"), ("zstd", "has_zstd", "zstandard"), ("snappy", "has_snappy", "python-snappy"))
"""The compression codecs of Kafka record batches that need a package (gzip needs none): codec, kafka-python's
check (in ``kafka.codec``), package."""


def require_codecs() -> None:
    """Fail at start-up, loudly, when kafka-python cannot decompress a codec a topic may hold.

    A batch's codec is its producer's choice (or the broker's, with a topic's ``compression.type``):
    kafka-python reads lz4, zstd and snappy batches only with their packages installed, and
    without one the first such batch fails every poll, so nothing of the partition is ever read.

    Raises
    ------
    UnsupportedClientError
        A codec's package is missing: install the dependencies pyproject.toml lists.
    """
    missing = [f"{name} (pip install {package})" for name, check, package in _CODECS if not getattr(codec, check)()]
    if missing:
        raise UnsupportedClientError(
            f"kafka-python cannot decompress {', '.join(missing)}: a batch compressed so would stop its partition; "
            "install the service's dependencies (pip install -e .)"
        )


_COORDINATOR_HOOKS = (
    ("request_rejoin", True, "_hold_rejoin"),
    ("join_group_async", True, "_apply_finished_joins"),
    ("_on_join_complete_async", True, "_apply_finished_joins"),
    ("_enable_heartbeat", True, "_apply_finished_joins"),
    ("_join_task", False, "_apply_finished_joins"),
    ("_lock", False, "_apply_finished_joins"),
    ("_generation", False, "_apply_finished_joins"),
    ("rejoining", False, "_apply_finished_joins"),
)
"""The private parts of the consumer's coordinator the rebalance workarounds use, as (name, callable, user)."""

_PRODUCER_HOOKS = (
    ("_accumulator", "_tp_lock"),
    ("_transaction_manager", "maybe_add_partition_to_transaction"),
    ("_transaction_manager", "send_offsets_to_transaction"),
    ("_transaction_manager", "begin_commit"),
    ("_transaction_manager", "begin_abort"),
    ("_metadata", "partitions_for_topic"),
    ("_sender", "wakeup"),
    ("_sender", "is_alive"),
)
"""The private parts of ``KafkaProducer`` that :class:`Appender` calls, as (attribute, method)."""

_FETCH_HOOKS = (
    "_unpack_records",
    "_consume_aborted_transactions_up_to",
    "_contains_abort_marker",
    "_is_batch_aborted",
    "drain",
)
"""The methods of kafka-python's ``Fetcher.PartitionRecords`` that :class:`FastPartitionRecords` overrides or calls."""

_ACCUMULATOR_FIELDS = ("_batches", "_incomplete", "_appends_in_progress", "_closed", "config")
"""The accumulator's queues, in-flight set, append counter, closed flag and config, which :class:`Appender` uses."""
_BUILDER_SLOTS = ("_buffer", "_first_timestamp", "_max_timestamp", "_last_offset", "_num_records")
"""The fields of kafka-python's ``DefaultRecordBatchBuilder`` that :meth:`Appender._batch` fills."""


def _builder_gaps() -> list[str]:
    """What :meth:`Appender._batch` needs of kafka-python's record builders and lacks; checks the encoding too.

    Two records encoded by :class:`consumer.record_encoding.RecordEncoder` must be the bytes kafka-python's
    builder writes for them (a release that changed the record format would otherwise be sent corrupt batches).
    """
    gaps = [
        f"DefaultRecordBatchBuilder.{name}"
        for name in _BUILDER_SLOTS
        if name not in getattr(DefaultRecordBatchBuilder, "__slots__", ())
    ]
    if not {"_builder", "_next_offset"} <= set(getattr(MemoryRecordsBuilder, "__slots__", ())):
        gaps.append("MemoryRecordsBuilder._builder, ._next_offset")
    if gaps:
        return [f"{gap} (consumer.kafka_io.Appender)" for gap in gaps]
    probe = [OutRecord("t", b"k", b"v", (("h", b"x"),)), OutRecord("t", None, None)]
    reference = DefaultRecordBatchBuilder(2, 0, False, -1, -1, -1, 1 << 20)
    for offset, record in enumerate(probe):
        reference.append(offset, 0, record.key, record.value, list(record.headers))
    ours = RecordEncoder(DefaultRecordBatchBuilder.HEADER_STRUCT.size, 1 << 20).runs(probe)
    if len(ours) != 1 or bytes(ours[0].buffer) != bytes(reference._buffer):
        return ["the record encoding of kafka-python 3.0.12 (consumer.record_encoding)"]
    return []


DELIVERY_TIMEOUT_MS = 30_000
"""The producer's ``delivery_timeout_ms``: a record not acknowledged by then fails (expires), and so does its batch."""

TRANSACTION_WAIT_S = 60.0
"""How long a transactional result may take (twice the producer's delivery timeout) before the commit fails."""

_RECORD_BOUND = 128
"""More than a record's framing (varints, attributes, a batch header) adds to its key, value and headers."""


class Appender:
    """Appends a commit's records to a ``KafkaProducer``'s accumulator as whole record batches, in bulk.

    kafka-python's ``send`` re-checks per record what holds for a whole run of
    sends (the headers' types, the topic's metadata, the partition's place in
    the transaction, the exact record size), encodes the record in pure Python
    and makes a future for it. This checks a partition once per transaction
    (:meth:`begin`), bounds the size from the lengths, groups the run's records
    by partition (their order within a partition kept), encodes each
    partition's records in one loop (:class:`consumer.record_encoding.RecordEncoder`,
    the bytes kafka-python's builder writes), and puts the batches on the
    accumulator's queues as kafka-python's ``append`` would, one future per
    batch; the sender thread is woken once, at the end (a batch's sends happen
    at its commit, which flushes anyway). kafka-python still writes each batch's
    header, producer id, sequence and CRC when it drains it. A record it cannot
    vouch for (possibly too large, keyless without a partition, a partition the
    metadata does not know) goes through ``send``, with its checks and its
    errors, after the records before it. kafka-python 3.0.12 internals, checked
    at start-up by :func:`require_private_hooks`.

    Parameters
    ----------
    producer
        The producer (transactional or not).
    partitioner
        Where keyed records without a partition go.
    transactional
        Whether each new partition must join the open transaction.
    """

    def __init__(self, producer: KafkaProducer, partitioner: KeyPartitioner, *, transactional: bool) -> None:
        self._producer = producer
        self._accumulator = producer._accumulator
        self._join = producer._transaction_manager.maybe_add_partition_to_transaction if transactional else None
        self._partitions_for = producer._metadata.partitions_for_topic
        self._partitioner = partitioner
        self._limit = producer.config["max_request_size"] - _RECORD_BOUND
        acc_config = self._accumulator.config
        if acc_config["message_version"] != 2:
            raise UnsupportedClientError(
                f"the brokers at {producer.config['bootstrap_servers']} take record "
                f"format v{acc_config['message_version']}; the service needs v2 (Kafka 0.11+)"
            )
        self._batch_size = acc_config["batch_size"]
        self._compression = acc_config["compression_attrs"]
        self._encoder = RecordEncoder(DefaultRecordBatchBuilder.HEADER_STRUCT.size, self._batch_size)
        self._checked: dict[tuple[str, int], TopicPartition] = {}

    def begin(self) -> None:
        """A new transaction: every partition joins it again at its first record."""
        self._checked.clear()

    def append_all(self, records: Iterable[OutRecord]) -> list[Any]:
        """Append ``records`` (each partition's in order); returns their delivery futures (one per batch or send)."""
        futures: list[Any] = []
        runs: dict[TopicPartition, list[OutRecord]] = {}
        for record in records:
            tp = self._target(record)
            if tp is not None:
                run = runs.get(tp)
                if run is None:
                    runs[tp] = [record]
                else:
                    run.append(record)
                continue
            self._enqueue(runs, futures)  # what came before it goes first
            runs = {}
            futures.append(
                self._producer.send(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    partition=record.partition,
                )
            )
        if runs:
            self._enqueue(runs, futures)
            self._producer._sender.wakeup()
        return futures

    def _enqueue(self, runs: Mapping[TopicPartition, list[OutRecord]], futures: list[Any]) -> None:
        """Encode each partition's run into batches and put them on its queue, as the accumulator's ``append`` would."""
        now, stamp = time.monotonic(), int(time.time() * 1000)
        accumulator = self._accumulator
        for tp, run in runs.items():
            batches = [self._batch(tp, encoded, stamp, now) for encoded in self._encoder.runs(run)]
            accumulator._appends_in_progress.increment()
            try:
                with accumulator._tp_lock(tp):
                    if accumulator._closed:
                        raise ke.IllegalStateError("RecordAccumulator is closed")
                    queue = accumulator._batches[tp]
                    for batch in batches:
                        queue.append(batch)
                        accumulator._incomplete.add(batch)
            finally:
                accumulator._appends_in_progress.decrement()
            futures += (batch._record_futures[0] for batch in batches)

    def _batch(self, tp: TopicPartition, encoded: EncodedRun, stamp: int, now: float) -> ProducerBatch:
        """A ``ProducerBatch`` holding ``encoded``, as if its records had been appended one by one at ``stamp``."""
        records = MemoryRecordsBuilder(2, self._compression, self._batch_size)
        builder = records._builder
        builder._buffer = encoded.buffer
        builder._first_timestamp = builder._max_timestamp = stamp
        builder._last_offset = encoded.count - 1
        builder._num_records = encoded.count
        records._next_offset = encoded.count
        batch = ProducerBatch(tp, records, now=now)
        batch.max_record_size = encoded.max_record_size
        # one future for the batch: it fails with the batch (kafka-python fails a batch's records together)
        batch._record_futures.append(
            FutureRecordMetadata(batch.produce_future, encoded.count - 1, stamp, None, -1, -1, -1)
        )
        return batch

    def _target(self, record: OutRecord) -> TopicPartition | None:
        """The record's checked partition, or ``None`` when ``send`` must take it."""
        key, value, partition = record.key, record.value, record.partition
        size = (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
        for name, data in record.headers:
            size += 4 * len(name) + len(data) + 10
        if size > self._limit or (key is None and (value is None or partition is None)):
            return None
        if partition is None:
            partition = self._partitioner.partition(record.topic, key)  # type: ignore[arg-type]  # checked above
        tp = self._checked.get((record.topic, partition))
        if tp is None:
            known = self._partitions_for(record.topic)
            if known is None or partition not in known:
                return None
            tp = self._checked[(record.topic, partition)] = TopicPartition(record.topic, partition)
            if self._join is not None:
                self._join(tp)
        return tp


def subscribe(consumer: KafkaConsumer, topics: Sequence[str], handler: RebalanceHandler) -> None:
    """Subscribe ``consumer`` to ``topics``, telling ``handler`` about assignments and revocations."""
    _apply_finished_joins(consumer)
    consumer.subscribe(list(topics), listener=_Listener(handler, consumer))


def _apply_finished_joins(consumer: KafkaConsumer) -> None:
    """Make the coordinator apply a JoinGroup/SyncGroup that finished between two polls, not start another.

    kafka-python 3.0.12 runs the join as a task on its IO thread. A ``poll`` whose timeout ends first
    leaves the task running; if it finishes before the next ``poll``, that poll finds the task done and
    sends a new JoinGroup instead of applying the assignment the task got. A follower is given the same
    generation again, but a leader's JoinGroup starts a new rebalance, whose join can again finish
    between two polls: the group rebalances over and over and the leader never owns anything (seen in
    CI with two members polling in turn; ``test_a_join_that_finishes_between_polls_is_applied``
    reproduces it every time). Before the coordinator's join loop runs, this applies a join task that
    succeeded, exactly as the loop applies one it awaited (and as the Java client does with its pending
    join future); anything else goes to the loop unchanged.
    """
    coordinator = consumer._coordinator  # present: require_private_hooks checked it at start-up
    join_group = coordinator.join_group_async

    async def join_group_async(timeout_ms: float | None = None) -> bool:
        task = coordinator._join_task
        if task is None or not task.succeeded():
            return bool(await join_group(timeout_ms))
        coordinator._join_task = None
        with coordinator._lock:
            coordinator.rejoining = False
            coordinator.rejoin_needed = False
            coordinator.state = MemberState.STABLE
            coordinator._enable_heartbeat()
        generation = coordinator._generation
        await coordinator._on_join_complete_async(
            generation.generation_id, generation.member_id, generation.protocol, task.value
        )
        return True

    coordinator.join_group_async = join_group_async


def _common(settings: Settings) -> dict[str, Any]:
    """The options every client gets: servers, TLS and SASL (``ConnectionSettings.kafka_options``)."""
    return {**settings.kafka_options(), "bootstrap_timeout_ms": 10_000, "reconnect_backoff_max_ms": 2000}


def _client(settings: Settings, operation: str, make: Callable[[], Any]) -> Any:
    """``make()`` a kafka-python client; a bootstrap failure that TLS or the SASL login explains is terminal.

    Raises
    ------
    AuthenticationError
        The broker is reachable but the TLS handshake or the login failed (see
        :func:`~segmenter.connection.login_failure`): retrying cannot help.
    BrokerUnavailableError
        No bootstrap server accepts a TCP connection: the message names each one's answer and what to check
        (:func:`~segmenter.connection.unreachable`); the service retries.
    KafkaIOError
        Anything else, translated as by :func:`translate_errors`.
    """
    try:
        with translate_errors(operation):
            return make()
    except BrokerUnavailableError as exc:
        why = unreachable(settings, socket.create_connection)
        if why is not None:  # kafka-python's "Unable to bootstrap", with the reason and what to check
            raise BrokerUnavailableError(f"{operation} failed: {why}") from exc
        reason = login_failure(settings, socket.create_connection)
        if reason is None:
            raise
        raise AuthenticationError(f"{operation} failed: {reason}") from exc


class KafkaAdmin:
    """:class:`~consumer.topics.Admin` over ``KafkaAdminClient``: the first client of every session.

    Raises
    ------
    BrokerUnavailableError
        No bootstrap server accepts a TCP connection (checked first, in milliseconds, so an outage neither
        blocks for kafka-python's bootstrap timeout, which a stop cannot interrupt, nor logs its attempts).
    """

    def __init__(self, settings: Settings) -> None:
        operation = f"connect admin client to {settings.bootstrap_servers}"
        why = unreachable(settings, socket.create_connection)
        if why is not None:
            raise BrokerUnavailableError(f"{operation} failed: {why}")
        self._client = _client(
            settings,
            operation,
            lambda: KafkaAdminClient(**_common(settings), client_id=f"{settings.transactional_id}-admin"),
        )

    def partition_counts(self, names: Sequence[str]) -> dict[str, int | None]:
        with translate_errors("describe topics"):
            described = self._client.describe_topics(list(names))
        out: dict[str, int | None] = dict.fromkeys(names)
        for topic in described:
            if topic.get("error_code", 0) == 0 and topic.get("partitions"):
                out[topic["name"]] = len(topic["partitions"])
        return out

    def create(self, specs: Sequence[TopicSpec], replication_factor: int) -> None:
        request = {
            s.name: {
                "num_partitions": s.partitions,
                "replication_factor": replication_factor,
                "configs": dict(s.config),
            }
            for s in specs
        }
        try:
            with translate_errors("create topics " + ", ".join(request)):
                self._client.create_topics(request, wait_for_metadata=True)
        except (TopicSetupError, KafkaIOError) as exc:
            if isinstance(exc.__cause__, ke.TopicAlreadyExistsError):
                return
            raise TopicSetupError(
                f"{exc}. Create the topics yourself (compacted: state, model) or grant CREATE on the cluster."
            ) from exc

    def close(self) -> None:
        """Close the admin client."""
        self._client.close()


class KafkaTransport:
    """:class:`~consumer.sink.Transport` over kafka-python: group consumer + producer + restore consumer.

    Under exactly-once the producer is transactional with the stable id
    ``<group>.<instance>``; ``init_transactions`` at start fences any zombie of
    this instance and aborts its open transaction. The producer's metadata of
    ``produce_topics`` (which must exist) is fetched at start, so the first
    batch does not wait for it. The group consumer reads
    ``read_committed`` in both modes (it also reads state written by
    transactions).
    """

    def __init__(self, settings: Settings, handler: RebalanceHandler, produce_topics: Sequence[str] = ()) -> None:
        self._settings = settings
        self._eos = settings.exactly_once
        common = _common(settings)
        client_id = settings.transactional_id
        producer_config: dict[str, Any] = {
            **common,
            "client_id": f"{client_id}-producer",
            "acks": "all",
            "enable_idempotence": True,
            # a batch's records are all sent at its commit, which flushes (commit_transaction, flush): a long
            # linger and big batches keep the sender thread from draining (and taking the GIL) in the middle
            # of that run of sends; with 5 ms and 256 KiB it cost the run of sends about a third more
            "linger_ms": 1000,
            "batch_size": 1024 * 1024,
            "max_request_size": MODEL_MAX_BYTES,
            "max_block_ms": 30_000,
            "request_timeout_ms": 15_000,
            "delivery_timeout_ms": DELIVERY_TIMEOUT_MS,
            # kafka-python waits retry_backoff_ms before re-sending a transactional request that needs a
            # coordinator lookup (the group's, at the first send_offsets_to_transaction) or met
            # CONCURRENT_TRANSACTIONS; its default of 100 ms made the first commit take ~200 ms longer
            "retry_backoff_ms": 20,
        }
        if self._eos:
            producer_config["transactional_id"] = settings.transactional_id
            producer_config["transaction_timeout_ms"] = settings.transaction_timeout_ms
        self._producer: KafkaProducer | None = None
        self._consumer: KafkaConsumer | None = None
        self._restorer: KafkaConsumer | None = None
        self._uncommitted: KafkaConsumer | None = None
        self._followers: dict[tuple[str, int], KafkaConsumer] = {}
        try:
            self._producer = _client(
                settings, f"connect producer to {settings.bootstrap_servers}", lambda: KafkaProducer(**producer_config)
            )
            sender = self._producer._sender
            # a result may wait for every expiring batch (delivery timeout) and then for its own request
            self._delivery = DeliveryTracker(sender.is_alive, TRANSACTION_WAIT_S)
            self._appender = Appender(
                self._producer, KeyPartitioner(self._producer.partitions_for), transactional=self._eos
            )
            if self._eos:
                with translate_errors(f"init transactions for {settings.transactional_id}"):
                    self._producer.init_transactions()
            for topic in produce_topics:  # metadata now, not at the first send inside a batch
                with translate_errors(f"metadata of {topic}"):
                    self._producer.partitions_for(topic)
            consumer_config: dict[str, Any] = {
                **common,
                "client_id": f"{client_id}-consumer",
                "group_id": settings.group_id,
                "enable_auto_commit": False,
                "isolation_level": "read_committed",
                "auto_offset_reset": settings.auto_offset_reset,
                "max_poll_records": settings.batch_size,
                "session_timeout_ms": settings.session_timeout_ms,
                "heartbeat_interval_ms": max(1000, settings.session_timeout_ms // 4),
                # kafka-python can learn a just-created topic without its partitions and join the group with
                # nothing to assign (dpkp/kafka-python#1237); the next metadata refresh starts a rebalance
                # (see _hold_rejoin), so keep it near
                "metadata_max_age_ms": 10_000,
            }
            if settings.static_membership:
                consumer_config["group_instance_id"] = settings.transactional_id
            self._consumer = _client(
                settings, f"connect consumer to {settings.bootstrap_servers}", lambda: KafkaConsumer(**consumer_config)
            )
            require_private_hooks(self._consumer, self._producer)
            require_codecs()
            use_fast_records(self._consumer)
            with translate_errors(f"subscribe to {settings.topics.input}"):
                subscribe(self._consumer, [settings.topics.input], handler)
                # metadata now, between subscribe and the join in the first poll: joined without it, the leader
                # assigns nothing ("No partition metadata for topic", a WARNING) and the metadata that arrives
                # next starts a second rebalance; topics() always asks the broker, so the group coordinator's
                # view of the subscribed topics is current before the join
                self._consumer.topics()
        except BaseException:
            self.close()
            raise

    @property
    def consumer(self) -> KafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    @property
    def producer(self) -> KafkaProducer:
        assert self._producer is not None
        return self._producer

    def poll(self, timeout_s: float, max_records: int) -> list[InRecord]:
        with translate_errors("poll"):
            batch = self.consumer.poll(timeout_ms=max(0, int(timeout_s * 1000)), max_records=max_records)
        return [r for records in batch.values() for r in records]  # InRecords already (use_fast_records)

    def rewind(self, partitions: Iterable[TP]) -> dict[TP, int]:
        positions: dict[TP, int] = {}
        with translate_errors("rewind to committed offsets"):
            for tp in partitions:
                ktp = TopicPartition(tp.topic, tp.partition)
                committed = self.consumer.committed(ktp)
                if committed is None:
                    if self._settings.auto_offset_reset == "earliest":
                        self.consumer.seek_to_beginning(ktp)
                    else:
                        self.consumer.seek_to_end(ktp)
                    positions[tp] = self.consumer.position(ktp)
                else:
                    self.consumer.seek(ktp, committed)
                    positions[tp] = committed
        return positions

    def begin(self) -> None:
        self._delivery.begin()
        self._appender.begin()
        if self._eos:
            with translate_errors("begin transaction", transactional=True):
                self.producer.begin_transaction()

    def send(self, record: OutRecord) -> None:
        self.send_many((record,))

    def send_many(self, records: Iterable[OutRecord]) -> None:
        # The hot path (a commit's outputs, membership and changelog records): appended to the producer's
        # accumulator by Appender, the partition of a keyed record from KeyPartitioner's cache rather than
        # kafka-python's pure-Python murmur2.
        try:
            futures = self._appender.append_all(records)
        except ke.KafkaError as exc:
            raise _translated(exc, "send the batch's records", transactional=self._eos) from exc
        self._delivery.track(futures)

    def commit(self, offsets: Mapping[TP, int]) -> None:
        kafka_offsets = {
            TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()
        }
        if self._eos:
            self._commit_transaction(kafka_offsets)
            return
        with translate_errors("flush outputs", transactional=True):
            self.producer.flush(timeout=30)
        self._delivery.check("flush outputs", complete=True)  # raises the delivery error, if any
        if kafka_offsets:
            with translate_errors("commit offsets", transactional=True):
                self.consumer.commit(kafka_offsets)

    def _commit_transaction(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """``send_offsets_to_transaction`` and ``commit_transaction``, each checked by the :class:`DeliveryTracker`.

        kafka-python's own calls wait for their result without a bound; these
        wait at most :data:`TRANSACTION_WAIT_S` and look at the sender thread
        meanwhile. The commit is asked for only once every record of the batch
        is acknowledged: kafka-python 3.0.12 commits a transaction whose record
        batches expired in the accumulator (a broker down for longer than
        ``delivery_timeout_ms``) without an error, so the input offsets would be
        committed without the batch's outputs and state (seen in the
        broker-restart test: 25 events lost). Checking after the commit cannot
        take that back; see :mod:`consumer.delivery`.
        """
        producer, delivery = self.producer, self._delivery
        manager = producer._transaction_manager
        delivery.check("send the batch's records")
        with translate_errors("commit transaction", transactional=True):
            if offsets:
                result = manager.send_offsets_to_transaction(offsets, self.consumer.group_metadata())
                producer._sender.wakeup()
            with contextlib.suppress(ke.KafkaTimeoutError):  # the check below names the deliveries without an answer
                producer.flush(timeout=TRANSACTION_WAIT_S)  # every record acknowledged or failed (expired)
            delivery.check("send the batch's records", complete=True)
            if offsets:
                delivery.wait(result, "send the input offsets to the transaction")
            result = manager.begin_commit()
            producer._sender.wakeup()
            delivery.wait(result, "commit transaction")
        delivery.check("commit transaction", complete=True)

    def abort(self) -> None:
        self._delivery.begin()
        if self._eos:
            with translate_errors("abort transaction", transactional=True):
                result = self.producer._transaction_manager.begin_abort()
                self.producer._sender.wakeup()
                self._delivery.wait(result, "abort transaction")

    def read_to_end(self, topic: str, partitions: Sequence[int], stable: bool = False) -> list[InRecord]:
        if not partitions:
            return []
        with translate_errors(f"restore {topic}{list(partitions)}"):
            if self._restorer is None:
                self._restorer = KafkaConsumer(
                    **_common(self._settings),
                    group_id=None,
                    enable_auto_commit=False,
                    isolation_level="read_committed",
                    client_id=f"{self._settings.transactional_id}-restore",
                )
                use_fast_records(self._restorer)
            restorer = self._restorer
            missing_partitions(topic, partitions, len(restorer.partitions_for_topic(topic) or ()))
            tps = [TopicPartition(topic, p) for p in partitions]
            restorer.assign(tps)
            restorer.seek_to_beginning(*tps)
            ends = restorer.end_offsets(tps)  # the last stable offsets (read_committed)
            if stable:
                ends = {tp: max(ends[tp], high) for tp, high in self._high_watermarks(tps).items()}
            remaining = {tp for tp in tps if ends[tp] > restorer.position(tp)}
            out: list[InRecord] = []
            started = time.monotonic()
            deadline = started + 120
            warned = False
            while remaining:
                now = time.monotonic()
                if now > deadline:
                    raise ke.KafkaTimeoutError(f"could not read {sorted(map(str, remaining))} to their end")
                if stable and not warned and now - started > 5:
                    warned = True
                    log.warning(
                        "restoring %s: waiting for a transaction left open (by a killed instance?) to be "
                        "aborted by the broker (transaction timeout)",
                        sorted(map(str, remaining)),
                    )
                for records in restorer.poll(timeout_ms=500).values():
                    out.extend(records)
                remaining = {tp for tp in remaining if restorer.position(tp) < ends[tp]}
            restorer.assign([])
        return out

    def _high_watermarks(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """End offsets including open transactions (what a stable read must get past)."""
        if self._uncommitted is None:
            self._uncommitted = KafkaConsumer(
                **_common(self._settings),
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_uncommitted",
                client_id=f"{self._settings.transactional_id}-hw",
            )
        ends: dict[TopicPartition, int] = self._uncommitted.end_offsets(tps)
        return ends

    def follow(self, topic: str, partition: int) -> list[InRecord]:
        key = (topic, partition)
        with translate_errors(f"follow {topic}[{partition}]"):
            follower = self._followers.get(key)
            if follower is None:
                follower = KafkaConsumer(
                    **_common(self._settings),
                    group_id=None,
                    enable_auto_commit=False,
                    isolation_level="read_committed",
                    auto_offset_reset="earliest",
                    max_partition_fetch_bytes=MODEL_MAX_BYTES,
                    fetch_max_bytes=MODEL_MAX_BYTES,
                    client_id=f"{self._settings.transactional_id}-follow",
                )
                use_fast_records(follower)
                tp = TopicPartition(topic, partition)
                follower.assign([tp])
                follower.seek_to_beginning(tp)
                self._followers[key] = follower
            batch = follower.poll(timeout_ms=0)
        return [r for records in batch.values() for r in records]

    def lag(self, positions: Mapping[TP, int]) -> dict[TP, int]:
        out: dict[TP, int] = {}
        for tp, pos in positions.items():
            try:
                high = self.consumer.highwater(TopicPartition(tp.topic, tp.partition))
            except ke.KafkaError:
                continue
            if high is not None:
                out[tp] = max(0, high - pos)
        return out

    def caught_up(self, partitions: Iterable[TP]) -> set[TP]:
        """Partitions whose position is at the high watermark of the last fetch (nothing left to return).

        Under ``read_committed`` the position stops at the last stable offset, so a partition with an
        open transaction of an upstream producer stays "not caught up" (it holds the watermark) until
        that transaction ends. A partition without a fetch response yet is not caught up.
        """
        out: set[TP] = set()
        for tp in partitions:
            ktp = TopicPartition(tp.topic, tp.partition)
            try:
                high = self.consumer.highwater(ktp)
                position = self.consumer.position(ktp, timeout_ms=0) if high is not None else None
            except ke.KafkaError:
                continue
            if high is not None and position is not None and position >= high:
                out.add(tp)
        return out

    def close(self) -> None:
        """Close every client; never raises (a dead broker must not block shutdown for long)."""
        clients: list[tuple[str, Any, dict[str, Any]]] = [
            ("consumer", self._consumer, {"timeout_ms": 5000}),
            ("restore consumer", self._restorer, {"timeout_ms": 2000}),
            ("high-watermark consumer", self._uncommitted, {"timeout_ms": 2000}),
            *((f"follower of {t}[{p}]", c, {"timeout_ms": 2000}) for (t, p), c in self._followers.items()),
            ("producer", self._producer, {"timeout": 5}),
        ]
        for name, client, kwargs in clients:
            if client is None:
                continue
            try:
                client.close(**kwargs)
            except Exception as exc:  # closing is best effort
                log.warning("closing the %s failed: %r", name, exc)
        self._consumer = self._restorer = self._uncommitted = self._producer = None
        self._followers = {}
