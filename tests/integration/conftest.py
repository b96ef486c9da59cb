"""Fixtures for integration tests on the real local broker.

The broker is the one ``scripts/kafka-local start`` runs (``make test`` starts
it). Each test gets its own topics and consumer group (as faust-streaming's
broker tests do), created through the admin client, so tests never see each
other's records.

When the broker cannot be reached, integration tests are skipped on a
developer's machine but **fail** when ``CI`` is set: CI never passes silently
without Kafka.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

BOOTSTRAP = os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The broker's bootstrap address, checked with a real metadata request."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=5000)
        admin.list_topics()
        admin.close()
    except (KafkaConnectionError, KafkaTimeoutError, OSError) as exc:
        message = f"Kafka at {BOOTSTRAP} is unreachable ({exc!r}); run `scripts/kafka-local start` or `make test`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return BOOTSTRAP


@pytest.fixture
def admin(bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    yield client
    client.close()


@pytest.fixture
def new_topic(admin: KafkaAdminClient, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic(partitions=1, config={...}, suffix="in")`` creates a unique topic and returns its name.

    Topics are deleted when the test ends.
    """
    created: list[str] = []
    base = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:60]

    def make(partitions: int = 1, config: dict[str, str] | None = None, suffix: str = "") -> str:
        name = f"t-{base}-{suffix}-{uuid.uuid4().hex[:8]}".replace("--", "-")
        admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config or {})])
        created.append(name)
        return name

    yield make
    if created:
        with contextlib.suppress(KafkaError):
            admin.delete_topics(created)


@pytest.fixture
def group_id(request: pytest.FixtureRequest) -> str:
    """A consumer group id no other test uses."""
    return f"g-{request.node.name[:60]}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def plain_producer(bootstrap: str) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    yield producer
    producer.close()


def read_all(
    bootstrap: str, topic: str, *, expect: int | None = None, timeout_s: float = 20.0, isolation: str = "read_committed"
) -> list[tuple[bytes | None, bytes | None, dict[str, bytes]]]:
    """Read every record of ``topic`` from the beginning as (key, value, headers).

    Stops after ``expect`` records, or when nothing arrives for a while, or at ``timeout_s``.
    """
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
        group_id=None,
    )
    out: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
    deadline = time.monotonic() + timeout_s
    idle_polls = 0
    try:
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            records = [r for rs in batch.values() for r in rs]
            for r in records:
                out.append((r.key, r.value, {k: v for k, v in (r.headers or [])}))
            if expect is not None and len(out) >= expect:
                break
            idle_polls = idle_polls + 1 if not records else 0
            if expect is None and idle_polls >= 6 and consumer.assignment():
                break
    finally:
        consumer.close()
    return out
