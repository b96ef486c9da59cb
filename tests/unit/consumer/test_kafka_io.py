"""Pieces of the Kafka edge that need no broker."""

from __future__ import annotations

import socket
import threading
import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kafka.errors as ke
import pytest
from kafka import TopicPartition
from kafka.coordinator.base import MemberState
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.future import Future
from kafka.partitioner.default import DefaultPartitioner
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.record.memory_records import MemoryRecords

from consumer.delivery import DeliveryTracker
from consumer.errors import BrokerUnavailableError, KafkaIOError, TransactionError, UnsupportedClientError
from consumer.kafka_io import (
    PINNED_KAFKA_PYTHON,
    Appender,
    KafkaAdmin,
    KafkaTransport,
    KeyPartitioner,
    _apply_finished_joins,
    _client,
    _hold_rejoin,
    require_codecs,
    require_private_hooks,
    translate_errors,
)
from consumer.settings import load_settings
from consumer.sink import TP, OutRecord


class _Cluster:
    """The part of kafka-python's ClusterMetadata the default partitioner reads."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def topics(self) -> set[str]:
        return set(self.partitions)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions[topic]))

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions_for_topic(topic)


@pytest.mark.parametrize("count", [1, 2, 3, 12])
def test_key_partitioner_matches_kafka_pythons_default_partitioner(count: int) -> None:
    cluster = _Cluster({"out": count})
    ours = KeyPartitioner(cluster.partitions_for_topic)
    keys = [f"c{i}".encode() for i in range(500)] + [b"", "kunde-\u00e9".encode(), b"x" * 37]
    expected = [DefaultPartitioner().partition("out", None, key, None, None, cluster) for key in keys]
    assert [ours.partition("out", key) for key in keys] == expected
    assert [ours.partition("out", key) for key in keys] == expected  # from the cache


def test_key_partitioner_follows_a_changed_partition_count_and_bounds_its_cache() -> None:
    counts = {"out": 2}
    calls: list[str] = []

    def partitions_for(topic: str) -> Any:
        calls.append(topic)
        return range(counts[topic])

    ours = KeyPartitioner(partitions_for, refresh_s=0.0, max_keys=10)
    before = [ours.partition("out", f"c{i}".encode()) for i in range(50)]
    counts["out"] = 7
    cluster = _Cluster(counts)
    after = [ours.partition("out", f"c{i}".encode()) for i in range(50)]
    assert set(before) == {0, 1}
    assert after == [
        DefaultPartitioner().partition("out", None, f"c{i}".encode(), None, None, cluster) for i in range(50)
    ]
    assert len(calls) == 100  # refresh_s=0: the count is re-read on every call


def test_key_partitioner_refuses_a_topic_without_partitions() -> None:
    ours = KeyPartitioner(lambda topic: None)
    with pytest.raises(KafkaIOError, match="no partitions"), translate_errors("send to out"):
        ours.partition("out", b"c1")


def test_private_hook_check_refuses_a_consumer_without_the_rejoin_hook() -> None:
    class NoCoordinator:
        pass

    class RenamedHook:
        _coordinator = SimpleNamespace(rejoin=lambda: None)

    for consumer in (NoCoordinator(), RenamedHook()):
        with pytest.raises(UnsupportedClientError, match=r"kafka-python==3\.0\.12"):
            require_private_hooks(consumer)


def test_every_batch_codec_kafka_python_reads_is_installed() -> None:
    require_codecs()  # a topic compressed with lz4, zstd or snappy must be readable by the installed service


@pytest.mark.parametrize(("check", "package"), [("has_lz4", "lz4"), ("has_zstd", "zstandard"),
                                                ("has_snappy", "python-snappy")])  # fmt: skip
def test_a_missing_codec_package_fails_at_start_up_naming_it(
    monkeypatch: pytest.MonkeyPatch, check: str, package: str
) -> None:
    monkeypatch.setattr(f"kafka.codec.{check}", lambda: False)
    with pytest.raises(UnsupportedClientError, match=rf"\(pip install {package}\)") as caught:
        require_codecs()
    assert str(caught.value).count("pip install") == 2  # the missing one, and how to install them all


def test_an_unreadable_codec_at_poll_is_not_retried_as_a_kafka_failure() -> None:
    with pytest.raises(UnsupportedClientError, match=r"poll failed: .*zstd.*pip install -e") as caught, \
            translate_errors("poll"):  # fmt: skip
        raise ke.UnsupportedCodecError("Libraries for zstd compression codec not found")
    assert not isinstance(caught.value, KafkaIOError)  # run_reconnecting retries KafkaIOError forever


def _stub_coordinator(**hooks: Any) -> SimpleNamespace:
    """A stand-in for kafka-python's ConsumerCoordinator with every hook the rebalance workarounds use."""
    parts: dict[str, Any] = {
        "request_rejoin": lambda: None,
        "join_group_async": lambda: None,
        "_on_join_complete_async": lambda: None,
        "_enable_heartbeat": lambda: None,
        "_join_task": None,
        "_lock": None,
        "_generation": None,
        "rejoining": False,
    }
    return SimpleNamespace(**{**parts, **hooks})


