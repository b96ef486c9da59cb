"""The transport contract (tests/contract/transport_contract.py) over KafkaTransport on the real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from consumer.kafka_io import KafkaTransport
from consumer.settings import load_settings
from consumer.sink import RebalanceHandler, Transport
from tests.contract.transport_contract import CHECKS, LONE, Backend, Member, Recorder, check_id


class KafkaBackend:
    """Topics from ``new_topic`` (unique per test), groups named after the test's unique ``group_id``."""

    def __init__(self, bootstrap: str, new_topic: Callable[..., str], group_id: str) -> None:
        self._bootstrap = bootstrap
        self._new_topic = new_topic
        self._group_id = group_id
        self._topics: list[str] = []
        self.transports: list[KafkaTransport] = []

    def topic(self, partitions: int = 1, *, compacted: bool = False) -> str:
        name = self._new_topic(partitions, {"cleanup.policy": "compact"} if compacted else None)
        self._topics.append(name)
        return name

    def transport(self, input_topic: str, member: Member = LONE, handler: RebalanceHandler | None = None) -> Transport:
        args = ["--bootstrap-servers", self._bootstrap, "--topics.input", input_topic, "--metrics-port", "-1"]
        args += ["--group-id", f"{self._group_id}-{member.group}", "--instance-id", member.name]
        args += ["--guarantee", "exactly-once" if member.exactly_once else "at-least-once"]
        settings = load_settings(args)
        transport = KafkaTransport(settings, handler or Recorder(), self._topics)
        self.transports.append(transport)
        return transport

    def flush(self, transport: Transport) -> None:
        assert isinstance(transport, KafkaTransport)
        transport.producer.flush()


@pytest.fixture
def kafka_backend(bootstrap: str, new_topic: Callable[..., str], group_id: str) -> Iterator[KafkaBackend]:
    backend = KafkaBackend(bootstrap, new_topic, group_id)
    yield backend
    for transport in backend.transports:
        transport.close()


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_kafka_transport_keeps_the_transport_contract(
    check: Callable[[Backend], None], kafka_backend: KafkaBackend
) -> None:
    check(kafka_backend)
