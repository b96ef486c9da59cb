"""The product's story end to end: simulated customers -> Kafka -> segmenter-consumer -> segments and campaigns.

Run by ``make demo`` after the local broker is up. Each run uses its own topics
and consumer group (``demo-<stamp>``), so it can be repeated. It

1. simulates customers with known personas (``segmenter-producer synth``, with a
   few malformed and repeated messages) into the run's input topic,
2. runs ``segmenter-consumer`` (exactly-once, the example campaign rules of
   config/rules.example.toml) until it has committed the whole input; the
   segment explorer is live at the printed URL meanwhile, and its page is saved
   to the run's directory before the consumer is stopped with SIGTERM,
3. reads the output, dead-letter and membership topics with ``read_committed``
   and prints the segments, the campaign triggers and what each delivery
   control suppressed, the dead letters by reason and the membership table
   (checked against the last segment change per customer and lens).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from consumer.logs import demote_kafka_noise
from segmenter.explorer import render_page
from segmenter.membership import comparable, table_from_changes
from segmenter.triggers.engine import CONTROLS

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules.example.toml"
log = logging.getLogger(__name__)

Record = tuple[bytes | None, bytes | None, dict[str, bytes]]


@dataclass(frozen=True)
class DemoRun:
    """One demo run: its broker, its topics (its consumer group is its name), where it writes, where it prints."""

    name: str
    bootstrap: str
    topics: dict[str, str]
    out_dir: Path
    console: Console


def run_producer(run: DemoRun, *, customers: int, days: float, seed: int) -> None:
    cmd = [
        sys.executable,
        "-m",
        "producer",
        "synth",
        "--to",
        "kafka",
        "--bootstrap-servers",
        run.bootstrap,
        "--topic",
        run.topics["input"],
        "--partitions",
        "3",
        "--customers",
        str(customers),
        "--days",
        str(days),
        "--seed",
        str(seed),
        "--truth",
        str(run.out_dir / "truth.jsonl"),
        "--malformed-rate",
        "0.001",
        "--duplicate-rate",
        "0.002",
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)


def committed_everything(probe: KafkaConsumer, topic: str) -> bool:
    """True when the group (``probe``'s group id, never joined) committed every input record."""
    partitions = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
    if not partitions:
        return False
    ends = probe.end_offsets(partitions)
    return all((probe.committed(tp) or 0) >= ends[tp] for tp in partitions)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bytes(reply.read())
    except (urllib.error.URLError, OSError):
        return None


def run_consumer(run: DemoRun, *, timeout_s: float) -> dict[str, Any]:
    """Run the consumer until it committed the whole input; returns its last /metrics and /segments."""
    bootstrap, topics, group, out_dir, console = run.bootstrap, run.topics, run.name, run.out_dir, run.console
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "consumer",
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        group,
        "--topics.input",
        topics["input"],
        "--topics.output",
        topics["output"],
        "--topics.dlq",
        topics["dlq"],
        "--topics.membership",
        topics["membership"],
        "--rules-file",
        str(RULES),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    announced = False
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"segmenter-consumer exited early with code {proc.returncode}")
            if not announced and http_get(f"{base}/healthz") is not None:
                console.print(
                    f"[bold green]Segment explorer[/bold green] (live while the consumer runs): {base}/ "
                    f"· JSON {base}/segments · metrics {base}/metrics"
                )
                announced = True
            if committed_everything(probe, topics["input"]):
                break
            time.sleep(1.0)
        else:
            raise SystemExit(f"segmenter-consumer did not commit the whole input within {timeout_s:.0f}s")
        time.sleep(2.5)  # the consumer refreshes its gauges and the explorer every 2 s
        metrics = (http_get(f"{base}/metrics") or b"").decode()
        last: dict[str, Any] = {"metrics": metrics, "segments": http_get(f"{base}/segments")}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        probe.close()
    if code != 0:
        raise SystemExit(f"segmenter-consumer stopped with exit code {code}")
    if last["segments"]:
        page = out_dir / "explorer.html"
        page.write_text(render_page({**orjson.loads(last["segments"]), "live": False}), encoding="utf-8")
        last["page"] = page
    return last


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Record]:
    """Every committed record of ``topic``, read from the beginning up to its end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in partitions) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.key, r.value, dict(r.headers or [])) for r in batch)
        return records
    finally:
        consumer.close()


def suppressed_by_control(metrics_text: str) -> dict[str, dict[str, int]]:
    """``{campaign: {control: count}}`` from the consumer's ``segmenter_triggers_suppressed`` gauge."""
    out: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "segmenter_triggers_suppressed":
            for sample in family.samples:
                out[sample.labels["campaign"]][sample.labels["control"]] = int(sample.value)
    return out


def print_segments(messages: list[dict[str, Any]], console: Console) -> None:
    current: dict[tuple[str, str], dict[str, Any] | None] = {}
    for m in messages:
        if m["kind"] == "segment_change":
            current[(m["lens"], m["customer_id"])] = m["to_segment"]
    sizes = collections.Counter((lens, seg["id"]) for (lens, _), seg in current.items() if seg is not None)
    latest_name = {
        (m["lens"], m["to_segment"]["id"]): m["to_segment"]["name"]
        for m in messages
        if m["kind"] == "segment_change" and m["to_segment"]
    }
    table = Table(title="Segments (customers per segment at the end of the stream)")
    for column in ("lens", "segment", "name", "customers"):
        table.add_column(column, justify="right" if column == "customers" else "left")
    for (lens, seg_id), n in sorted(sizes.items()):
        table.add_row(lens, seg_id, latest_name.get((lens, seg_id), "?"), f"{n:,}")
    console.print(table)
    lifecycle = collections.Counter((m["lens"], m["action"]) for m in messages if m["kind"] == "segment_lifecycle")
    if lifecycle:
        console.print(
            "[bold]Segment lifecycle[/bold]: "
            + ", ".join(f"{lens} {action} x{n}" for (lens, action), n in sorted(lifecycle.items()))
        )
    causes = collections.Counter(m["cause"] for m in messages if m["kind"] == "segment_change")
    console.print(f"[bold]Segment changes by cause[/bold]: {dict(causes)}")