def test_private_hook_check_accepts_the_hook_and_hold_rejoin_uses_it() -> None:
    calls: list[str] = []
    consumer: Any = SimpleNamespace(_coordinator=_stub_coordinator(request_rejoin=lambda: calls.append("rejoin")))
    require_private_hooks(consumer)
    _hold_rejoin(consumer)
    assert calls == ["rejoin"]


def test_private_hook_check_names_each_missing_coordinator_hook() -> None:
    coordinator = _stub_coordinator()
    del coordinator._join_task
    coordinator.join_group_async = None
    with pytest.raises(UnsupportedClientError) as caught:
        require_private_hooks(SimpleNamespace(_coordinator=coordinator))
    assert "KafkaConsumer._coordinator._join_task (consumer.kafka_io._apply_finished_joins)" in str(caught.value)
    assert "KafkaConsumer._coordinator.join_group_async()" in str(caught.value)
    assert "request_rejoin" not in str(caught.value)


def _run(coroutine: Any) -> Any:
    """Drive a coroutine that awaits nothing that suspends (the stubs below) to its result."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended")


def _joining_coordinator(task: Future | None, calls: list[Any]) -> SimpleNamespace:
    async def join_group_async(timeout_ms: float | None = None) -> bool:
        calls.append(("loop", timeout_ms))
        return False

    async def on_join_complete(generation: int, member: str, protocol: str, assignment: bytes) -> None:
        calls.append(("complete", generation, member, protocol, assignment))

    return _stub_coordinator(
        join_group_async=join_group_async,
        _on_join_complete_async=on_join_complete,
        _join_task=task,
        _enable_heartbeat=lambda: calls.append("heartbeat"),
        _lock=threading.Lock(),
        rejoining=True,
        rejoin_needed=True,
        state=MemberState.REBALANCING,
        _generation=SimpleNamespace(generation_id=7, member_id="m-1", protocol="range"),
    )


def test_a_join_task_that_succeeded_between_polls_is_applied_not_sent_again() -> None:
    calls: list[Any] = []
    task = Future().success(b"assignment")
    consumer = SimpleNamespace(_coordinator=_joining_coordinator(task, calls))
    _apply_finished_joins(consumer)
    coordinator = consumer._coordinator
    assert _run(coordinator.join_group_async(100)) is True
    assert calls == ["heartbeat", ("complete", 7, "m-1", "range", b"assignment")]
    assert (coordinator._join_task, coordinator.rejoining, coordinator.rejoin_needed) == (None, False, False)
    assert coordinator.state is MemberState.STABLE


def test_a_join_task_in_flight_or_failed_is_left_to_kafka_pythons_loop() -> None:
    for task in (None, Future(), Future().failure(ke.RebalanceInProgressError())):
        calls: list[Any] = []
        consumer = SimpleNamespace(_coordinator=_joining_coordinator(task, calls))
        _apply_finished_joins(consumer)
        assert _run(consumer._coordinator.join_group_async(100)) is False
        assert calls == [("loop", 100)]
        assert consumer._coordinator._join_task is task and consumer._coordinator.rejoin_needed


def test_the_installed_kafka_python_is_the_pinned_one_and_has_the_hook() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    assert f"kafka-python=={PINNED_KAFKA_PYTHON}" in pyproject["project"]["dependencies"]
    assert metadata.version("kafka-python") == PINNED_KAFKA_PYTHON
    assert callable(ConsumerCoordinator.request_rejoin)  # what KafkaConsumer builds as its _coordinator
    assert callable(ConsumerCoordinator.join_group_async) and callable(ConsumerCoordinator._on_join_complete_async)
    assert callable(ConsumerCoordinator._enable_heartbeat)
    from kafka.coordinator.base import BaseCoordinator  # noqa: PLC0415

    assert {"_join_task", "_lock", "_generation", "rejoining"} <= set(BaseCoordinator.__init__.__code__.co_names)


def _appended(accumulator: RecordAccumulator) -> list[tuple[int, bytes | None, bytes | None, tuple[Any, ...]]]:
    """What the accumulator's queues hold, partition by partition: (partition, key, value, headers) per record."""
    out = []
    for tp, queue in sorted(accumulator._batches.items()):
        for batch in queue:
            batch.records.close()
            for records in MemoryRecords(batch.records.buffer()):
                out += [(tp.partition, r.key, r.value, tuple(r.headers)) for r in records]
    return out


