"""The transport contract (tests/contract/transport_contract.py) over the in-memory transport."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from consumer.sink import InRecord, MemoryGroup, MemoryTransport, OutRecord, RebalanceHandler, Transport
from tests.contract.transport_contract import CHECKS, LONE, Backend, Member, Recorder, check_id


class MemoryBackend:
    """Topics in one shared dict (one broker), one :class:`MemoryGroup` per group name."""

    def __init__(self) -> None:
        self.topics: dict[str, list[list[InRecord]]] = {}
        self.groups: dict[str, MemoryGroup] = {}

    def topic(self, partitions: int = 1, *, compacted: bool = False) -> str:
        name = f"t{len(self.topics)}"
        MemoryTransport(name, partitions=partitions, topics=self.topics)  # creates the topic
        return name

    def transport(self, input_topic: str, member: Member = LONE, handler: RebalanceHandler | None = None) -> Transport:
        return MemoryTransport(
            input_topic,
            topics=self.topics,
            group=self.groups.setdefault(member.group, MemoryGroup()),
            member=member.name,
            exactly_once=member.exactly_once,
            handler=handler or Recorder(),
        )

    def flush(self, transport: Transport) -> None:
        """Nothing to do: a send takes its offset at once."""


@pytest.mark.parametrize("check", CHECKS, ids=check_id)
def test_memory_transport_keeps_the_transport_contract(check: Callable[[Backend], None]) -> None:
    check(MemoryBackend())


def test_memory_transport_refuses_a_stable_read_it_could_only_wait_for() -> None:
    backend = MemoryBackend()
    topic = backend.topic()
    writer, reader = backend.transport(topic, Member(group="w")), backend.transport(topic, Member(group="r"))
    writer.begin()
    writer.send(OutRecord(topic, b"k", b"open"))
    with pytest.raises(RuntimeError, match="Kafka would wait"):
        reader.read_to_end(topic, [0], stable=True)
    assert reader.read_to_end(topic, [0]) == []
    writer.close()
    assert reader.read_to_end(topic, [0], stable=True) == [], "closing aborts the open batch"
