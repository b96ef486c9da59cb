"""Pieces of the Kafka edge that need no broker."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.partitioner.default import DefaultPartitioner

from consumer.errors import KafkaIOError, UnsupportedClientError
from consumer.kafka_io import (
    PINNED_KAFKA_PYTHON,
    Appender,
    KeyPartitioner,
    _hold_rejoin,
    require_private_hooks,
    translate_errors,
)
from consumer.sink import OutRecord


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
    assert after == [DefaultPartitioner().partition("out", None, f"c{i}".encode(), None, None, cluster)
                     for i in range(50)]
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


def test_private_hook_check_accepts_the_hook_and_hold_rejoin_uses_it() -> None:
    calls: list[str] = []
    consumer: Any = SimpleNamespace(_coordinator=SimpleNamespace(request_rejoin=lambda: calls.append("rejoin")))
    require_private_hooks(consumer)
    _hold_rejoin(consumer)
    assert calls == ["rejoin"]


def test_the_installed_kafka_python_is_the_pinned_one_and_has_the_hook() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    assert f"kafka-python=={PINNED_KAFKA_PYTHON}" in pyproject["project"]["dependencies"]
    assert metadata.version("kafka-python") == PINNED_KAFKA_PYTHON
    assert callable(ConsumerCoordinator.request_rejoin)  # what KafkaConsumer builds as its _coordinator


class _Accumulator:
    """The part of kafka-python's RecordAccumulator that Appender calls: records what was appended where."""

    def __init__(self) -> None:
        self.appended: list[tuple[Any, bytes | None, bytes | None, Any]] = []

    def append(self, tp: Any, timestamp_ms: int, key: bytes | None, value: bytes | None, headers: Any,
               now: float | None = None) -> tuple[str, bool, bool, bool]:
        self.appended.append((tp, key, value, tuple(headers)))
        return f"future-{len(self.appended)}", False, len(self.appended) == 1, False


def _stub_producer(partitions: int = 3) -> Any:
    calls: list[Any] = []

    def send(topic: str, **kw: Any) -> str:
        calls.append(("send", topic, kw["key"], kw["value"], kw["partition"]))
        return "sent"

    producer = SimpleNamespace(
        _accumulator=_Accumulator(),
        _transaction_manager=SimpleNamespace(maybe_add_partition_to_transaction=lambda tp: calls.append(("join", tp))),
        _metadata=SimpleNamespace(partitions_for_topic=lambda t: set(range(partitions)) if t == "out" else None),
        _sender=SimpleNamespace(wakeup=lambda: calls.append("wakeup")),
        config={"max_request_size": 1000},
        send=send,
        calls=calls,
    )
    return producer


def test_appender_appends_where_send_would_and_leaves_the_rest_to_send() -> None:
    producer = _stub_producer()
    appender = Appender(producer, KeyPartitioner(lambda topic: range(3)), transactional=True)
    keyed = [OutRecord("out", f"c{i}".encode(), b"v", (("format", b"x"),)) for i in range(6)]
    others = [
        OutRecord("out", b"c0", b"x" * 2000),  # may be too large: send checks it exactly
        OutRecord("out", None, b"keyless"),  # the sticky partitioner's: send
        OutRecord("out", b"c1", b"p", partition=7),  # a partition the metadata does not know: send
        OutRecord("unknown", b"c1", b"v"),  # a topic without metadata yet: send
        OutRecord("out", None, b"pinned", partition=2),
        OutRecord("out", b"c1", None),  # a tombstone
    ]
    futures = appender.append_all([*keyed, *others])
    cluster = _Cluster({"out": 3})
    expected = [DefaultPartitioner().partition("out", None, r.key, None, None, cluster) for r in keyed]
    appended = producer._accumulator.appended
    assert [(tp.partition, key, value, headers) for tp, key, value, headers in appended] == [
        *((p, r.key, r.value, r.headers) for p, r in zip(expected, keyed, strict=True)),
        (2, None, b"pinned", ()),
        (expected[1], b"c1", None, ()),
    ]
    sent = [c for c in producer.calls if c[0] == "send"]
    assert sent == [("send", "out", b"c0", b"x" * 2000, None), ("send", "out", None, b"keyless", None),
                    ("send", "out", b"c1", b"p", 7), ("send", "unknown", b"c1", b"v", None)]
    assert len(futures) == len(keyed) + len(others)
    joined = [c[1] for c in producer.calls if c[0] == "join"]
    assert sorted(tp.partition for tp in joined) == sorted({*expected, 2})  # each partition joins once
    assert producer.calls.count("wakeup") == 1  # once, at the end of the run


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
    assert len(producer._accumulator.appended) == 1


def test_private_hook_check_names_each_missing_producer_hook() -> None:
    consumer: Any = SimpleNamespace(_coordinator=SimpleNamespace(request_rejoin=lambda: None))
    producer = _stub_producer()
    require_private_hooks(consumer, producer)
    del producer._sender
    producer._accumulator = SimpleNamespace(add=lambda: None)
    with pytest.raises(UnsupportedClientError) as caught:
        require_private_hooks(consumer, producer)
    assert "KafkaProducer._accumulator.append()" in str(caught.value)
    assert "KafkaProducer._sender.wakeup()" in str(caught.value)
    assert "_transaction_manager" not in str(caught.value)


def test_the_installed_producer_has_the_hooks_appender_uses() -> None:
    from kafka.producer.kafka import KafkaProducer  # noqa: PLC0415
    from kafka.producer.record_accumulator import RecordAccumulator  # noqa: PLC0415
    from kafka.producer.sender import Sender  # noqa: PLC0415
    from kafka.producer.transaction_manager import TransactionManager  # noqa: PLC0415

    assert callable(RecordAccumulator.append) and "now" in RecordAccumulator.append.__code__.co_varnames
    assert callable(TransactionManager.maybe_add_partition_to_transaction)
    assert callable(Sender.wakeup)
    assert "_accumulator" in KafkaProducer.__init__.__code__.co_names