def _stub_producer(partitions: int = 3, batch_size: int = 1 << 20) -> Any:
    calls: list[Any] = []

    def send(topic: str, **kw: Any) -> str:
        calls.append(("send", topic, kw["key"], kw["value"], kw["partition"]))
        return "sent"

    producer = SimpleNamespace(
        _accumulator=RecordAccumulator(batch_size=batch_size, linger_ms=1000),
        _transaction_manager=SimpleNamespace(
            maybe_add_partition_to_transaction=lambda tp: calls.append(("join", tp)),
            send_offsets_to_transaction=lambda offsets, group: None,
            begin_commit=lambda: None,
            begin_abort=lambda: None,
        ),
        _metadata=SimpleNamespace(partitions_for_topic=lambda t: set(range(partitions)) if t == "out" else None),
        _sender=SimpleNamespace(wakeup=lambda: calls.append("wakeup"), is_alive=lambda: True),
        config={"max_request_size": 1000, "bootstrap_servers": "nowhere:9092"},
        send=send,
        calls=calls,
    )
    return producer


def test_appender_appends_where_send_would_and_leaves_the_rest_to_send() -> None:
    producer = _stub_producer()
    appender = Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=True)
    keyed = [OutRecord("out", f"c{i}".encode(), b"v", (("format", b"x"),)) for i in range(6)]
    others = [
        OutRecord("out", None, b"pinned", partition=2),
        OutRecord("out", b"c1", None),  # a tombstone
        OutRecord("out", b"c0", b"x" * 2000),  # may be too large: send checks it exactly
        OutRecord("out", None, b"keyless"),  # the sticky partitioner's: send
        OutRecord("out", b"c1", b"p", partition=7),  # a partition the metadata does not know: send
        OutRecord("unknown", b"c1", b"v"),  # a topic without metadata yet: send
    ]
    futures = appender.append_all([*keyed, *others])
    cluster = _Cluster({"out": 3})
    expected = [DefaultPartitioner().partition("out", None, r.key, None, None, cluster) for r in keyed]
    want = [
        *((p, r.key, r.value, r.headers) for p, r in zip(expected, keyed, strict=True)),
        (2, None, b"pinned", ()),
        (expected[1], b"c1", None, ()),
    ]
    assert _appended(producer._accumulator) == sorted(want, key=lambda w: w[0])  # stable: in order per partition
    sent = [c for c in producer.calls if c[0] == "send"]
    assert sent == [
        ("send", "out", b"c0", b"x" * 2000, None),
        ("send", "out", None, b"keyless", None),
        ("send", "out", b"c1", b"p", 7),
        ("send", "unknown", b"c1", b"v", None),
    ]
    assert len(futures) == len({*expected, 2}) + len(sent)  # one per batch, one per send
    joined = [c[1] for c in producer.calls if c[0] == "join"]
    assert sorted(tp.partition for tp in joined) == sorted({*expected, 2})  # each partition joins once
    assert producer.calls.count("wakeup") == 0  # the last records went through send, which wakes the sender itself


def test_appender_sends_what_precedes_a_send_first_and_wakes_the_sender_once_after_a_run() -> None:
    producer = _stub_producer()
    order: list[str] = []
    producer.send = lambda topic, **kw: order.append(f"send:{len(_appended(producer._accumulator))}")
    appender = Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=False)
    appender.append_all(
        [
            OutRecord("out", b"a", b"1", partition=0),
            OutRecord("out", None, b"keyless"),
            OutRecord("out", b"b", b"2", partition=0),
        ]
    )
    assert order == ["send:1"]  # the record before the send was on the queue when it was sent
    assert [r[1] for r in _appended(producer._accumulator)] == [b"a", b"b"]
    assert producer.calls.count("wakeup") == 1


