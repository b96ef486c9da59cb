"""Create the topics the service needs, or explain clearly why it cannot.

The state changelog must have exactly as many partitions as the input topic
(a customer's state lives in the partition number of its input records); a
mismatch is refused rather than silently mixing customers. The membership
table is created with as many partitions too, but its records go by key hash
and nothing reads it back, so any partition count works. The state, model and
membership topics are compacted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consumer.errors import TopicSetupError
from consumer.settings import Settings

log = logging.getLogger(__name__)

COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "3600000"}
MODEL_MAX_BYTES = 16 * 1024 * 1024
VECTORS = {
    "cleanup.policy": "delete",
    "retention.ms": str(7 * 24 * 3600 * 1000),
    "max.message.bytes": str(MODEL_MAX_BYTES),
}
"""The vectors topic: the trainer's input; kept a week (a trainer restarts from its last committed offset)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic to create if missing."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


class Admin(Protocol):
    """The admin operations topic setup needs (implemented in :mod:`consumer.kafka_io`)."""

    def partition_counts(self, names: Sequence[str]) -> dict[str, int | None]:
        """Partitions of each topic, ``None`` for a missing topic."""

    def create(self, specs: Sequence[TopicSpec], replication_factor: int) -> None:
        """Create topics (raises :class:`TopicSetupError` if not allowed)."""


def plan(settings: Settings, input_partitions: int) -> list[TopicSpec]:
    """Every topic the service uses, with the layout it must have."""
    t = settings.topics
    specs = [TopicSpec(t.input, input_partitions)]
    specs += [TopicSpec(name, t.partitions) for name in settings.output_topics()]
    specs.append(TopicSpec(t.dlq, t.partitions))
    specs.append(TopicSpec(settings.state_topic, input_partitions, COMPACTED))
    specs.append(TopicSpec(t.membership, input_partitions, COMPACTED))
    specs.append(TopicSpec(settings.model_topic, 1, {**COMPACTED, "max.message.bytes": str(MODEL_MAX_BYTES)}))
    if settings.shared:
        specs.append(TopicSpec(settings.vectors_topic, 1, VECTORS))
    unique: dict[str, TopicSpec] = {}
    for spec in specs:
        unique.setdefault(spec.name, spec)
    return list(unique.values())


GREW = (
    "the input topic has more partitions than this group's state topic (was it given more partitions?). A "
    "customer's state lives in the state partition of its input partition, and a new partition count sends its "
    "key to another partition, so adding partitions to the state topic would not carry the state over (and Kafka "
    "cannot take partitions away): run a new consumer group (--group-id NEW --auto-offset-reset earliest) to "
    "rebuild the state from the input topic's history, then retire this one"
)
"""What to do when the input topic outgrew the state topic (start-up and a running consumer's restore)."""


def ensure_topics(admin: Admin, settings: Settings) -> int:
    """Create missing topics and check co-partitioning; returns the input topic's partition count.

    Raises
    ------
    TopicSetupError
        Topics are missing and ``topics.create`` is off or the broker refuses,
        or the state topic's partition count differs from the input's.
    """
    t = settings.topics
    names = [s.name for s in plan(settings, 1)]
    counts = admin.partition_counts(names)
    input_partitions = counts.get(t.input) or t.partitions
    specs = plan(settings, input_partitions)
    missing = [s for s in specs if counts.get(s.name) is None]
    if missing:
        listing = ", ".join(f"{s.name} ({s.partitions} partitions{', compacted' if s.config else ''})" for s in missing)
        if not t.create:
            raise TopicSetupError(f"missing topics: {listing}; create them or run with --topics.create true")
        log.info("creating topics: %s", listing)
        admin.create(missing, t.replication_factor)
    state_count = counts.get(settings.state_topic)
    if state_count is not None and state_count != input_partitions:
        raise TopicSetupError(
            f"state topic {settings.state_topic} has {state_count} partitions but input topic {t.input} has "
            f"{input_partitions}; they must match (co-partitioned)"
            + (
                f": {GREW}"
                if state_count < input_partitions
                else f"; use another --group-id, or recreate the state topic with {input_partitions} partitions "
                "(which drops the state)"
            )
        )
    return input_partitions
