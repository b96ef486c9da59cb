"""The group consumer's subscription (``consumer.kafka_io.subscribe``) on the real broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

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
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        metadata_max_age_ms=1000,
    )
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


def _poll_until(consumer: KafkaConsumer, done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        consumer.poll(timeout_ms=1)


def test_a_join_that_finishes_between_polls_is_applied(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    """The leader applies a rebalance whose JoinGroup/SyncGroup finished on the IO thread while nobody polled it.

    Two members; the first (the leader) starts its join of the second rebalance with a 1 ms poll and is
    then left alone until the join task has finished in the background. Its next poll must apply the
    assignment the task got. Bare kafka-python 3.0.12 sends a new JoinGroup instead, which (from the
    leader) starts yet another rebalance: the leader owns nothing after that poll, the other member is
    revoked again, and with members polling in turn this repeats (the CI failure of the transport
    contract's "a second member takes a share").
    """
    topic = new_topic(2)
    first_seen, second_seen = RecordingHandler(), RecordingHandler()

    def member(name: str) -> KafkaConsumer:
        return KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, client_id=f"{group_id}-{name}"
        )

    first, second = member("first"), member("second")
    try:
        subscribe(first, [topic], first_seen)
        _poll_until(first, lambda: len(first.assignment()) == 2, "the first member to own both partitions")
        subscribe(second, [topic], second_seen)
        coordinator = first._coordinator
        _poll_until(second, lambda: coordinator.rejoin_needed, "the first member's heartbeat to learn of the rebalance")
        _poll_until(first, lambda: coordinator._join_task is not None, "the first member to start its join")
        _poll_until(
            second,
            lambda: coordinator._join_task.is_done and bool(second.assignment()),
            "the join to finish in the background and the second member to own its share",
        )
        assert coordinator._is_leader, "the case needs the first member to lead the group"
        first.poll(timeout_ms=1000)
        owned = {(tp.topic, tp.partition) for tp in first.assignment()}
        assert owned and owned.isdisjoint((tp.topic, tp.partition) for tp in second.assignment())
        assert first_seen.assigned[-1] == {TP(*tp) for tp in owned}
        assert len(second_seen.revoked) == 1, "one rebalance: the second member was revoked only when it joined"
    finally:
        first.close()
        second.close()
