"""A multi-partition backlog read by a fresh consumer group: nothing refused as late (issue 12's scenario).

For each scenario of ``--scenarios`` (``sparse``: long-horizon retail,
:mod:`producer.retail`; ``dense``: the personas simulator), in one run:

reference
    One core fed the whole stream in event-time order, as from one partition
    (``Segmenter.process_batch`` in replay's chunks, the packaged default
    config): the events it accepts, and its refusals by reason.
backlog
    The same events produced to a fresh ``--partitions``-partition topic in
    ``--order`` (:mod:`producer.backlog`; ``partitions``: every event of
    partition 0, then of partition 1, ...; each customer's events stay in
    order), read from the start by a fresh consumer group of the real service
    (exactly-once, default settings) until every record is committed; its
    refusals by reason (``segmenter_events_rejected_total``) and its catch-up
    rate, from the first record seen to the last one committed.

Targets: 0 events refused as ``late`` on the backlog; the backlog accepts what
the single-partition reference accepts (ratio 1). Every topic of a run carries
one run tag and only those are deleted afterwards.

Usage::

    python -m bench.backlog --sparse-customers 20000 --customers 500 --days 10 --partitions 3
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer

from bench.common import Row, SimRun, add_common_args, save_result, setup_logging, simulate, simulate_sparse
from consumer.__main__ import build_service
from consumer.metrics import Health, Metrics
from consumer.settings import load_settings
from producer.backlog import backlog_order
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK

log = logging.getLogger("bench.backlog")

SCENARIOS = ("sparse", "dense")
REASONS = ("late", "future", "schema")
"""Refusal reasons read from the service's metrics (``late`` carries the target)."""


@dataclass(frozen=True)
class Outcome:
    """What one reader accepted and refused."""

    accepted: int
    refused: dict[str, int]
    events_per_s: float | None = None
    """Catch-up rate (the backlog only)."""


def reference(sim: SimRun) -> Outcome:
    """One core over the stream in time order, as from one partition."""
    core = Segmenter(default_config())
    refused: Counter[str] = Counter()
    for i in range(0, len(sim), REPLAY_CHUNK):
        chunk = [parse_event(v) for v in sim.values[i : i + REPLAY_CHUNK]]
        result = core.process_batch(chunk, [0] * len(chunk))
        refused.update(error.reason for _, error in result.errors)
    return Outcome(core.stats().events, dict(refused))


def produce_backlog(bootstrap: str, topic: str, sim: SimRun, order: str, partitions: int) -> None:
    """``sim``'s events to ``topic`` in backlog ``order`` (the default partitioner places each key)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    try:
        for i in backlog_order(sim.keys, order, partitions=partitions, block_customers=1000):  # type: ignore[arg-type]
            producer.send(topic, sim.values[i], key=sim.keys[i])
        producer.flush()
    finally:
        producer.close()


def read_backlog(bootstrap: str, topic: str, events: int, run: str, timeout_s: float) -> Outcome:
    """A fresh group of the real service reads ``topic`` until ``events`` records are committed."""
    settings = load_settings([
        "--bootstrap-servers", bootstrap, "--group-id", f"bench-backlog-{run}", "--topics.input", topic,
        "--topics.output", f"bench-backlog-out-{run}", "--topics.dlq", f"bench-backlog-dlq-{run}",
        "--topics.membership", f"bench-backlog-membership-{run}", "--metrics-port", "-1", "--instance-id", "bench",
    ])  # fmt: skip
    metrics = Metrics()
    service = build_service(settings, metrics, Health())
    thread = threading.Thread(target=service.run, name="service", daemon=True)
    thread.start()
    value = metrics.registry.get_sample_value
    first: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while (value("segmenter_batch_records_sum") or 0) < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{events} backlog records not committed within {timeout_s:.0f} s")
            if first is None and (value("segmenter_events_in_total") or 0) > 0:
                first = time.perf_counter()
            time.sleep(0.01)
        seconds = time.perf_counter() - (first or time.perf_counter())
        refused = {r: int(value("segmenter_events_rejected_total", {"reason": r}) or 0) for r in REASONS}
        accepted = int(value("segmenter_events_in_total") or 0) - sum(refused.values())
    finally:
        service.stop()
        thread.join(30)
    return Outcome(accepted, refused, events / seconds if seconds > 0 else None)


def measure(
    bootstrap: str, scenario: str, sim: SimRun, order: str, partitions: int, timeout_s: float
) -> dict[str, Any]:
    """The reference and the backlog of one scenario, on topics of their own."""
    run = uuid.uuid4().hex[:8]
    topic = f"bench-backlog-in-{run}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
        ref = reference(sim)
        produce_backlog(bootstrap, topic, sim, order, partitions)
        got = read_backlog(bootstrap, topic, len(sim), run, timeout_s)
    finally:
        admin.delete_topics([t for t in admin.list_topics() if run in t])
        admin.close()
    log.info("%s: reference %s, backlog %s", scenario, ref, got)
    return {"events": len(sim), "customers": sim.customers, "reference": asdict(ref), "backlog": asdict(got)}


def backlog_rows(runs: dict[str, dict[str, Any]], partitions: int, order: str) -> list[Row]:
    """Per scenario: events refused as late (target 0), accepted vs the reference (target 1), the rate."""
    sect = f"event time: a {partitions}-partition backlog ({order} order), fresh group"
    rows: list[Row] = []
    for scenario, m in runs.items():
        ref, got = m["reference"], m["backlog"]
        what = f"{scenario} ({m['events']:,} events, {m['customers']:,} customers)"
        late = got["refused"]["late"]
        rows += [
            Row(sect, f"{what}: refused as late", late, "events", "== 0", passed=late == 0,
                note=f"refused by reason {got['refused']}; single-partition reference {ref['refused'] or 'none'}"),
            Row(sect, f"{what}: accepted vs one partition in time order", got["accepted"], "events", "ratio == 1",
                ref["accepted"], got["accepted"] / ref["accepted"] if ref["accepted"] else None,
                got["accepted"] == ref["accepted"]),
            Row(sect, f"{what}: catch-up rate", got["events_per_s"], "events/s",
                note="first record seen to last committed"),
        ]  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--sparse-customers", type=int, default=20_000, help="customers of the sparse scenario")
    parser.add_argument("--sparse-days", type=float, default=548.0, help="days of the sparse scenario")
    parser.add_argument("--customers", type=int, default=500, help="customers of the dense scenario")
    parser.add_argument("--days", type=float, default=10.0, help="days of the dense scenario")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--order", choices=("partitions", "blocks"), default="partitions")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per backlog read")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    runs: dict[str, dict[str, Any]] = {}
    for scenario in args.scenarios:
        sim = (
            simulate_sparse(args.sparse_customers, args.sparse_days, args.seed)
            if scenario == "sparse"
            else simulate(args.customers, args.days, args.seed)
        )
        runs[scenario] = measure(args.bootstrap, scenario, sim, args.order, args.partitions, args.timeout)
    params = {"partitions": args.partitions, "order": args.order, "sparse_customers": args.sparse_customers,
              "sparse_days": args.sparse_days, "customers": args.customers, "days": args.days}  # fmt: skip
    rows = backlog_rows(runs, args.partitions, args.order)
    save_result("backlog", {"params": params, "runs": runs}, rows, args.out)
    for r in rows:
        print(f"{r.metric}: {r.measured}{' ' + r.target if r.target else ''} {'' if r.passed is None else r.passed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
