"""Throughput of segmenter-consumer (exactly-once and at-least-once) next to two bare kafka-python references.

All four read the same input topic in the same run:

* **bare read**: a kafka-python consumer that only reads and JSON-decodes
  (the reference of the target: exactly-once service >= 0.5 x bare read);
* **bare exactly-once pass-through**: a kafka-python consumer and transactional
  producer that read, JSON-decode and, in one transaction per poll batch,
  produce one record per input event to an output topic, then
  ``send_offsets_to_transaction`` and ``commit_transaction``. It is the least an
  exactly-once kafka-python service that writes per-event state must pay, so
  ``bare EOS / bare read`` shows what kafka-python itself allows;
* the service, exactly-once and at-least-once: decodes, validates, runs the
  real core, produces outputs, state and model, and commits.

Rates are measured from the first record seen to the last one committed
(service, bare EOS) or decoded (bare read), so process start-up and group joins
are excluded.

Usage::

    python -m bench.consumer_throughput --events 30000 [--bootstrap 127.0.0.1:9092] [--batch-size N]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from bench.bare_kafka import bare_consume
from consumer.__main__ import build_service
from consumer.metrics import Health, Metrics
from consumer.settings import Settings, load_settings
from segmenter.gc_tuning import tune_gc

TYPES = ["session_start", "page_view", "product_view", "add_to_cart", "purchase", "email_open", "email_click"]


def produce_events(bootstrap: str, topic: str, n: int, customers: int, seed: int = 3) -> None:
    """Write ``n`` valid events (event time increasing) to ``topic``."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for i in range(n):
        customer = f"c{rnd.randrange(customers)}"
        etype = rnd.choice(TYPES)
        event: dict[str, object] = {
            "event_id": f"e{i}",
            "customer_id": customer,
            "type": etype,
            "ts": (t0 + timedelta(seconds=30 * i)).isoformat(),
        }
        if etype == "purchase":
            event["amount"] = round(rnd.uniform(5, 300), 2)
        producer.send(topic, json.dumps(event).encode(), key=customer.encode())
    producer.flush()
    producer.close()


DEFAULT_BATCH_SIZE: int = Settings.model_fields["batch_size"].default
"""The service's default batch size (the most records in one transaction)."""


def bare_eos_passthrough(
    bootstrap: str,
    topic: str,
    out_topic: str,
    expect: int,
    max_poll_records: int,
    timeout_s: float = 120.0,
    run: str = "",
) -> tuple[int, float]:
    """Reference: exactly-once pass-through with bare kafka-python; returns (records committed, seconds).

    Reads ``topic`` (``read_committed``), JSON-decodes each record and, in one
    transaction per poll batch, produces one record per input record to
    ``out_topic`` (same key, the input bytes as value: one per-event write, no
    extra encoding) on the input record's partition number (co-partitioned like
    a state changelog, which also spares kafka-python's pure-Python key hash),
    sends the batch's offsets to the transaction with the consumer's group
    metadata and commits. The producer keeps kafka-python's defaults apart from
    what transactions need. Measured from the first record received to the
    last commit.
    """
    tag = run or uuid.uuid4().hex[:8]
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-bare-eos-{tag}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=max_poll_records,
    )
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        transactional_id=f"bench-bare-eos-{tag}",
        acks="all",
        enable_idempotence=True,
    )
    count = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        producer.init_transactions()
        while count < expect and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
            producer.begin_transaction()
            offsets = {}
            for tp, records in batch.items():
                for r in records:
                    orjson.loads(r.value)
                    producer.send(out_topic, value=r.value, key=r.key, partition=tp.partition)
                offsets[TopicPartition(tp.topic, tp.partition)] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
                count += len(records)
            producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
            producer.commit_transaction()
    finally:
        consumer.close()
        producer.close()
    return count, (time.perf_counter() - started) if started is not None else 0.0