def test_appender_splits_a_partitions_run_into_batches_and_gives_each_batch_a_future() -> None:
    producer = _stub_producer(batch_size=2000)
    appender = Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=False)
    run = [OutRecord("out", f"k{i}".encode(), bytes(300), partition=1) for i in range(20)]
    futures = appender.append_all(run)
    queue = producer._accumulator._batches[TopicPartition("out", 1)]
    assert len(queue) == len(futures) > 1
    assert all(batch.records.size_in_bytes() <= 2000 for batch in queue)
    assert [r[1] for r in _appended(producer._accumulator)] == [r.key for r in run]
    assert all(len(batch._record_futures) == 1 for batch in queue)


def test_appender_joins_each_partition_to_every_new_transaction() -> None:
    producer = _stub_producer()
    appender = Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=True)
    record = OutRecord("out", None, b"v", partition=1)
    appender.append_all([record, record])
    appender.begin()
    appender.append_all([record])
    assert [c for c in producer.calls if c[0] == "join"] == [("join", TopicPartition("out", 1))] * 2


def test_appender_of_a_plain_producer_joins_no_transaction() -> None:
    producer = _stub_producer()
    Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=False).append_all(
        [OutRecord("out", b"c1", b"v")]
    )
    assert not [c for c in producer.calls if c[0] == "join"]
    assert len(_appended(producer._accumulator)) == 1


def test_appender_refuses_brokers_without_record_format_v2() -> None:
    producer = _stub_producer()
    producer._accumulator.config["message_version"] = 1
    with pytest.raises(UnsupportedClientError, match="v2"):
        Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=True)


def test_private_hook_check_names_each_missing_producer_hook() -> None:
    consumer: Any = SimpleNamespace(_coordinator=_stub_coordinator())
    producer = _stub_producer()
    require_private_hooks(consumer, producer)
    del producer._sender
    producer._accumulator = SimpleNamespace(add=lambda: None)
    with pytest.raises(UnsupportedClientError) as caught:
        require_private_hooks(consumer, producer)
    assert "KafkaProducer._accumulator._tp_lock()" in str(caught.value)
    assert "KafkaProducer._accumulator._batches" in str(caught.value)
    assert "KafkaProducer._sender.wakeup()" in str(caught.value)
    assert "_transaction_manager" not in str(caught.value)


def test_the_installed_producer_has_the_hooks_appender_uses() -> None:
    from kafka.producer.kafka import KafkaProducer  # noqa: PLC0415
    from kafka.producer.sender import Sender  # noqa: PLC0415
    from kafka.producer.transaction_manager import TransactionManager  # noqa: PLC0415

    assert callable(RecordAccumulator._tp_lock)
    assert callable(TransactionManager.maybe_add_partition_to_transaction)
    assert callable(TransactionManager.send_offsets_to_transaction)
    assert callable(TransactionManager.begin_commit) and callable(TransactionManager.begin_abort)
    assert callable(Sender.wakeup) and callable(Sender.is_alive)
    assert "_accumulator" in KafkaProducer.__init__.__code__.co_names


def test_private_hook_check_refuses_an_encoding_unlike_kafka_pythons(monkeypatch: pytest.MonkeyPatch) -> None:
    import consumer.kafka_io as kafka_io  # noqa: PLC0415
    from consumer.record_encoding import EncodedRun  # noqa: PLC0415

    class Skewed:
        def __init__(self, prefix: int, limit: int) -> None:
            self.prefix = prefix

        def runs(self, records: list[OutRecord]) -> list[EncodedRun]:
            return [EncodedRun(bytearray(self.prefix) + b"\x00", len(records), 1)]

    consumer: Any = SimpleNamespace(_coordinator=_stub_coordinator())
    require_private_hooks(consumer, _stub_producer())
    monkeypatch.setattr(kafka_io, "RecordEncoder", Skewed)
    with pytest.raises(UnsupportedClientError, match="record encoding"):
        require_private_hooks(consumer, _stub_producer())


class _Pending:
    """A delivery future the fake producer's flush answers: delivered, or expired (kafka-python's expiry error)."""

    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None


