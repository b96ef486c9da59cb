"""Scale-out throughput and trainer failover of ``segmenter-consumer --mode shared`` on the local broker.

For 1, 2 and 3 processes (one consumer group, a six-partition input) it
measures the committed input rate from the first committed offset to the last
(exactly-once, default batch settings), plus the single-mode process as the
reference; then it SIGKILLs the trainer of a two-process group and measures the
time until the successor's first snapshot appears on the model topic.

Run: ``python -m bench.scale_out --events 30000`` (prints a small table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 6
TYPES = [
    "session_start",
    "page_view",
    "product_view",
    "add_to_cart",
    "purchase",
    "email_open",
    "email_click",
    "product_view",
    "session_start",
    "purchase",
]


def events(n: int, customers: int, seed: int, start_minute: int = 0) -> list[tuple[bytes, bytes]]:
    """``n`` valid events as (key, value), event time increasing by 30 s."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        c = f"c{rnd.randrange(customers)}"
        etype = rnd.choice(TYPES)
        body: dict[str, object] = {
            "event_id": f"{seed}-{i}",
            "customer_id": c,
            "type": etype,
            "ts": (t0 + timedelta(seconds=30 * (i + start_minute * 2))).isoformat(),
        }
        if etype == "purchase":
            body["amount"] = round(rnd.uniform(5, 400), 2)
        out.append((c.encode(), json.dumps(body).encode()))
    return out


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    finally:
        consumer.close()


def start(bootstrap: str, group: str, inp: str, instance: str, mode: str, logdir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMENTER_")}
    log = open(logdir / f"{group}-{instance}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "consumer",
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            group,
            "--topics.input",
            inp,
            "--topics.output",
            f"{inp}-out",
            "--topics.dlq",
            f"{inp}-dlq",
            "--metrics-port",
            "-1",
            "--mode",
            mode,
            "--instance-id",
            instance,
            "--session-timeout-ms",
            "6000",
            "--transaction-timeout-ms",
            "10000",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_group(bootstrap: str, inp: str, total: int, n: int, mode: str, logdir: Path) -> float:
    """Events per second committed by ``n`` processes over the whole topic."""
    group = f"bench-{mode}-{n}-{uuid.uuid4().hex[:6]}"
    procs = [start(bootstrap, group, inp, str(i), mode, logdir) for i in range(n)]
    logs = [logdir / f"{group}-{i}.log" for i in range(n)]
    try:
        t0: float | None = None
        c0 = 0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            c = committed(bootstrap, group, inp)
            # measure once every process owns partitions (the joins' rebalances are not counted)
            if t0 is None and c > 0 and all("restored" in p.read_text(errors="replace") for p in logs):
                t0, c0 = time.monotonic(), c
            if c >= total:
                assert t0 is not None
                rate = (total - c0) / max(1e-9, time.monotonic() - t0)
                print(f"    ({mode} x{n}: {total - c0} events measured after every process joined)", flush=True)
                return rate
            time.sleep(0.2)
        raise RuntimeError(f"{n} {mode} processes did not finish")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)


def _trainer(logdir: Path, group: str, names: list[str]) -> str | None:
    """The process whose log says last that it is the trainer (``None`` if none says so)."""
    trainer = None
    for name in names:
        text = (logdir / f"{group}-{name}.log").read_text(errors="replace")
        if text.rfind("is the trainer now") > text.rfind("no longer the trainer"):
            trainer = name
    return trainer


def _successor_snapshot_s(model: KafkaConsumer, trainer: str, killed: float, timeout_s: float) -> float:
    """Seconds from ``killed`` to the first trainer snapshot on ``model`` from an instance other than ``trainer``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for records in model.poll(timeout_ms=200).values():
            for r in records:
                instance = dict(r.headers or []).get("instance", b"").decode()
                if r.key == b"trainer" and instance != trainer:
                    return float(r.timestamp) / 1000 - killed
    raise RuntimeError("no successor snapshot")


def trainer_failover(bootstrap: str, inp: str, producer: KafkaProducer, customers: int, logdir: Path) -> float:
    """Seconds from SIGKILL of the trainer to its successor's first committed snapshot."""
    group = f"bench-failover-{uuid.uuid4().hex[:6]}"
    procs = {str(i): start(bootstrap, group, inp, str(i), "shared", logdir) for i in range(2)}
    model = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        trainer: str | None = None
        deadline = time.monotonic() + 120
        while trainer is None and time.monotonic() < deadline:
            trainer = _trainer(logdir, group, list(procs))
            time.sleep(0.5)
        assert trainer is not None, "no trainer"
        time.sleep(8)  # both processes joined; the trainer group settled
        trainer = _trainer(logdir, group, list(procs)) or trainer
        tp = TopicPartition(f"{group}.model", 0)
        model.assign([tp])
        model.seek_to_end(tp)
        model.position(tp)
        procs[trainer].send_signal(signal.SIGKILL)
        killed = time.time()
        for key, value in events(3000, customers, seed=99, start_minute=10**6):
            producer.send(inp, value, key=key)
        producer.flush()
        return _successor_snapshot_s(model, trainer, killed, 120)
    finally:
        model.close()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--customers", type=int, default=3000)
    args = parser.parse_args()
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    inp = f"bench-scale-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(inp, PARTITIONS, 1)])
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    for key, value in events(args.events, args.customers, seed=1):
        producer.send(inp, value, key=key)
    producer.flush()
    logdir = Path(tempfile.mkdtemp(prefix="scale-out-"))
    print(
        f"{args.events} events, {args.customers} customers, {PARTITIONS} partitions, {os.cpu_count()} CPUs; "
        f"logs in {logdir}"
    )
    rates = {"single x1": run_group(args.bootstrap, inp, args.events, 1, "single", logdir)}
    print(f"  single x1: {rates['single x1']:.0f} events/s", flush=True)
    for n in (1, 2, 3):
        rates[f"shared x{n}"] = run_group(args.bootstrap, inp, args.events, n, "shared", logdir)
        print(f"  shared x{n}: {rates[f'shared x{n}']:.0f} events/s", flush=True)
    failover = trainer_failover(args.bootstrap, inp, producer, args.customers, logdir)
    print(f"  trainer failover (SIGKILL -> successor's first snapshot): {failover:.1f} s")
    producer.close()
    admin.close()


if __name__ == "__main__":
    main()
