"""The consumer service on the real broker: end to end, dead letters, erasure, two instances in one group."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer

from consumer.metrics import Health, MetricsServer, default_routes
from segmenter.outputs import KINDS
from tests.integration.conftest import read_all
from tests.integration.consumer_support import (
    ConsumerProcess,
    committed_offset,
    make_events,
    metric_value,
    offline_outputs,
    produce,
    service_thread,
    settings_for,
    strip,
    wait_for,
)


def test_end_to_end_outputs_equal_the_offline_core(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(600)
    expected = offline_outputs(events)
    produce(plain_producer, inp, list(events))
    settings = settings_for(bootstrap, group_id, inp, out, dlq, "--batch-size", "100")
    with service_thread(settings) as (_, metrics):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(events), 60, "all offsets committed")
        health_ok, _ = Health().status()  # a fresh Health is not healthy: checks the endpoint logic below
        assert not health_ok
        server = MetricsServer(default_routes(metrics, Health(connected=True)), "127.0.0.1", 0)
        server.start()
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
            health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read())
        finally:
            server.stop()
    records = read_all(bootstrap, out, expect=len(expected))
    assert strip(records) == expected
    for key, value, headers in records:
        data = orjson.loads(value or b"")
        assert headers["kind"] == data["kind"].encode()
        assert key == (data["lens"] if data["kind"] == "segment_lifecycle" else data["customer_id"]).encode()
    assert metric_value(metrics, "segmenter_events_in_total") == len(events)
    assert metric_value(metrics, "segmenter_outputs_total", {"kind": "segment_change"}) == sum(
        1 for e in expected if e["kind"] == "segment_change"
    )
    assert metric_value(metrics, "segmenter_batch_seconds_count") >= 6
    assert "segmenter_segment_size" in body and "segmenter_end_to_end_lag_seconds_bucket" in body
    assert health["status"] == "ok"
    state = read_all(bootstrap, f"{group_id}.state")
    assert {k for k, _, _ in state} == {k for k, _ in events}
    assert read_all(bootstrap, dlq, timeout_s=3) == []
    model = read_all(bootstrap, f"{group_id}.model")
    assert model and all(k is not None and k.startswith(b"0/") for k, _, _ in model)  # <instance id>/<part>
    assert b"0/core" in {k for k, _, _ in model}


def test_dead_letters_and_routing_by_kind(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq, life = (
        new_topic(suffix="in"),
        new_topic(suffix="out"),
        new_topic(suffix="dlq"),
        new_topic(suffix="life"),
    )
    good = make_events(400)
    late = json.dumps(
        {"event_id": "late-1", "customer_id": "c1", "type": "page_view", "ts": "2025-06-01T00:00:00Z"}
    ).encode()
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (b"c1", b"\xff\xfe not utf8", "not_utf8"),
        (b"c2", b"{not json", "not_json"),
        (
            b"c3",
            json.dumps(
                {"event_id": "x", "customer_id": "c3", "type": "purchase", "ts": "2026-01-01T00:00:00Z"}
            ).encode(),
            "schema",
        ),
        (b"c4", b'{"pad": "' + b"x" * 70_000 + b'"}', "too_large"),
        (b"", None, "tombstone_key"),
        (b"c1", late, "late"),
    ]
    produce(plain_producer, inp, list(good))
    produce(plain_producer, inp, [(k, v) for k, v, _ in bad], headers=[("trace", b"t-1")])
    settings = settings_for(bootstrap, group_id, inp, out, dlq, "--topics.segment-lifecycle", life)
    total = len(good) + len(bad)
    with service_thread(settings) as (_, metrics):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == total, 60, "all offsets committed")
    letters = read_all(bootstrap, dlq, expect=len(bad))
    assert [h["error"].decode() for _, _, h in letters] == [code for _, _, code in bad]
    for (key, value, headers), (orig_key, orig_value, _), offset in zip(
        letters, bad, range(len(good), total), strict=True
    ):
        assert key == orig_key and value == orig_value
        assert headers["source_topic"] == inp.encode()
        assert headers["source_partition"] == b"0" and headers["source_offset"] == str(offset).encode()
        assert headers["reason"] and headers["trace"] == b"t-1"
    assert metric_value(metrics, "segmenter_events_rejected_total", {"reason": "late"}) == 1
    assert metric_value(metrics, "segmenter_events_rejected_total", {"reason": "schema"}) == 1
    expected = offline_outputs(good)
    lifecycle = [e for e in expected if e["kind"] == "segment_lifecycle"]
    others = [e for e in expected if e["kind"] != "segment_lifecycle"]
    assert strip(read_all(bootstrap, life, expect=len(lifecycle))) == lifecycle
    assert strip(read_all(bootstrap, out, expect=len(others))) == others


def test_tombstone_and_erasure_request_erase_customers(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(500, customers=10)
    erase_c2 = json.dumps(
        {"event_id": "erase-c2", "customer_id": "c2", "type": "erasure_request", "ts": "2026-01-03T00:00:00Z"}
    ).encode()
    produce(plain_producer, inp, [*events, (b"c1", None), (b"c2", erase_c2)])
    settings = settings_for(bootstrap, group_id, inp, out, dlq)
    with service_thread(settings) as (_, metrics):
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(events) + 2, 60, "offsets committed")
    outputs = strip(read_all(bootstrap, out))
    for customer in ("c1", "c2"):
        final = [o for o in outputs if o.get("customer_id") == customer and o["cause"] == "erasure"]
        assert final, f"no erasure output for {customer}"
        assert all(o["to_segment"] is None for o in final)
        assert o_is_last(outputs, customer)
    state = read_all(bootstrap, f"{group_id}.state")
    last = {k: v for k, v, _ in state}
    assert last[b"c1"] is None and last[b"c2"] is None
    assert last[b"c3"] is not None
    assert metric_value(metrics, "segmenter_erasures_total") == 1


def o_is_last(outputs: list[dict[str, object]], customer: str) -> bool:
    mine = [o for o in outputs if o.get("customer_id") == customer]
    return bool(mine) and mine[-1]["cause"] == "erasure"


def test_two_instances_share_a_group_as_partitions_move(
    bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    plain_producer: KafkaProducer,
    tmp_path: Path,
) -> None:
    inp, out, dlq = new_topic(partitions=4, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    # one minute apart, each third after the previous: a skew between partitions stays within the lateness
    first, second, third = (
        make_events(300, seed=i, step_minutes=1.0, start=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=5 * i))
        for i in range(3)
    )
    args = [
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        group_id,
        "--topics.input",
        inp,
        "--topics.output",
        out,
        "--topics.dlq",
        dlq,
        "--metrics-port",
        "-1",
        "--commit-interval-ms",
        "100",
        "--static-membership",
        "false",
        "--session-timeout-ms",
        "6000",
        "--transaction-timeout-ms",
        "10000",
        "--batch-size",
        "50",
    ]

    def all_committed(n: int) -> bool:
        return sum(committed_offset(bootstrap, group_id, inp, p) for p in range(4)) == n

    produce(plain_producer, inp, list(first))
    a = ConsumerProcess([*args, "--instance-id", "a"], tmp_path / "a.log")
    b: ConsumerProcess | None = None
    try:
        wait_for(lambda: all_committed(300), 60, "first third committed by a")
        b = ConsumerProcess([*args, "--instance-id", "b"], tmp_path / "b.log")
        wait_for(lambda: "restored" in b.log_text(), 60, "b restored its partitions")
        produce(plain_producer, inp, list(second))
        wait_for(lambda: all_committed(600), 60, "second third committed by a and b")
        assert a.terminate() == 0
        produce(plain_producer, inp, list(third))
        wait_for(lambda: all_committed(900), 60, "last third committed by b alone")
        assert b.terminate() == 0
    finally:
        for proc in (a, b):
            if proc is not None and proc.alive():
                proc.kill()
    log_a, log_b = a.log_text(), b.log_text() if b else ""
    assert "released partitions" in log_a and "restored" in log_b
    outputs = strip(read_all(bootstrap, out))
    caused = Counter(
        (o["customer_id"], o["lens"], o["cause_event_id"])
        for o in outputs
        if o["kind"] == "segment_change" and o["cause"] == "event"
    )
    assert caused and max(caused.values()) == 1, "an event caused two segment changes in one lens"
    # every customer's state lives in the partition of its input records
    input_partition = {k: p for k, p in _partitions_of(bootstrap, inp).items()}
    for key, partition in _partitions_of(bootstrap, f"{group_id}.state").items():
        assert input_partition[key] == partition
    assert read_all(bootstrap, dlq, timeout_s=3) == []
    assert set(KINDS) >= {o["kind"] for o in outputs}


def _partitions_of(bootstrap: str, topic: str) -> dict[bytes, int]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    out: dict[bytes, int] = {}
    idle = 0
    try:
        while idle < 6:
            batch = consumer.poll(timeout_ms=500)
            idle = idle + 1 if not batch else 0
            for records in batch.values():
                for r in records:
                    out[r.key] = r.partition
    finally:
        consumer.close()
    return out
