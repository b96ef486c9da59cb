"""Producer throughput: simulated events per second to a file, to Kafka, and bare kafka-python as the reference.

Usage::

    .venv/bin/python bench/producer_throughput.py --events 200000
    .venv/bin/python bench/producer_throughput.py --events 2000 --no-kafka   # file only

Measures, in one run and on the same events:

* ``generate``   simulator + orjson encoding, messages dropped (no I/O);
* ``file``       ``segmenter-producer synth`` path to a JSONL file;
* ``kafka``      ``segmenter-producer synth`` path to Kafka (idempotent, acks=all, linger);
* ``bare``       plain ``KafkaProducer.send`` of the same pre-encoded messages with the same
                 producer settings, then ``flush`` (the ceiling for this client on this machine).

The ratio kafka / bare says how much the simulator costs on top of the client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from producer.kafka_sink import KafkaSettings, KafkaSink
from producer.runner import RunOptions, run
from producer.simulator import SimConfig, Simulator, encoded
from producer.sinks import JsonlSink, MemorySink, Sink
from segmenter.connection import ConnectionSettings


def _config(args: argparse.Namespace) -> SimConfig:
    return SimConfig(customers=args.customers, days=3650, seed=args.seed)


class _NullSink(Sink):
    """Counts messages and drops them: measures generation and encoding alone."""

    def __init__(self) -> None:
        self.count = 0

    def send(self, key: bytes, value: bytes) -> None:
        self.count += 1


def bench_generate(args: argparse.Namespace) -> float:
    return run(encoded(Simulator(_config(args))), _NullSink(), RunOptions(max_events=args.events)).rate


def pre_encoded(args: argparse.Namespace) -> list[tuple[bytes, bytes]]:
    sink = MemorySink()
    run(encoded(Simulator(_config(args))), sink, RunOptions(max_events=args.events))
    return sink.messages


def bench_file(args: argparse.Namespace) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        with JsonlSink(Path(tmp) / "events.jsonl") as sink:
            stats = run(encoded(Simulator(_config(args))), sink, RunOptions(max_events=args.events))
        return stats.rate


def bench_kafka(args: argparse.Namespace, topic: str) -> float:
    settings = KafkaSettings(
        ConnectionSettings(bootstrap_servers=args.bootstrap_servers),
        topic=topic,
        partitions=args.partitions,
        linger_ms=args.linger_ms,
    )
    with KafkaSink(settings) as sink:
        stats = run(encoded(Simulator(_config(args))), sink, RunOptions(max_events=args.events))
    return stats.rate


def bench_bare(args: argparse.Namespace, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_servers)
    admin.create_topics([NewTopic(topic, args.partitions, 1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        linger_ms=args.linger_ms,
        batch_size=256 * 1024,
    )
    producer.send(topic, b"warm-up", key=b"w").get(timeout=30)
    started = time.perf_counter()
    send = producer.send
    for key, value in messages:
        send(topic, value=value, key=key)
    producer.flush()
    elapsed = time.perf_counter() - started
    producer.close()
    return len(messages) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per measurement (default %(default)s)")
    parser.add_argument("--customers", type=int, default=5000, help="simulated customers (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--bootstrap-servers", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--linger-ms", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs of each (default 1)")
    parser.add_argument("--no-kafka", action="store_true", help="measure generation and file output only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = max(best.get(name, 0.0), value)

    messages = pre_encoded(args) if not args.no_kafka else []
    suffix = uuid.uuid4().hex[:8]
    topics: list[str] = []
    try:
        for attempt in range(args.repeat):
            keep("file_events_per_s", bench_file(args))
            keep("generate_events_per_s", bench_generate(args))
            if not args.no_kafka:
                ours, bare = f"producer-bench-{suffix}-{attempt}", f"producer-bench-bare-{suffix}-{attempt}"
                topics += [ours, bare]
                keep("kafka_events_per_s", bench_kafka(args, ours))
                keep("bare_kafka_python_per_s", bench_bare(args, bare, messages))
    finally:
        if topics:
            admin = KafkaAdminClient(bootstrap_servers=args.bootstrap_servers)
            try:
                existing = set(admin.list_topics())
                admin.delete_topics([t for t in topics if t in existing])
            finally:
                admin.close()
    results = dict(best)
    if not args.no_kafka:
        results["kafka_vs_bare_ratio"] = results["kafka_events_per_s"] / results["bare_kafka_python_per_s"]

    print(f"producer throughput, {args.events:,} events, {args.customers:,} customers, best of {args.repeat}")
    for name, value in results.items():
        text = f"{value:.2f}" if name.endswith("ratio") else f"{value:,.0f}"
        print(f"  {name:<26} {text:>12}")
    if args.json is not None:
        args.json.write_text(json.dumps({"events": args.events, "repeat": args.repeat, **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
