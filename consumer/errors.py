"""The consumer service's documented exception hierarchy.

Kafka client exceptions never leave :mod:`consumer.kafka_io`: they are
translated there, at the edge, into the classes below (the way httpx maps
httpcore's exceptions), so the processing loop reasons about a handful of
meaningful failures instead of the client library's dozens.

::

    ConsumerError
    ├── SettingsError           a setting is invalid (names the field, the flag and the env var)
    ├── KafkaIOError            talking to Kafka failed
    │   ├── BrokerUnavailableError   no broker answered in time; retried with backoff
    │   ├── TransactionError         a transaction could not be committed; the batch is aborted and replayed
    │   │   └── FencedError          a newer instance with the same transactional id exists; this one must stop
    │   ├── TopicSetupError          topics are missing and cannot be created, or are mis-partitioned
    │   └── AuthenticationError      the TLS handshake or the SASL login failed; this instance must stop
    ├── UnsupportedClientError  the installed kafka-python lacks a private hook the service uses, or a codec
    ├── PoisonRecordError       the core raised an unexpected exception on one record
    └── CoreBatchError          the core raised on a run of records (which one is found by replaying them one by one)

Exit codes of ``segmenter-consumer``: 0 after a clean stop, 2 for a
:class:`SettingsError` or a bad config/rules file, 3 for a :class:`FencedError`,
4 for a :class:`TopicSetupError`, 5 for an :class:`AuthenticationError`, 1 for anything else.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class of every error the consumer service raises on purpose."""


class SettingsError(ConsumerError):
    """A setting is invalid; the message names the field, its flag and its environment variable."""


class KafkaIOError(ConsumerError):
    """A Kafka operation failed (translated from a kafka-python exception)."""


class BrokerUnavailableError(KafkaIOError):
    """No broker could be reached in time. The service retries with backoff."""


class TransactionError(KafkaIOError):
    """The producer could not add to, commit or abort a transaction; the batch is replayed."""


class FencedError(TransactionError):
    """Another producer with the same transactional id took over (a newer instance); this one must stop."""


class TopicSetupError(KafkaIOError):
    """Required topics are missing and may not be created, or their layout is wrong."""


class AuthenticationError(KafkaIOError):
    """The broker is reachable but the TLS handshake or the SASL login failed: retrying cannot help."""


class UnsupportedClientError(ConsumerError):
    """The installed kafka-python lacks a private hook the service relies on (install the pinned version), or cannot
    decompress a codec (install the dependencies)."""


class PoisonRecordError(ConsumerError):
    """The core raised an unexpected exception while processing one input record.

    Parameters
    ----------
    topic, partition, offset
        Where the record lives.
    cause
        The exception the core raised.
    """

    def __init__(self, topic: str, partition: int, offset: int, cause: BaseException) -> None:
        super().__init__(f"processing {topic}[{partition}]@{offset} failed: {cause!r}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause


class CoreBatchError(ConsumerError):
    """The core raised an unexpected exception on a run of records processed together.

    The service aborts the batch, rebuilds its state and replays the run one
    record at a time, so that a :class:`PoisonRecordError` names the record.

    Parameters
    ----------
    last_offsets
        ``(topic, partition) -> offset`` of the run's last record per partition.
    cause
        The exception the core raised.
    """

    def __init__(self, last_offsets: dict[tuple[str, int], int], cause: BaseException) -> None:
        where = ", ".join(f"{t}[{p}]..{o}" for (t, p), o in sorted(last_offsets.items()))
        super().__init__(f"processing a run of records up to {where} failed: {cause!r}")
        self.last_offsets = last_offsets
        self.cause = cause