def run_service(
    bootstrap: str, topic: str, n: int, guarantee: str, batch_size: int | None, timeout_s: float, run: str = ""
) -> float:
    """Run the service in a thread until ``n`` records are committed; returns events/s.

    ``batch_size`` None keeps the service's default.
    """
    tag = f"{run}-{guarantee}" if run else uuid.uuid4().hex[:8]
    settings = load_settings(
        [
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            f"bench-{guarantee}-{tag}",
            "--topics.input",
            topic,
            "--topics.output",
            f"bench-out-{tag}",
            "--topics.dlq",
            f"bench-dlq-{tag}",
            "--guarantee",
            guarantee,
            *(["--batch-size", str(batch_size)] if batch_size is not None else []),
            "--metrics-port",
            "-1",
            "--instance-id",
            "bench",
        ]
    )
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


@dataclass(frozen=True)
class Rates:
    """Events/s of each reader in one run (``bare_eos`` is None when not measured)."""

    bare: float
    bare_eos: float | None
    exactly_once: float
    at_least_once: float


def measure_rates(
    bootstrap: str,
    events: int,
    customers: int,
    batch_size: int | None,
    timeout_s: float,
    *,
    bare_eos: bool = True,
    bare_eos_batch: int | None = None,
) -> Rates:
    """Bare read+decode, bare exactly-once pass-through, service exactly-once and at-least-once rates.

    All on one fresh input topic. ``bare_eos_batch`` is the pass-through's
    ``max_poll_records`` (one transaction per poll); default: the service's batch
    size. Every topic of the run (input; the services' output, DLQ, state and
    model topics; the pass-through's output) carries one run tag, and only those
    are deleted afterwards.
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
        eos_ref: float | None = None
        if bare_eos:
            out = f"bench-bare-out-{run}"
            admin.create_topics({out: {"num_partitions": 1, "replication_factor": 1}})
            count, seconds = bare_eos_passthrough(
                bootstrap, topic, out, events, bare_eos_batch or batch_size or DEFAULT_BATCH_SIZE, timeout_s, run
            )
            if count < events:
                raise TimeoutError(f"bare exactly-once pass-through committed {count} of {events}")
            eos_ref = count / seconds if seconds > 0 else float("inf")
        eos = run_service(bootstrap, topic, events, "exactly-once", batch_size, timeout_s, run)
        alos = run_service(bootstrap, topic, events, "at-least-once", batch_size, timeout_s, run)
    finally:
        admin.delete_topics([t for t in admin.list_topics() if run in t])
        admin.close()
    return Rates(bare, eos_ref, eos, alos)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000, help="events in the input topic (default 20000)")
    parser.add_argument("--customers", type=int, default=2000, help="distinct customers (default 2000)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"service batch size (default: the service's, {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--bare-eos-batch",
        type=int,
        default=None,
        help="records per transaction of the bare exactly-once pass-through (its max_poll_records; "
        "default: the service's batch size)",
    )
    parser.add_argument("--no-bare-eos", action="store_true", help="skip the bare exactly-once pass-through")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per run")
    parser.add_argument("--min-ratio", type=float, default=0.0, help="exit 1 if exactly-once/bare is below this")
    args = parser.parse_args(argv)
    tune_gc()  # as segmenter-consumer does (process-wide: the references run with it too)

    r = measure_rates(
        args.bootstrap,
        args.events,
        args.customers,
        args.batch_size,
        args.timeout,
        bare_eos=not args.no_bare_eos,
        bare_eos_batch=args.bare_eos_batch,
    )
    batch = args.batch_size or DEFAULT_BATCH_SIZE
    print(f"events: {args.events}, customers: {args.customers}, service batch size: {batch}")
    print(f"bare kafka-python read + JSON decode        : {r.bare:10.0f} events/s")
    if r.bare_eos is not None:
        print(
            f"bare kafka-python exactly-once pass-through : {r.bare_eos:10.0f} events/s   "
            f"ratio to bare read {r.bare_eos / r.bare:.2f}   "
            f"(1 record/event, {args.bare_eos_batch or batch} records/transaction)"
        )
    for name, rate in (("exactly-once ", r.exactly_once), ("at-least-once", r.at_least_once)):
        extra = f"   ratio to bare EOS {rate / r.bare_eos:.2f}" if r.bare_eos is not None else ""
        print(f"segmenter-consumer {name}            : {rate:10.0f} events/s   ratio {rate / r.bare:.2f}{extra}")
    ratio = r.exactly_once / r.bare
    print(f"target exactly-once ratio >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'}")
    return 1 if ratio < args.min_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