class _TransactionalProducer:
    """kafka-python 3.0.12's transactional producer as the commit sees it: a commit goes through even when the
    batch's records expired in the accumulator meanwhile (what lost 25 events in the broker-restart test)."""

    def __init__(self, futures: list[_Pending], expire: bool) -> None:
        self.futures, self.expire = futures, expire
        self.calls: list[str] = []
        self._sender = SimpleNamespace(wakeup=lambda: None)
        self._transaction_manager = SimpleNamespace(
            send_offsets_to_transaction=lambda offsets, group: self._called("offsets"),
            begin_commit=lambda: self._called("commit"),
        )

    def _called(self, request: str) -> SimpleNamespace:
        self.calls.append(request)
        return SimpleNamespace(wait=lambda timeout_ms=None: True)  # the broker's answer: done

    def flush(self, timeout: float | None = None) -> None:
        self.calls.append("flush")
        for future in self.futures:
            future.is_done = True
            future.exception = ke.KafkaTimeoutError("Expiring 4 record(s)") if self.expire else None


def _eos_transport(producer: _TransactionalProducer) -> KafkaTransport:
    transport = object.__new__(KafkaTransport)
    transport._eos = True
    transport._producer = producer
    transport._consumer = SimpleNamespace(group_metadata=lambda: None)
    transport._delivery = DeliveryTracker(lambda: True, timeout_s=5.0)
    transport._delivery.track(producer.futures)
    return transport


def test_a_batch_whose_records_expire_before_the_commit_is_never_committed() -> None:
    producer = _TransactionalProducer([_Pending(), _Pending()], expire=True)
    with pytest.raises(TransactionError, match="2 of the batch's 2 deliveries failed"):
        _eos_transport(producer).commit({TP("in", 0): 450})
    assert "commit" not in producer.calls  # the offsets joined the transaction, which is aborted, not committed


def test_a_batch_is_committed_once_every_record_is_acknowledged() -> None:
    producer = _TransactionalProducer([_Pending(), _Pending()], expire=False)
    _eos_transport(producer).commit({TP("in", 0): 450})
    assert producer.calls == ["offsets", "flush", "commit"]  # the offsets' request flies while records are flushed


def test_records_without_an_answer_in_time_fail_the_commit_before_it_is_asked_for() -> None:
    producer = _TransactionalProducer([_Pending()], expire=False)

    def flush(timeout: float | None = None) -> None:
        raise ke.KafkaTimeoutError("Timeout waiting for future")  # the broker is down: nothing answers

    producer.flush = flush  # type: ignore[method-assign]
    with pytest.raises(TransactionError, match="1 of the batch's 1 deliveries have no answer"):
        _eos_transport(producer).commit({TP("in", 0): 450})
    assert "commit" not in producer.calls


def _free_port() -> int:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_session_on_a_broker_nobody_listens_for_fails_before_kafka_python_bootstraps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kafka-python's bootstrap blocks a stop for its whole timeout (10 s) and logs every attempt: not started."""
    bootstraps: list[dict[str, Any]] = []
    monkeypatch.setattr("consumer.kafka_io.KafkaAdminClient", lambda **options: bootstraps.append(options))
    port = _free_port()
    settings = load_settings(["--bootstrap-servers", f"127.0.0.1:{port}", "--metrics-port", "-1"])
    with pytest.raises(BrokerUnavailableError, match=f"no bootstrap server accepts a TCP connection .127.0.0.1:{port}"):
        KafkaAdmin(settings)
    assert bootstraps == []


def test_a_broker_nobody_listens_for_is_a_retried_failure_that_names_the_server_and_what_to_check() -> None:
    port = _free_port()
    settings = load_settings(["--bootstrap-servers", f"127.0.0.1:{port}", "--metrics-port", "-1"])

    def bootstrap() -> Any:
        raise ke.KafkaTimeoutError(f"Unable to bootstrap from ['127.0.0.1:{port}']")  # what kafka-python raises

    with pytest.raises(BrokerUnavailableError) as caught:
        _client(settings, f"connect admin client to 127.0.0.1:{port}", bootstrap)
    assert str(caught.value) == (
        f"connect admin client to 127.0.0.1:{port} failed: no bootstrap server accepts a TCP connection "
        f"(127.0.0.1:{port}: Connection refused): is Kafka running there? check bootstrap_servers "
        "(--bootstrap-servers, SEGMENTER_BOOTSTRAP_SERVERS)"
    )
    assert isinstance(caught.value.__cause__, BrokerUnavailableError), "kafka-python's own error stays the cause"
