"""A running segmenter-consumer: its live /metrics carry every metric the Grafana dashboard queries, and its
segment explorer (/ and /segments) renders in headless Chromium."""

from __future__ import annotations

import re
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import orjson
from kafka import KafkaProducer

from tests.dashboards import dashboard, exported_names, metric_names, queries, sampled_names
from tests.integration.consumer_support import ConsumerProcess, committed_offset, make_events, produce, wait_for
from tests.unit.explorer_support import check_lens, dump_dom, rendered_lenses, screenshot

# two rules fire on every first segment, and the cap lets one through: each customer's first change is
# one trigger and one suppression (the dashboard's suppression series needs a sample, whatever the moves)
RULES = """
version = 1
[cap]
max = 1
period = "30d"
[[rules]]
name = "hello"
campaign = "hello"
channel = "email"
priority = 2
on = { lens = "value", enter = "*" }
causes = ["event", "inactivity", "model"]
[[rules]]
name = "hello-too"
campaign = "hello-too"
channel = "email"
priority = 1
on = { lens = "value", enter = "*" }
causes = ["event", "inactivity", "model"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return bytes(reply.read())


def test_live_metrics_and_explorer_of_a_running_consumer(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer, tmp_path: Path
) -> None:
    inp, out, dlq = new_topic(3, suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(1500, customers=60, seed=21)
    produce(plain_producer, inp, [*events, (b"c1", b"{not json")])
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
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
        "--topics.membership",
        f"{out}.members",
        "--rules-file",
        str(rules),
        "--metrics-host",
        "127.0.0.1",
        "--metrics-port",
        str(port),
        "--commit-interval-ms",
        "100",
        "--batch-size",
        "100",
    ]
    consumer = ConsumerProcess(args, tmp_path / "consumer.log")
    try:
        wait_for(
            lambda: sum(committed_offset(bootstrap, group_id, inp, p) for p in range(3)) == len(events) + 1,
            120,
            "the whole input committed",
        )
        needed = {"segmenter_segment_size", "segmenter_campaign_triggers_total", "segmenter_triggers_suppressed"}
        wait_for(lambda: needed <= sampled_names(get(f"{base}/metrics").decode()), 30, "the gauges refreshed")
        exposition = get(f"{base}/metrics").decode()
        document = orjson.loads(get(f"{base}/segments"))
        dom = dump_dom(f"{base}/")
        screenshot(f"{base}/", "explorer-live.png")
    finally:
        code = consumer.terminate()
    assert code == 0, consumer.log_text()[-3000:]

    used = metric_names(queries(dashboard()))
    assert used <= exported_names(exposition), f"not exported: {sorted(used - exported_names(exposition))}"
    sampled = sampled_names(exposition)
    for name in (
        "segmenter_events_in_total",
        "segmenter_consumer_lag",
        "segmenter_events_rejected_total",
        "segmenter_segment_changes_total",
        "segmenter_segment_size",
        "segmenter_batch_seconds_bucket",
        "segmenter_commit_seconds_bucket",
        "segmenter_campaign_triggers_total",
        "segmenter_membership_records_total",
        "segmenter_triggers_suppressed",
    ):
        assert name in sampled, f"{name} has no sample after a real run"

    assert document["live"] is True and document["lenses"]
    # the page embeds the document as it was when served (a refresh may have come after /segments was read)
    embedded = re.search(r"const EMBEDDED = (.*?);\n", dom)
    assert embedded, "the served page embeds no document"
    served = orjson.loads(embedded.group(1))
    assert [lens["name"] for lens in served["lenses"]] == [lens["name"] for lens in document["lenses"]]
    cards = rendered_lenses(dom)
    assert list(cards) == [lens["name"] for lens in served["lenses"]]
    for lens in served["lenses"]:
        assert lens["segments"], f"lens {lens['name']} has no segment"
        assert len(lens["history"]) >= 2
        assert lens["history"][-1]["sizes"] == {s["id"]: s["size"] for s in lens["segments"]}, "chart ends at the table"
        check_lens(cards[lens["name"]], lens)
