"""Pieces of the Kafka edge that need no broker."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.partitioner.default import DefaultPartitioner

from consumer.errors import KafkaIOError, UnsupportedClientError
from consumer.kafka_io import (
    PINNED_KAFKA_PYTHON,
    KeyPartitioner,
    _hold_rejoin,
    require_private_hooks,
    translate_errors,
)


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
