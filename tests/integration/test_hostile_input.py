"""Hostile input on the real broker: no record stops a partition."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
from tests.unit.test_hostile_input import EXPECTED

CORPUS = Path(__file__).parents[1] / "unit" / "data" / "hostile_events"


def test_the_overflowing_timestamp_and_every_reproduction_are_dead_lettered_and_the_partition_goes_on(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    good = make_events(300)
    names = ["ts_overflow.json", *sorted(set(EXPECTED) - {"ts_overflow.json"})]
    hostile = [(b"c1", (CORPUS / name).read_bytes()) for name in names]
    produce(plain_producer, inp, list(good[:100]))
    produce(plain_producer, inp, list(hostile))
    produce(plain_producer, inp, list(good[100:]))
    total = len(good) + len(hostile)
    with service_thread(settings_for(bootstrap, group_id, inp, out, dlq)):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == total, 90, "every offset committed")
    letters = read_all(bootstrap, dlq, expect=len(hostile))
    assert [h["error"].decode() for _, _, h in letters] == [EXPECTED[name][0] for name in names]
    assert [h["source_offset"] for _, _, h in letters] == [str(100 + i).encode() for i in range(len(hostile))]
    assert [value for _, value, _ in letters] == [value for _, value in hostile]
    assert b"ts:" in letters[0][2]["reason"]
    expected = offline_outputs(good)
    assert strip(read_all(bootstrap, out, expect=len(expected))) == expected


def test_a_record_larger_than_a_dead_letter_can_be_is_dead_lettered_cut_and_the_partition_goes_on(
    bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    inp = new_topic(suffix="in", config={"max.message.bytes": str(8 * 1024 * 1024)})  # the input allows 8 MiB
    out, dlq = new_topic(suffix="out"), new_topic(suffix="dlq")  # the dead-letter topic, the broker's 1 MiB
    good = make_events(60)
    big = b'{"event_id":"big","customer_id":"c1","type":"page_view","ts":"2026-01-01T00:00:00Z","properties":{"p":"'
    big += b"a" * (3 * 1024 * 1024) + b'"}}'
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 1024 * 1024)
    try:
        produce(producer, inp, [*good[:30], (b"c1", big), *good[30:]])
    finally:
        producer.close()
    with service_thread(settings_for(bootstrap, group_id, inp, out, dlq)):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(good) + 1, 90, "every offset committed")
    [(key, value, headers)] = read_all(bootstrap, dlq, expect=1)
    assert (key, headers["error"], headers["source_offset"]) == (b"c1", b"too_large", b"30")
    assert value is not None and big.startswith(value) and len(value) < len(big)
    assert headers["truncated"] == f"value {len(big)} -> {len(value)}".encode()
    expected = offline_outputs(good)
    assert strip(read_all(bootstrap, out, expect=len(expected))) == expected
