"""The group consumer's subscription (``consumer.kafka_io.subscribe``) on the real broker."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from consumer.kafka_io import subscribe
from consumer.sink import TP


class RecordingHandler:
    """A :class:`~consumer.sink.RebalanceHandler` that records what it is told."""

    def __init__(self) -> None:
        self.assigned: list[set[TP]] = []
        self.revoked: list[set[TP]] = []

    def on_revoked(self, partitions: set[TP]) -> None:
        self.revoked.append(partitions)

    def on_assigned(self, partitions: set[TP]) -> None:
        self.assigned.append(partitions)

    def on_lost(self, partitions: set[TP]) -> None:
        self.revoked.append(partitions)


def test_subscribe_survives_a_rebalance_cut_by_poll_timeouts(
    bootstrap: str, admin: KafkaAdminClient, group_id: str
) -> None:
    """A topic created after the consumer joined is assigned even when every poll times out mid-rebalance.

    The consumer first joins owning nothing (its topic does not exist yet). Creating the topic changes
    the metadata, which starts a rebalance; polls of 1 ms return long before its JoinGroup and SyncGroup
    answers arrive. Bare kafka-python 3.0.12 then never applies the new assignment (it forgets that a
    rebalance is under way); ``subscribe`` must not.
    """
    topic = f"t-late-topic-{uuid.uuid4().hex[:8]}"
    handler = RecordingHandler()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False,
                             allow_auto_create_topics=False, metadata_max_age_ms=1000)
    try:
        subscribe(consumer, [topic], handler)
        for _ in range(10):
            consumer.poll(timeout_ms=100)
        assert consumer.assignment() == set()
        admin.create_topics([NewTopic(topic, 2, 1)])
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(timeout_ms=1)
        assert {(tp.topic, tp.partition) for tp in consumer.assignment()} == {(topic, 0), (topic, 1)}
        assert handler.assigned[-1] == {TP(topic, 0), TP(topic, 1)}
        assert handler.revoked, "each eager rebalance starts with a revocation"
    finally:
        consumer.close()
        admin.delete_topics([topic])
