"""Compressed record batches on the real broker: every codec a producer or the broker may choose is read.

A batch's codec is its producer's ``compression.type`` (Java and librdkafka clients often use lz4, zstd or
snappy), or the broker's when a topic sets one. kafka-python decompresses lz4, zstd and snappy only with
their packages; without them the first such batch failed every poll and the service reconnected forever,
reading nothing (``consumer.kafka_io.require_codecs``).
"""

from __future__ import annotations

from collections.abc import Callable

from kafka import KafkaProducer

from tests.integration.conftest import read_all
from tests.integration.consumer_support import (
    committed_offset,
    make_events,
    offline_outputs,
    produce,
    service_thread,
    settings_for,
    strip,
    wait_for,
)

CODECS = ("gzip", "lz4", "zstd", "snappy")


def test_batches_of_every_codec_in_one_topic_are_read_in_order(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(240)
    part = len(events) // len(CODECS)
    for i, codec in enumerate(CODECS):  # one producer per codec: the topic keeps each producer's batches as sent
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec)
        try:
            produce(producer, inp, list(events[i * part : (i + 1) * part]))
        finally:
            producer.close()
    with service_thread(settings_for(bootstrap, group_id, inp, out, dlq)):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(events), 90, "every offset committed")
    expected = offline_outputs(events)
    assert strip(read_all(bootstrap, out, expect=len(expected))) == expected
    assert read_all(bootstrap, dlq, timeout_s=5.0) == []


def test_a_topic_the_broker_compresses_with_zstd_is_read(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp = new_topic(suffix="in", config={"compression.type": "zstd"})  # the broker recompresses what it is sent
    out, dlq = new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(120, seed=11)
    produce(plain_producer, inp, list(events))
    with service_thread(settings_for(bootstrap, group_id, inp, out, dlq)):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(events), 90, "every offset committed")
    expected = offline_outputs(events)
    assert strip(read_all(bootstrap, out, expect=len(expected))) == expected