def print_campaigns(messages: list[dict[str, Any]], suppressed: dict[str, dict[str, int]], console: Console) -> bool:
    """Triggers per campaign and suppressions per control; True when every example campaign fired."""
    fired = collections.Counter((m["campaign"], m["channel"]) for m in messages if m["kind"] == "campaign_trigger")
    campaigns = {rule["campaign"]: rule["channel"] for rule in _example_rules()}
    table = Table(title="Campaign triggers (config/rules.example.toml) and what each delivery control suppressed")
    for column in ("campaign", "channel", "triggers", *CONTROLS):
        table.add_column(column, justify="left" if column in ("campaign", "channel") else "right")
    for campaign, channel in sorted(campaigns.items()):
        n = fired.get((campaign, channel), 0)
        sup = suppressed.get(campaign, {})
        table.add_row(
            campaign,
            channel,
            f"[bold]{n:,}[/bold]" if n else "[red]0[/red]",
            *(f"{sup[c]:,}" if sup.get(c) else "-" for c in CONTROLS),
        )
    console.print(table)
    missing = [c for c, ch in campaigns.items() if not fired.get((c, ch))]
    if missing:
        console.print(f"[red]campaigns that never fired: {', '.join(sorted(missing))}[/red]")
    return not missing


def _example_rules() -> list[dict[str, Any]]:
    import tomllib  # noqa: PLC0415  (only the demo reads the example rules as plain TOML)

    rules: list[dict[str, Any]] = tomllib.loads(RULES.read_text(encoding="utf-8"))["rules"]
    return rules


def print_dead_letters(records: list[Record], console: Console) -> None:
    reasons = collections.Counter(headers.get("error", b"?").decode() for _, _, headers in records)
    listing = ", ".join(f"{reason} {n:,}" for reason, n in reasons.most_common()) or "none"
    console.print(f"[bold]Dead letters by reason[/bold] ({sum(reasons.values()):,}): {listing}")
    example = next((h for _, _, h in records if "reason" in h), None)
    if example:
        console.print(f"  e.g. {example['error'].decode()}: {example['reason'].decode()}", markup=False)


def print_membership(records: list[Record], messages: list[dict[str, Any]], console: Console) -> None:
    """The membership table rebuilt from its topic, checked against the last change per customer and lens."""
    table: dict[str, dict[str, Any] | None] = {}
    for key, value, _ in records:
        table[(key or b"").decode()] = None if value is None else orjson.loads(value)["segments"]
    expected = table_from_changes(messages)
    live = sum(1 for v in table.values() if v is not None)
    tombstones = sum(1 for _, v, _ in records if v is None)
    verdict = "[green]equals[/green]" if comparable(table, expected) == expected else "[red]DIFFERS FROM[/red]"
    console.print(
        f"[bold]Membership table[/bold]: {len(records):,} records ({tombstones:,} tombstones) for "
        f"{len(table):,} customers, {live:,} with segments now; rebuilt from the topic it {verdict} "
        "the last segment_change per customer and lens (ids, model versions, since of event moves)"
    )
    sample = next((k for k, v in sorted(table.items()) if v and len(v) > 1), None)
    if sample:
        console.print(f"  e.g. {sample}: " + orjson.dumps(table[sample]).decode(), markup=False)


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
    demote_kafka_noise()  # this process's probe and read-back consumers wait on the consumer's CPU: short slow steps

    run = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    topics = {
        "input": f"{run}.events",
        "output": f"{run}.segments",
        "dlq": f"{run}.dlq",
        "membership": f"{run}.membership",
    }
    out_dir = ROOT / "out" / run
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(width=None if sys.stdout.isatty() else 132)
    demo = DemoRun(run, args.bootstrap_servers, topics, out_dir, console)
    console.rule(f"[bold]{run}[/bold]: simulating {args.customers} customers over {args.days:g} days")
    started = time.monotonic()
    run_producer(demo, customers=args.customers, days=args.days, seed=args.seed)
    console.rule("segmenter-consumer (exactly-once) until the whole input is committed")
    last = run_consumer(demo, timeout_s=args.timeout)
    records = read_topic(args.bootstrap_servers, topics["output"])
    messages = [orjson.loads(v) for _, v, _ in records if v is not None]
    (out_dir / "outputs.jsonl").write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in messages))
    kinds = collections.Counter(m["kind"] for m in messages)
    console.print(f"\n[bold]Published[/bold]: {dict(kinds)}")
    print_segments(messages, console)
    every_campaign = print_campaigns(messages, suppressed_by_control(last["metrics"]), console)
    print_dead_letters(read_topic(args.bootstrap_servers, topics["dlq"]), console)
    print_membership(read_topic(args.bootstrap_servers, topics["membership"]), messages, console)
    if "page" in last:
        console.print(f"[bold]Segment explorer page[/bold] as the consumer served it last: {last['page']}")
    console.print(f"\nTopics: {topics}; outputs and persona truth in {out_dir}; took {time.monotonic() - started:.0f}s")
    return 0 if messages and every_campaign else 1


if __name__ == "__main__":
    sys.exit(main())
