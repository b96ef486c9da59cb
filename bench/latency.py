"""Event-to-committed-output latency through the real broker, exactly-once, at fixed offered rates.

Set-up: a fresh input topic (one partition), ``segmenter-consumer`` as a
subprocess in exactly-once mode (its default settings unless flags say
otherwise), a paced producer thread and a ``read_committed`` reader thread in
this process. The simulated stream (the producer's simulator) is sent in
phases, one per offered rate; the send time of every event is kept in a side
map by ``event_id``. The reader records when each ``segment_change`` with
``cause_event_id`` becomes visible (its transaction committed) and the latency
is arrival minus send time (one monotonic clock, same process).

Only events that cause a segment change produce a sample (a few per cent of
events); they wait in the same batches (transactions) as every other event,
so their latency stands for the batch's. Before the phases a warm-up (samples
discarded) lets the consumer join its group and the lenses finish their
warm-up. After each phase the script waits until the consumer group's
committed offset covers every event sent (the drain): a consumer that cannot
sustain the rate shows a long drain, a committed rate below the offered one
and latencies that grow with the backlog; the table says so.

Caveat: producer, reader, consumer and broker share this machine's cores; at
high rates the producer thread competes with the reader for the GIL, which
inflates the measured latency a little.

Usage::

    python -m bench.latency --rates 1000 5000 --seconds 15 15
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from bench.common import Row, add_common_args, percentiles, save_result, setup_logging, simulate
from segmenter.config import default_config

log = logging.getLogger("bench.latency")

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATE = 5000.0
TARGET_P99_MS = 250.0
SAMPLES_KEPT = 4000


@dataclass
class Phase:
    """One offered rate and what was measured at it."""

    rate: float
    seconds: float
    events: int = 0
    offered: float = 0.0
    committed_rate: float = 0.0
    drain_s: float = 0.0
    drained: bool = False
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def sustained(self) -> bool:
        """The consumer kept up: everything committed within a second of the last send, at >= 90% of the rate."""
        return self.drained and self.drain_s <= 1.0 and self.committed_rate >= 0.9 * self.offered

    def summary(self) -> dict[str, Any]:
        p = percentiles(self.latencies_ms, (50, 95, 99))
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "events": self.events,
            "offered": self.offered,
            "committed_rate": self.committed_rate,
            "drain_s": self.drain_s,
            "drained": self.drained,
            "sustained": self.sustained,
            "samples": len(self.latencies_ms),
            "max_ms": max(self.latencies_ms) if self.latencies_ms else float("nan"),
            **{k + "_ms": v for k, v in p.items()},
            "latencies_ms": _thin(self.latencies_ms, SAMPLES_KEPT),
        }


def _thin(values: list[float], n: int) -> list[float]:
    if len(values) <= n:
        return [round(v, 3) for v in values]
    step = len(values) / n
    return [round(values[int(i * step)], 3) for i in range(n)]


class Reader(threading.Thread):
    """``read_committed`` reader of the output topic: first arrival time per ``cause_event_id``."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.arrivals: dict[str, float] = {}
        self.records = 0
        self._stop_event = threading.Event()
        self._consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap.split(","),
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )

    def run(self) -> None:
        arrivals = self.arrivals
        try:
            while not self._stop_event.is_set():
                for records in self._consumer.poll(timeout_ms=50).values():
                    now = time.monotonic()
                    for r in records:
                        self.records += 1
                        msg = orjson.loads(r.value)
                        eid = msg.get("cause_event_id")
                        if eid and eid not in arrivals:
                            arrivals[eid] = now
        finally:
            self._consumer.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def _committed(admin: KafkaAdminClient, group: str, topic: str) -> int:
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    except KafkaError:
        return -1
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0)


