"""An input topic given more partitions: the consumer stops with the reason and what to do, not a crash.

A customer's state lives in the state partition of its input partition, and a new partition count sends
its key elsewhere, so the state cannot follow (Kafka Streams refuses this too). Before, the running
consumer died on a ``KeyError`` inside kafka-python while restoring a state partition that does not
exist, and a restart was told to recreate the state topic, which drops every customer's state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewPartitions

from consumer.__main__ import build_service
from consumer.errors import TopicSetupError
from consumer.metrics import Health, Metrics
from consumer.service import Service
from consumer.topics import GREW
from segmenter.pipeline import Segmenter
from tests.integration.consumer_support import (
    committed_offset,
    make_events,
    produce,
    service_thread,
    settings_for,
    wait_for,
)


def test_a_grown_input_topic_stops_the_consumer_with_what_to_do(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer,
    admin: KafkaAdminClient,
) -> None:  # fmt: skip
    inp, out, dlq = new_topic(partitions=2, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(100, customers=20)
    produce(plain_producer, inp, list(events))
    settings = settings_for(bootstrap, group_id, inp, out, dlq)
    service = build_service(settings, Metrics(), Health())
    failures: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run(service, failures), name="service", daemon=True)
    thread.start()
    try:
        wait_for(lambda: _committed(bootstrap, group_id, inp) == len(events), 60, "the backlog committed")
        admin.create_partitions({inp: NewPartitions(4)})
        wait_for(lambda: not thread.is_alive(), 90, "the consumer to stop on the new partitions")
    finally:
        service.stop()
        thread.join(30)
    [failure] = failures
    assert isinstance(failure, TopicSetupError)
    assert "has 2 partitions: no partition 2, 3" in str(failure) and GREW in str(failure)
    assert _committed(bootstrap, group_id, inp) == len(events)  # what was committed stays
    with pytest.raises(TopicSetupError) as restarted, service_thread(settings):
        pass
    assert "has 2 partitions but input topic" in str(restarted.value) and GREW in str(restarted.value)


def _run(service: Service[Segmenter], failures: list[BaseException]) -> None:
    try:
        service.run()
    except BaseException as exc:
        failures.append(exc)


def _committed(bootstrap: str, group: str, topic: str) -> int:
    return sum(committed_offset(bootstrap, group, topic, p) for p in range(2))
