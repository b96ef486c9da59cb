"""The bare kafka-python read reference of the benchmarks: read and JSON-decode, nothing else."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaConsumer


def bare_consume(bootstrap: str, topic: str, expect: int, timeout_s: float = 120.0) -> tuple[int, float]:
    """Reference consumer for the benchmark: read and JSON-decode ``expect`` records; returns (count, seconds).

    Measured from the first record received, like the service's throughput.
    """
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap.split(","),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=500,
    )
    count = 0
    started: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while count < expect and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                if started is None:
                    started = time.perf_counter()
                for r in records:
                    orjson.loads(r.value)
                    count += 1
    finally:
        consumer.close()
    return count, (time.perf_counter() - started) if started is not None else 0.0