def _wait_committed(admin: KafkaAdminClient, group: str, topic: str, target: int, timeout_s: float) -> float | None:
    """Seconds until ``target`` offsets are committed (None on timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if _committed(admin, group, topic) >= target:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _send_paced(
    producer: KafkaProducer,
    topic: str,
    keys: Sequence[bytes],
    values: Sequence[bytes],
    ids: Sequence[str],
    rate: float,
    sent: dict[str, float],
) -> float:
    """Send at ``rate`` events/s (recording each send time); returns the seconds it took."""
    t0 = time.monotonic()
    send = producer.send
    for i in range(len(values)):
        due = t0 + i / rate
        now = time.monotonic()
        if due - now > 0.001:
            time.sleep(due - now)
        sent[ids[i]] = time.monotonic()
        send(topic, value=values[i], key=keys[i])
    producer.flush()
    return time.monotonic() - t0


def start_consumer(bootstrap: str, topics: dict[str, str], group: str, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    """``python -m consumer`` in exactly-once mode on the bench topics."""
    cmd = [
        sys.executable,
        "-m",
        "consumer",
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        group,
        "--instance-id",
        "lat",
        "--topics.input",
        topics["input"],
        "--topics.output",
        topics["output"],
        "--topics.dlq",
        topics["dlq"],
        "--guarantee",
        "exactly-once",
        "--metrics-port",
        "-1",
        "--log-level",
        "WARNING",
        *extra,
    ]
    log.info("starting %s", " ".join(cmd))
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def measure(
    bootstrap: str,
    rates: Sequence[float],
    seconds: Sequence[float],
    *,
    customers: int,
    seed: int,
    warmup_events: int,
    consumer_args: Sequence[str],
    drain_timeout: float,
) -> dict[str, Any]:
    """Run the phases; returns the JSON-ready results."""
    phases = [Phase(r, s) for r, s in zip(rates, seconds, strict=True)]
    total = warmup_events + sum(int(p.rate * p.seconds) for p in phases)
    days = max(2.0, total / (customers * 8.0) * 1.3)
    sim = simulate(customers, days, seed, max_events=total)
    if len(sim) < total:
        raise RuntimeError(f"simulation gave {len(sim)} events, {total} needed; raise --customers")
    ids = [orjson.loads(v)["event_id"] for v in sim.values]
    tag = uuid.uuid4().hex[:8]
    group = f"bench-lat-{tag}"
    topics = {"input": f"bench-lat-in-{tag}", "output": f"bench-lat-out-{tag}", "dlq": f"bench-lat-dlq-{tag}"}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topics["input"], 1, 1), NewTopic(topics["output"], 1, 1)])
    proc = start_consumer(bootstrap, topics, group, consumer_args)
    reader = Reader(bootstrap, topics["output"])
    reader.start()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=64 * 1024)
    sent: dict[str, float] = {}
    pos = 0
    try:
        # warm-up: group join, lens warm-up; its samples are discarded
        _send_paced(
            producer,
            topics["input"],
            sim.keys[:warmup_events],
            sim.values[:warmup_events],
            ids[:warmup_events],
            max(rates[0], 500.0),
            {},
        )
        pos = warmup_events
        if _wait_committed(admin, group, topics["input"], pos, 120.0) is None:
            died = proc.poll() is not None and proc.stderr is not None
            detail = proc.stderr.read()[-4000:].decode(errors="replace") if died and proc.stderr else "still running"
            raise RuntimeError(f"the consumer did not commit the warm-up events within 120 s: {detail}")
        for ph in phases:
            n = int(ph.rate * ph.seconds)
            sl = slice(pos, pos + n)
            t_start = time.monotonic()
            took = _send_paced(producer, topics["input"], sim.keys[sl], sim.values[sl], ids[sl], ph.rate, sent)
            pos += n
            drain = _wait_committed(admin, group, topics["input"], pos, drain_timeout)
            ph.events, ph.offered = n, n / took
            ph.drained = drain is not None
            ph.drain_s = drain if drain is not None else drain_timeout
            ph.committed_rate = n / (time.monotonic() - t_start)
            time.sleep(0.3)  # the reader's last fetch
            ph.latencies_ms = [1000.0 * (reader.arrivals[e] - sent[e]) for e in ids[sl] if e in reader.arrivals]
            log.info(
                "rate %.0f/s: offered %.0f/s, committed %.0f/s, drain %.2f s, %d samples, p50/p99 %s",
                ph.rate,
                ph.offered,
                ph.committed_rate,
                ph.drain_s,
                len(ph.latencies_ms),
                {k: round(v, 1) for k, v in percentiles(ph.latencies_ms, (50, 99)).items()},
            )
            if not ph.drained:
                log.warning(
                    "rate %.0f/s: backlog not drained within %.0f s; later phases skipped", ph.rate, drain_timeout
                )
                break
    finally:
        producer.close()
        reader.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        with contextlib.suppress(KafkaError):
            existing = set(admin.list_topics())
            admin.delete_topics([t for t in [*topics.values(), f"{group}.state", f"{group}.model"] if t in existing])
        admin.close()
    return {
        "params": {
            "rates": list(rates),
            "seconds": list(seconds),
            "customers": customers,
            "warmup_events": warmup_events,
            "consumer_args": list(consumer_args),
            "output_records": reader.records,
        },
        "phases": [p.summary() for p in phases if p.events],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        default=[1000.0, 5000.0, 20000.0],
        help="offered rates, events/s (default 1000 5000 20000)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        nargs="+",
        default=None,
        help="seconds per rate (default 15 each, 5 for rates above 10k/s)",
    )
    parser.add_argument("--customers", type=int, default=5000, help="simulated customers (default %(default)s)")
    parser.add_argument("--warmup-events", type=int, default=3000, help="events before the first phase")
    parser.add_argument("--drain-timeout", type=float, default=90.0, help="seconds allowed to drain a phase")
    parser.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument(
        "--consumer-arg",
        action="append",
        default=[],
        help="extra segmenter-consumer flag (repeatable), e.g. --consumer-arg=--batch-size=200",
    )
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    seconds = args.seconds or [15.0 if r <= 10_000 else 5.0 for r in args.rates]
    if len(seconds) != len(args.rates):
        parser.error("--seconds needs one value per rate")
    lens_warmup = max(lens.warmup for lens in default_config().lenses)
    if args.warmup_events <= lens_warmup and not any("--config-file" in a for a in args.consumer_arg):
        parser.error(
            f"--warmup-events must exceed the default lenses' warm-up ({lens_warmup} observations): "
            "before it no event causes a segment change, so none gives a latency sample"
        )
    data = measure(
        args.bootstrap,
        args.rates,
        seconds,
        customers=args.customers,
        seed=args.seed,
        warmup_events=args.warmup_events,
        consumer_args=args.consumer_arg,
        drain_timeout=args.drain_timeout,
    )
    rows: list[Row] = []
    sect = "latency: event -> committed output (exactly-once)"
    for ph in data["phases"]:
        note = (
            "sustained"
            if ph["sustained"]
            else (f"NOT sustained: committed {ph['committed_rate']:.0f}/s, drain {ph['drain_s']:.1f} s")
        )
        for q in ("p50", "p95", "p99"):
            target = f"<= {TARGET_P99_MS:g} ms" if q == "p99" and ph["rate"] == TARGET_RATE else ""
            passed = (ph[f"{q}_ms"] <= TARGET_P99_MS and ph["sustained"]) if target else None
            rows.append(
                Row(
                    sect,
                    f"{ph['rate']:.0f}/s offered: {q}",
                    ph[f"{q}_ms"],
                    "ms",
                    target,
                    passed=passed,
                    note=note if q == "p99" else f"{ph['samples']} samples, offered {ph['offered']:.0f}/s",
                )
            )
    save_result("latency", data, rows, args.out)
    for ph in data["phases"]:
        print(
            f"{ph['rate']:>8.0f}/s offered {ph['offered']:>8.0f}/s committed {ph['committed_rate']:>8.0f}/s "
            f"drain {ph['drain_s']:5.2f}s samples {ph['samples']:>6} p50 {ph['p50_ms']:7.1f} ms "
            f"p95 {ph['p95_ms']:7.1f} ms p99 {ph['p99_ms']:7.1f} ms {'' if ph['sustained'] else 'NOT sustained'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
