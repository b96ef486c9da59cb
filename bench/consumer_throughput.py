"""Throughput of segmenter-consumer (exactly-once and at-least-once) next to a bare kafka-python consumer.

All three read the same input topic in the same run: the bare reference only
reads and JSON-decodes; the service decodes, validates, runs the real core,
produces outputs, state and model, and commits. Rates are measured from the
first record seen to the last one committed (service) or decoded (bare), so
process start-up and group joins are excluded. The target is a ratio >= 0.5
for exactly-once.

Usage::

    python -m bench.consumer_throughput --events 20000 [--bootstrap 127.0.0.1:9092] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from kafka import KafkaAdminClient, KafkaProducer

from consumer.__main__ import build_service
from consumer.kafka_io import bare_consume
from consumer.metrics import Health, Metrics
from consumer.settings import load_settings

TYPES = ["session_start", "page_view", "product_view", "add_to_cart", "purchase", "email_open", "email_click"]


def produce_events(bootstrap: str, topic: str, n: int, customers: int, seed: int = 3) -> None:
    """Write ``n`` valid events (event time increasing) to ``topic``."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for i in range(n):
        customer = f"c{rnd.randrange(customers)}"
        etype = rnd.choice(TYPES)
        event: dict[str, object] = {"event_id": f"e{i}", "customer_id": customer, "type": etype,
                                    "ts": (t0 + timedelta(seconds=30 * i)).isoformat()}
        if etype == "purchase":
            event["amount"] = round(rnd.uniform(5, 300), 2)
        producer.send(topic, json.dumps(event).encode(), key=customer.encode())
    producer.flush()
    producer.close()


def run_service(bootstrap: str, topic: str, n: int, guarantee: str, batch_size: int, timeout_s: float,
                run: str = "") -> float:
    """Run the service in a thread until ``n`` records are committed; returns events/s."""
    tag = f"{run}-{guarantee}" if run else uuid.uuid4().hex[:8]
    settings = load_settings([
        "--bootstrap-servers", bootstrap, "--group-id", f"bench-{guarantee}-{tag}", "--topics.input", topic,
        "--topics.output", f"bench-out-{tag}", "--topics.dlq", f"bench-dlq-{tag}", "--guarantee", guarantee,
        "--batch-size", str(batch_size), "--metrics-port", "-1", "--instance-id", "bench"])
    metrics = Metrics()
    service = build_service(settings, metrics, Health())
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    registry = metrics.registry
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            seen = registry.get_sample_value("segmenter_events_in_total") or 0
            if first is None and seen > 0:
                first = time.perf_counter()
            if (registry.get_sample_value("segmenter_batch_records_sum") or 0) >= n:
                assert first is not None
                return n / (time.perf_counter() - first)
            time.sleep(0.01)
        raise TimeoutError(f"{guarantee}: {n} events not committed within {timeout_s}s")
    finally:
        service.stop()
        thread.join(30)


def measure(bootstrap: str, events: int, customers: int, batch_size: int, timeout_s: float
            ) -> tuple[float, float, float]:
    """Bare read+decode, exactly-once and at-least-once rates (events/s) on one fresh input topic.

    Every topic of the run (input; the services' output, DLQ, state and model
    topics) carries one run tag, and only those are deleted afterwards.
    """
    run = uuid.uuid4().hex[:8]
    topic = f"bench-in-{run}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    try:
        produce_events(bootstrap, topic, events, customers)
        count, seconds = bare_consume(bootstrap, topic, events, timeout_s=timeout_s)
        if count < events:
            raise TimeoutError(f"bare consumer read {count} of {events}")
        bare = count / seconds if seconds > 0 else float("inf")
        eos = run_service(bootstrap, topic, events, "exactly-once", batch_size, timeout_s, run)
        alos = run_service(bootstrap, topic, events, "at-least-once", batch_size, timeout_s, run)
    finally:
        admin.delete_topics([t for t in admin.list_topics() if run in t])
        admin.close()
    return bare, eos, alos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="events in the input topic (default 20000)")
    parser.add_argument("--customers", type=int, default=2000, help="distinct customers (default 2000)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--batch-size", type=int, default=500, help="service batch size (default 500)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per run")
    parser.add_argument("--min-ratio", type=float, default=0.0, help="exit 1 if exactly-once/bare is below this")
    args = parser.parse_args(argv)

    bare, eos, alos = measure(args.bootstrap, args.events, args.customers, args.batch_size, args.timeout)
    print(f"events: {args.events}, customers: {args.customers}, batch size: {args.batch_size}")
    print(f"bare kafka-python read + JSON decode : {bare:10.0f} events/s")
    print(f"segmenter-consumer exactly-once      : {eos:10.0f} events/s   ratio {eos / bare:.2f}")
    print(f"segmenter-consumer at-least-once     : {alos:10.0f} events/s   ratio {alos / bare:.2f}")
    print(f"target exactly-once ratio >= 0.5: {'met' if eos / bare >= 0.5 else 'NOT met'}")
    return 1 if eos / bare < args.min_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
