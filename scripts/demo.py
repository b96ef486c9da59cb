"""The main job end to end: simulated customers -> Kafka -> segmenter-consumer -> segment events.

Run by ``make demo`` after the local broker is up. Each run uses its own topics
and consumer group (``demo-<stamp>``), so it can be repeated. It

1. simulates customers with known personas (``segmenter-producer synth``) into
   the run's input topic,
2. runs ``segmenter-consumer`` (exactly-once, the example campaign rules) until
   it has committed the whole input, then stops it with SIGTERM,
3. reads the output topic with ``read_committed`` and prints the segments,
   their lifecycle and the campaign triggers published.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)


def run_producer(bootstrap: str, topic: str, *, customers: int, days: float, seed: int, truth: Path) -> None:
    cmd = [sys.executable, "-m", "producer", "synth", "--to", "kafka", "--bootstrap-servers", bootstrap,
           "--topic", topic, "--partitions", "3", "--customers", str(customers), "--days", str(days),
           "--seed", str(seed), "--truth", str(truth), "--malformed-rate", "0.001", "--duplicate-rate", "0.002"]
    subprocess.run(cmd, check=True, cwd=ROOT)


def committed_everything(probe: KafkaConsumer, topic: str) -> bool:
    """True when the group (``probe``'s group id, never joined) committed every input record."""
    partitions = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
    if not partitions:
        return False
    ends = probe.end_offsets(partitions)
    return all((probe.committed(tp) or 0) >= ends[tp] for tp in partitions)


def run_consumer(bootstrap: str, topics: dict[str, str], group: str, timeout_s: float) -> None:
    cmd = [sys.executable, "-m", "consumer", "--bootstrap-servers", bootstrap, "--group-id", group,
           "--topics.input", topics["input"], "--topics.output", topics["output"], "--topics.dlq", topics["dlq"],
           "--rules-file", str(ROOT / "config" / "rules.example.toml"), "--metrics-port", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"segmenter-consumer exited early with code {proc.returncode}")
            if committed_everything(probe, topics["input"]):
                break
            time.sleep(1.0)
        else:
            raise SystemExit(f"segmenter-consumer did not commit the whole input within {timeout_s:.0f}s")
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        probe.close()
    if code != 0:
        raise SystemExit(f"segmenter-consumer stopped with exit code {code}")


def read_outputs(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level="read_committed", consumer_timeout_ms=5000)
    messages = [orjson.loads(record.value) for record in consumer if record.value is not None]
    consumer.close()
    return messages


def summarise(messages: list[dict[str, Any]], console: Console) -> None:
    kinds = collections.Counter(m["kind"] for m in messages)
    console.print(f"\n[bold]Published[/bold]: {dict(kinds)}")

    current: dict[tuple[str, str], dict[str, Any] | None] = {}
    names: dict[tuple[str, str], str] = {}
    for m in messages:
        if m["kind"] == "segment_change":
            current[(m["lens"], m["customer_id"])] = m["to_segment"]
        elif m["kind"] == "segment_lifecycle":
            names[(m["lens"], m["segment"]["id"])] = m["segment"]["name"]
    sizes = collections.Counter(
        (lens, seg["id"]) for (lens, _), seg in current.items() if seg is not None
    )
    table = Table(title="Segments (customers per segment at the end of the stream)")
    for column in ("lens", "segment", "name", "customers"):
        table.add_column(column)
    latest_name = {(m["lens"], m["to_segment"]["id"]): m["to_segment"]["name"] for m in messages
                   if m["kind"] == "segment_change" and m["to_segment"]}
    for (lens, seg_id), n in sorted(sizes.items()):
        table.add_row(lens, seg_id, latest_name.get((lens, seg_id), names.get((lens, seg_id), "?")), str(n))
    console.print(table)

    lifecycle = collections.Counter((m["lens"], m["action"]) for m in messages if m["kind"] == "segment_lifecycle")
    if lifecycle:
        console.print("[bold]Segment lifecycle[/bold]: " + ", ".join(f"{lens} {action} x{n}"
                                                               for (lens, action), n in sorted(lifecycle.items())))
    causes = collections.Counter(m["cause"] for m in messages if m["kind"] == "segment_change")
    console.print(f"[bold]Segment changes by cause[/bold]: {dict(causes)}")

    triggers = collections.Counter((m["campaign"], m["channel"]) for m in messages if m["kind"] == "campaign_trigger")
    table = Table(title="Campaign triggers")
    for column in ("campaign", "channel", "triggers"):
        table.add_column(column)
    for (campaign, channel), n in sorted(triggers.items()):
        table.add_row(campaign, channel, str(n))
    console.print(table)
    example = next((m for m in messages if m["kind"] == "segment_change" and m.get("explanation")), None)
    if example:
        console.print("[bold]An example segment change[/bold]:")
        console.print_json(orjson.dumps(example).decode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the consumer may take")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)

    run = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    topics = {"input": f"{run}.events", "output": f"{run}.segments", "dlq": f"{run}.dlq"}
    out_dir = ROOT / "out" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    console.rule(f"[bold]{run}[/bold]: simulating {args.customers} customers over {args.days:g} days")
    started = time.monotonic()
    run_producer(args.bootstrap_servers, topics["input"], customers=args.customers, days=args.days,
                 seed=args.seed, truth=out_dir / "truth.jsonl")
    console.rule("segmenter-consumer (exactly-once) until the whole input is committed")
    run_consumer(args.bootstrap_servers, topics, run, args.timeout)
    messages = read_outputs(args.bootstrap_servers, topics["output"])
    (out_dir / "outputs.jsonl").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in messages))
    summarise(messages, console)
    console.print(f"\nTopics: {topics}; outputs and persona truth in {out_dir}; "
                  f"took {time.monotonic() - started:.0f}s")
    return 0 if messages else 1


if __name__ == "__main__":
    sys.exit(main())
