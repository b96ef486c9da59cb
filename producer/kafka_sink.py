"""The Kafka sink: the only module of ``producer`` that imports the Kafka client.

Kafka client exceptions are translated here into :mod:`producer.errors`, with
a message saying what to do (e.g. start the local broker).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from producer.errors import AuthenticationError, BrokerUnavailableError, SinkError
from producer.sinks import Sink
from segmenter.connection import ConnectionSettings, error_text, login_failure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSettings:
    """Producer and topic settings.

    Attributes
    ----------
    connection
        Bootstrap servers, TLS and SASL (every client gets its
        :meth:`~segmenter.connection.ConnectionSettings.kafka_options`).
    topic
        Destination topic.
    partitions, replication_factor
        Used only when the topic has to be created.
    create_topic
        Create the topic if it is missing.
    linger_ms, batch_size, max_in_flight
        Batching and pipelining (in-flight requests are capped at 5 by idempotence).
    compression
        ``None``, ``"gzip"`` (``lz4``/``zstd`` need extra packages).
    connect_timeout_s
        How long to try reaching the broker before giving up.
    """

    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    topic: str = "customer-events"
    partitions: int = 6
    replication_factor: int = 1
    create_topic: bool = True
    linger_ms: int = 20
    batch_size: int = 256 * 1024
    max_in_flight: int = 5
    compression: str | None = None
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError("partitions and replication_factor must be >= 1")
        if not 1 <= self.max_in_flight <= 5:
            raise ValueError(f"max_in_flight must be 1..5 with an idempotent producer, got {self.max_in_flight}")

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port...]``."""
        return self.connection.bootstrap_servers


def _unreachable(settings: KafkaSettings, exc: BaseException) -> SinkError:
    """The error for a client that could not bootstrap: an :class:`AuthenticationError` when TLS or SASL explains it."""
    reason = login_failure(settings.connection, socket.create_connection)
    if reason is not None:
        return AuthenticationError(f"cannot log in to Kafka: {reason}")
    return BrokerUnavailableError(
        f"cannot reach Kafka at {settings.bootstrap_servers}: start it with scripts/kafka-local start "
        f"(or set --bootstrap-servers / SEGMENTER_BOOTSTRAP_SERVERS) [{error_text(exc)}]"
    )


_Client = TypeVar("_Client")


def _connect(settings: KafkaSettings, make: Callable[..., _Client], **options: Any) -> _Client:
    """``make(**options)`` with the connection's options (servers, TLS, SASL) and the connect timeout."""
    timeout_ms = int(settings.connect_timeout_s * 1000)
    try:
        return make(**settings.connection.kafka_options(), bootstrap_timeout_ms=timeout_ms, **options)
    except (KafkaError, OSError) as exc:
        raise _unreachable(settings, exc) from None


def ensure_topic(settings: KafkaSettings) -> bool:
    """Create ``settings.topic`` if it does not exist; return whether it was created.

    Raises
    ------
    BrokerUnavailableError
        The broker cannot be reached.
    SinkError
        The topic cannot be created (e.g. not authorised, bad partition count).
    """
    admin = _connect(
        settings,
        KafkaAdminClient,
        request_timeout_ms=int(settings.connect_timeout_s * 1000),
        client_id="segmenter-producer-admin",
    )
    try:
        if settings.topic in set(admin.list_topics()):
            return False
        admin.create_topics([NewTopic(settings.topic, settings.partitions, settings.replication_factor)])
        log.info("created topic %s with %d partitions", settings.topic, settings.partitions)
        return True
    except TopicAlreadyExistsError:
        return False  # created concurrently
    except KafkaTimeoutError as exc:
        raise _unreachable(settings, exc) from None
    except KafkaError as exc:
        raise SinkError(
            f"cannot create topic {settings.topic!r} on {settings.bootstrap_servers}: {error_text(exc)}"
        ) from None
    finally:
        admin.close()


class KafkaSink(Sink):
    """Send messages to a Kafka topic with an idempotent, batching producer.

    ``acks=all``, ``enable_idempotence=True``, at most ``max_in_flight``
    requests per connection, ``linger_ms`` batching. Delivery failures are
    collected from the send futures; :meth:`flush` raises if any happened, so
    nothing is lost silently.

    Parameters
    ----------
    settings
        Connection, topic and batching settings.

    Raises
    ------
    BrokerUnavailableError
        The broker cannot be reached at construction.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.description = f"kafka {settings.bootstrap_servers} topic {settings.topic}"
        if settings.create_topic:
            ensure_topic(settings)
        config: dict[str, Any] = {
            "client_id": "segmenter-producer",
            "enable_idempotence": True,
            "acks": "all",
            "max_in_flight_requests_per_connection": settings.max_in_flight,
            "linger_ms": settings.linger_ms,
            "batch_size": settings.batch_size,
            "compression_type": settings.compression,
        }
        try:
            self._producer = _connect(settings, KafkaProducer, **config)
        except (ValueError, AssertionError) as exc:
            raise SinkError(f"bad Kafka producer setting: {exc}") from None
        self._topic = settings.topic
        self._send = self._producer.send
        self._failures = 0
        self._first_failure: BaseException | None = None
        self._closed = False

    def _on_error(self, exc: BaseException) -> None:
        self._failures += 1
        if self._first_failure is None:
            self._first_failure = exc
            log.error("delivery to %s failed: %s", self._topic, exc)

    def send(self, key: bytes, value: bytes) -> None:
        """Queue one message (blocks while the producer's buffer is full)."""
        try:
            self._send(self._topic, value=value, key=key).add_errback(self._on_error)
        except KafkaTimeoutError as exc:
            raise SinkError(
                f"Kafka at {self.settings.bootstrap_servers} did not accept messages in time "
                f"(broker down or topic {self._topic!r} unavailable): {exc}"
            ) from None
        except KafkaError as exc:
            raise SinkError(f"cannot send to {self._topic!r}: {error_text(exc)}") from None

    @property
    def failures(self) -> int:
        """Messages whose delivery failed so far."""
        return self._failures

    def flush(self) -> None:
        """Wait for every queued message to be acknowledged.

        Raises
        ------
        SinkError
            A message could not be delivered (the count and the first error are given).
        """
        if self._closed:
            return
        try:
            self._producer.flush()
        except KafkaError as exc:
            raise SinkError(f"flushing to {self._topic!r} failed: {error_text(exc)}") from None
        if self._failures:
            raise SinkError(
                f"{self._failures} message(s) were not delivered to {self._topic!r} on "
                f"{self.settings.bootstrap_servers}; first error: {self._first_failure}"
            )

    def close(self) -> None:
        """Flush and close the producer (raises like :meth:`flush`, but always closes)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._producer.close()
