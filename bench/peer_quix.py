"""segmenter-consumer next to the framework a user would pick instead: a Quix Streams 3.28 application.

In one run, on one input topic per partition count (``--partitions 1 3``), the
same events (:func:`bench.consumer_throughput.produce_events`), each contender
in its own process one after the other (so each has the machine's two cores and
its own peak RSS):

``bare read``
    kafka-python reads and JSON-decodes (:func:`bench.bare_kafka.bare_consume`).
``bare EOS``
    kafka-python exactly-once pass-through, one record per event, one
    transaction per poll (:func:`bench.consumer_throughput.bare_eos_passthrough`).
``ours``
    ``segmenter-consumer`` exactly-once with its default settings, in process
    (:func:`consumer.__main__.build_service`).
``quix``
    The same job written the way Quix Streams' users write it: a
    ``StreamingDataFrame`` with one stateful ``apply`` per event that updates
    the customer's features (decayed counts, the default config's half-lives)
    in the customer's entry of Quix's state store, and, for each of the default
    config's two lenses, runs river's ``KMeans.learn_one`` + ``predict_one`` on
    the lens's features; a segment change goes to an output topic.
    ``processing_guarantee="exactly-once"``, every other setting Quix's default.

Measured per contender: events/s from its first record to the end of the commit
that covers the last one (ours: from its first poll with records to the commit, seen
by hooks on the service's record processing and its batch-size histogram; Quix: the end of
its final checkpoint commit, timed by a wrapper around the processing
context's ``commit_checkpoint``, the only instrumentation inside it; bare EOS:
its last ``commit_transaction``; bare read: its last decoded record); CPU
seconds per event (``time.process_time``, every thread of the process, over the
same window; every contender with one BLAS thread, as ``segmenter-consumer`` sets
for itself; the bare references over the whole call, whose connect and join
cost little CPU); and the process's peak RSS. The targets are ratios within the
run: ours >= 3x Quix's events/s, <= 0.3x its CPU per event, >= 1x the bare
exactly-once pass-through.

Usage::

    python -m bench.peer_quix --events 100000 --customers 10000 --partitions 1 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from bench.common import Row, add_common_args, save_result, setup_logging
from bench.consumer_throughput import DEFAULT_BATCH_SIZE, bare_eos_passthrough, produce_events
from segmenter.config import SegmenterConfig, default_config

log = logging.getLogger("bench.peer_quix")

ROLES = ("bare_read", "bare_eos", "ours", "quix")
REFERENCE = "ours_reference"
"""The contender ``--reference DIR`` adds: segmenter-consumer of another source tree (e.g. a ``git archive main``)."""
TARGET_RATE = 3.0
TARGET_CPU = 0.3
TARGET_BARE_EOS = 1.0
DAY = 86_400.0


@dataclass(frozen=True)
class Measured:
    """One contender's run: events, wall seconds, CPU seconds, peak RSS bytes (ours: what it wrote, by topic role)."""

    events: int
    seconds: float
    cpu_s: float
    peak_rss: int
    written: dict[str, int] = field(default_factory=dict)
    """Ours: offsets its run advanced on each topic it writes (records and transaction markers), and its commits."""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_per_event(self) -> float:
        return self.cpu_s / self.events if self.events else float("nan")


class Meter:
    """The window of a measurement: starts at the first record, ends when the last one is committed."""

    def __init__(self) -> None:
        self.wall: float | None = None
        self.cpu = 0.0

    def start(self) -> None:
        if self.wall is None:
            self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, events: int) -> Measured:
        if self.wall is None:
            raise RuntimeError("no record was seen")
        return Measured(events, time.perf_counter() - self.wall, time.process_time() - self.cpu, _peak_rss())


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ----------------------------------------------------------------------------- the peer application


class PeerFeatures:
    """The customer features a Quix user would keep in the state store: one dict of decayed counts per customer."""

    def __init__(self, config: SegmenterConfig) -> None:
        f = config.features
        self.rate = {
            "frequency": math.log(2) / (f.frequency_half_life_days * DAY),
            "spend": math.log(2) / (f.spend_half_life_days * DAY),
            "activity": math.log(2) / (f.activity_half_life_days * DAY),
        }
        self.cap = f.recency_cap_days

    def update(self, acc: dict[str, float], event: dict[str, Any]) -> float:
        """Apply one event to ``acc`` (decay to its time, add its contribution); returns its time (epoch s)."""
        t = datetime.fromisoformat(event["ts"]).timestamp()
        if not acc:
            acc.update(
                dict.fromkeys(("freq", "spend", "sess", "views", "cart", "email", "pact", "npur", "amt", "ramt"), 0.0)
            )
            acc.update(first=t, last=t, last_purchase=-1.0)
        dt = max(0.0, t - acc["last"])
        fa = math.exp(-dt * self.rate["activity"])
        acc["freq"] *= math.exp(-dt * self.rate["frequency"])
        acc["spend"] *= math.exp(-dt * self.rate["spend"])
        for key in ("sess", "views", "cart", "email", "pact"):
            acc[key] *= fa
        acc["last"] = max(acc["last"], t)
        kind = event["type"]
        if kind == "purchase":
            amount = float(event.get("amount") or 0.0)
            acc["freq"] += 1.0
            acc["spend"] += amount
            acc["pact"] += 1.0
            acc["npur"] += 1.0
            acc["amt"] += amount
            acc["last_purchase"] = t
        elif kind == "refund":
            amount = float(event.get("amount") or 0.0)
            acc["spend"] -= amount
            acc["ramt"] += amount
        else:
            counted = {"session_start": "sess", "product_view": "views", "add_to_cart": "cart"}.get(kind)
            if counted is not None:
                acc[counted] += 1.0
            elif kind in ("email_open", "email_click"):
                acc["email"] += 2.0 if kind == "email_click" else 1.0
        return t

    def vector(self, acc: dict[str, float], t: float) -> dict[str, float]:
        """Every feature of the default lenses at time ``t``."""
        since = acc["first"] if acc["last_purchase"] < 0 else acc["last_purchase"]
        npur, pact, cart, views = acc["npur"], acc["pact"], acc["cart"], acc["views"]
        return {
            "recency_days": min(self.cap, (t - since) / DAY),
            "frequency": acc["freq"],
            "spend": max(0.0, acc["spend"]),
            "aov": acc["amt"] / npur if npur else 0.0,
            "orders": npur,
            "net_spend": max(0.0, acc["amt"] - acc["ramt"]),
            "sessions": acc["sess"],
            "product_views": views,
            "cart_abandonment": 1.0 - min(1.0, pact / cart) if cart else 0.0,
            "conversion": min(1.0, pact / views) if views else 0.0,
            "email_engagement": acc["email"],
        }


def peer_step(config: SegmenterConfig) -> Callable[[dict[str, Any], Any], list[dict[str, Any]]]:
    """The stateful function of the Quix application: ``(event, state) -> segment changes``."""
    from river import cluster  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)

    features = PeerFeatures(config)
    lenses: list[tuple[str, list[str], Any]] = [
        (lc.name, list(lc.features), cluster.KMeans(**lc.params, seed=config.seed)) for lc in config.lenses
    ]

    def step(event: dict[str, Any], state: Any) -> list[dict[str, Any]]:
        customer = state.get("customer", None) or {"acc": {}, "segments": {}}
        t = features.update(customer["acc"], event)
        vec = features.vector(customer["acc"], t)
        changes = []
        for name, names, model in lenses:
            x = {n: vec[n] for n in names}
            model.learn_one(x)
            segment = model.predict_one(x)
            before = customer["segments"].get(name)
            if segment != before:
                customer["segments"][name] = segment
                changes.append(
                    {
                        "customer_id": event["customer_id"],
                        "lens": name,
                        "from": before,
                        "to": segment,
                        "ts": event["ts"],
                    }
                )
        state.set("customer", customer)
        return changes

    return step


def run_quix(bootstrap: str, topic: str, events: int, tag: str) -> Measured:
    """The Quix Streams application until ``events`` records are processed and committed."""
    from quixstreams import Application  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)

    meter = Meter()
    seen = 0
    done: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench-quix-") as state_dir:
        app = Application(
            broker_address=bootstrap,
            consumer_group=f"bench-peer-quix-{tag}",
            auto_offset_reset="earliest",
            processing_guarantee="exactly-once",
            state_dir=state_dir,
            loglevel="WARNING",
        )
        step = peer_step(default_config())

        def counted(event: dict[str, Any], state: Any) -> list[dict[str, Any]]:
            nonlocal seen
            meter.start()
            seen += 1
            if seen >= events:
                app.stop()
            return step(event, state)

        sdf = app.dataframe(app.topic(topic, value_deserializer="json", key_deserializer="str"))
        sdf = sdf.apply(counted, stateful=True, expand=True)
        sdf.to_topic(app.topic(f"bench-peer-quix-out-{tag}", value_serializer="json"))
        context = app._processing_context
        commit = context.commit_checkpoint

        def timed_commit(force: bool = False, revoking: bool = False) -> None:
            commit(force=force, revoking=revoking)
            if seen >= events and not done:
                done.append(meter.stop(seen))

        context.commit_checkpoint = timed_commit  # type: ignore[method-assign]
        app.run()
    if not done:
        raise TimeoutError(f"quix: stopped after {seen} of {events} events without a final commit")
    return done[0]


# ----------------------------------------------------------------------------- ours and the references


def run_ours(bootstrap: str, topic: str, events: int, tag: str, timeout_s: float) -> Measured:
    """segmenter-consumer (exactly-once, default settings) in this process until ``events`` are committed."""
    from consumer.__main__ import build_service  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)
    from consumer.metrics import Health, Metrics  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)
    from consumer.settings import load_settings  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)
    from segmenter.gc_tuning import tune_gc  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)

    tune_gc()
    settings = load_settings(
        [
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            f"bench-peer-ours-{tag}",
            "--topics.input",
            topic,
            "--topics.output",
            f"bench-peer-out-{tag}",
            "--topics.dlq",
            f"bench-peer-dlq-{tag}",
            "--topics.membership",  # the run's own (deleted with it), not the shared default segment-membership
            f"bench-peer-membership-{tag}",
            "--guarantee",
            "exactly-once",
            "--metrics-port",
            "-1",
            "--instance-id",
            "bench",
        ]
    )
    metrics = Metrics()
    service = build_service(settings, metrics, Health())
    meter = Meter()
    done: list[Measured] = []
    committed = threading.Event()
    process = service._process_records
    observe = metrics.batch_records.observe
    total = commits = 0

    def first_records(records: Any) -> None:  # the clock starts at the first records polled
        if records:
            meter.start()
        process(records)

    def observed(amount: float) -> None:  # ... and stops at the commit that covers the last one
        nonlocal total, commits
        observe(amount)
        total += int(amount)
        commits += 1
        if total >= events and not done:
            done.append(meter.stop(events))
            committed.set()

    # hooks, as run_quix's around Quix's commit: no thread polling the metrics (it cost ~1.5 us per event)
    setattr(service, "_process_records", first_records)  # noqa: B010 - an instance attribute over the method
    setattr(metrics.batch_records, "observe", observed)  # noqa: B010
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        if not committed.wait(timeout_s):
            raise TimeoutError(f"ours: {events} events not committed within {timeout_s}s")
    finally:
        service.stop()
        thread.join(30)
    topics = {
        "outputs": settings.output_topic("segment_change"),
        "membership": settings.topics.membership,
        "state": settings.state_topic,
        "model": settings.model_topic,
        "dead letters": settings.topics.dlq,
    }
    return replace(done[0], written={**offsets_written(bootstrap, topics), "commits": commits})


def offsets_written(bootstrap: str, topics: dict[str, str]) -> dict[str, int]:
    """Per role, how far the run moved its topic's offsets (all partitions): records plus transaction markers."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        out = {}
        for role, topic in topics.items():
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            out[role] = sum(consumer.end_offsets(tps).values()) - sum(consumer.beginning_offsets(tps).values())
        return out
    finally:
        consumer.close()


def run_bare(role: str, bootstrap: str, topic: str, events: int, tag: str, timeout_s: float) -> Measured:
    """A bare kafka-python reference (``bare_read`` or ``bare_eos``); CPU over the whole call."""
    from bench.bare_kafka import bare_consume  # noqa: PLC0415 - loaded only by the contender that uses it (its peak RSS)

    cpu = time.process_time()
    if role == "bare_read":
        count, seconds = bare_consume(bootstrap, topic, events, timeout_s)
    else:
        count, seconds = bare_eos_passthrough(
            bootstrap, topic, f"bench-peer-bare-out-{tag}", events, DEFAULT_BATCH_SIZE, timeout_s, tag
        )
    if count < events:
        raise TimeoutError(f"{role}: {count} of {events} events within {timeout_s}s")
    return Measured(count, seconds, time.process_time() - cpu, _peak_rss())


def run_role(role: str, bootstrap: str, topic: str, events: int, tag: str, timeout_s: float) -> Measured:
    """Run one contender in this process."""
    if role == "quix":
        return run_quix(bootstrap, topic, events, tag)
    if role == "ours":
        return run_ours(bootstrap, topic, events, tag, timeout_s)
    return run_bare(role, bootstrap, topic, events, tag, timeout_s)


# ----------------------------------------------------------------------------- the run


def measure(
    bootstrap: str,
    events: int,
    customers: int,
    partitions: int,
    run: str,
    timeout_s: float,
    reference: Path | None = None,
) -> dict[str, Measured]:
    """Produce the events to a fresh topic with ``partitions`` partitions; run every contender on it.

    ``reference``: a source tree whose segmenter-consumer runs as one more contender
    (:data:`REFERENCE`), timed by this module, on the same topic in the same run, after ``ours``.
    """
    topic = f"bench-peer-in-{run}-p{partitions}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {
                name: {"num_partitions": partitions, "replication_factor": 1}
                for name in (topic, f"bench-peer-bare-out-{run}-p{partitions}")
            }
        )
    finally:
        admin.close()
    produce_events(bootstrap, topic, events, customers)
    here = Path(__file__).resolve().parents[1]
    out: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="bench-peer-harness-") as harness:
        # the reference's product code under this harness (its own bench may time it differently): a directory
        # holding only this tree's bench package comes first on the path, the reference tree next
        (Path(harness) / "bench").symlink_to(here / "bench", target_is_directory=True)
        contenders = [(role, role, here, here) for role in ROLES]
        if reference is not None:
            contenders.insert(ROLES.index("ours") + 1, (REFERENCE, "ours", Path(harness), reference.resolve()))
        for name, role, cwd, tree in contenders:
            log.info("%d partition(s): %s", partitions, name)
            tag = f"{run}-p{partitions}" + ("-reference" if name == REFERENCE else "")  # its own group and topics
            out[name] = _contender(cwd, tree, role, bootstrap, topic, events, tag, timeout_s)
    return out


def _contender(
    cwd: Path, tree: Path, role: str, bootstrap: str, topic: str, events: int, tag: str, timeout_s: float
) -> Measured:
    """One contender in its own process: this bench module run in ``cwd``, the product code from ``tree``."""
    cmd = [sys.executable, "-m", "bench.peer_quix", "--role", role, "--bootstrap", bootstrap, "--topic", topic]
    cmd += ["--events", str(events), "--tag", tag, "--timeout", str(timeout_s)]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout_s + 120,
        check=False,
        cwd=cwd,
        # one BLAS thread for every contender, as segmenter-consumer sets for itself before numpy loads
        # (consumer/__main__.py); in process, this module loads numpy first, and OpenBLAS's second thread
        # spun between the core's small matrix calls (about 6 us of CPU per event)
        env={
            **os.environ,
            "PYTHONPATH": str(tree),
            "PYTHONHASHSEED": "0",
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
        },
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{role} ({tree}) failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Measured(**json.loads(proc.stdout.strip().splitlines()[-1]))


def delete_run_topics(bootstrap: str, run: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([t for t in admin.list_topics() if run in t])
    finally:
        admin.close()


def rows_for(partitions: int, m: dict[str, Measured]) -> list[Row]:
    """The table rows of one partition count."""
    sect = "throughput: peer framework (Quix Streams 3.28, exactly-once)"
    ours, quix, eos = m["ours"], m["quix"], m["bare_eos"]
    p = f"{partitions} partition{'s' if partitions > 1 else ''}"
    rate, cpu, rss = ours.rate / quix.rate, ours.cpu_per_event / quix.cpu_per_event, ours.peak_rss / quix.peak_rss
    return [
        Row(
            sect,
            f"{p}: events/s, ours vs Quix Streams",
            ours.rate,
            "events/s",
            f"ratio >= {TARGET_RATE:g}",
            quix.rate,
            rate,
            rate >= TARGET_RATE,
        ),
        Row(
            sect,
            f"{p}: CPU per event, ours vs Quix Streams",
            ours.cpu_per_event * 1e6,
            "us",
            f"ratio <= {TARGET_CPU:g}",
            quix.cpu_per_event * 1e6,
            cpu,
            cpu <= TARGET_CPU,
        ),
        Row(sect, f"{p}: peak RSS, ours vs Quix Streams", ours.peak_rss / 2**20, "MiB", "", quix.peak_rss / 2**20, rss),
        Row(
            sect,
            f"{p}: events/s, ours vs the bare kafka-python exactly-once pass-through",
            ours.rate,
            "events/s",
            f"ratio >= {TARGET_BARE_EOS:g}",
            eos.rate,
            ours.rate / eos.rate,
            ours.rate / eos.rate >= TARGET_BARE_EOS,
        ),
        Row(
            sect,
            f"{p}: events/s, ours vs the bare kafka-python read+decode",
            ours.rate,
            "events/s",
            "",
            m["bare_read"].rate,
            ours.rate / m["bare_read"].rate,
        ),
    ]


PEER_NOTE = """\
Each contender ran alone, one after the other, on the same input topic (bench/peer_quix.py): bare
kafka-python read + decode, the bare kafka-python exactly-once pass-through (one record per event),
segmenter-consumer exactly-once with its defaults, and a Quix Streams application doing the same job
the way its users write it (river KMeans learn_one + predict_one per event for both lenses, the
customer's features in its state store, exactly-once). Events/s from the first record to the commit
covering the last; CPU over the same window, every thread of the process; the process's peak RSS.
The ratio columns are ours divided by the contender of the row."""


def peer_table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a saved result: every contender per partition count, and the ratios."""
    lines = [
        "| partitions | contender | events/s | CPU us/event | peak RSS MiB | ours / it: events/s | CPU/event |",
        "|---|---|---|---|---|---|---|",
    ]
    for partitions, by_role in result["data"]["measured"].items():
        ours = Measured(**by_role["ours"])
        for role in (r for r in (*ROLES[:3], REFERENCE, *ROLES[3:]) if r in by_role):
            m = Measured(**by_role[role])
            ratios = (
                "- | -" if role == "ours" else f"{ours.rate / m.rate:.2f} | {ours.cpu_per_event / m.cpu_per_event:.2f}"
            )
            lines.append(
                f"| {partitions} | {role.replace('_', ' ')} | {m.rate:,.0f} | {m.cpu_per_event * 1e6:.1f} | "
                f"{m.peak_rss / 2**20:.0f} | {ratios} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events in each input topic (default 100000)")
    parser.add_argument("--customers", type=int, default=10_000, help="distinct customers (default 10000)")
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 3], help="input partitions (default 1 3)")
    parser.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per contender")
    parser.add_argument(
        "--reference",
        type=Path,
        help="also run segmenter-consumer from this source tree (e.g. `git archive main | tar -x -C DIR`), "
        "as contender ours_reference, in the same run",
    )
    parser.add_argument("--role", choices=ROLES, help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    if args.role is not None:  # one contender, in its own process: one JSON line on stdout
        print(json.dumps(asdict(run_role(args.role, args.bootstrap, args.topic, args.events, args.tag, args.timeout))))
        return 0
    run = uuid.uuid4().hex[:8]
    measured: dict[int, dict[str, Measured]] = {}
    try:
        for partitions in args.partitions:
            measured[partitions] = measure(
                args.bootstrap, args.events, args.customers, partitions, run, args.timeout, args.reference
            )
    finally:
        delete_run_topics(args.bootstrap, run)
    rows = [row for partitions, m in measured.items() for row in rows_for(partitions, m)]
    data = {
        "params": {
            "events": args.events,
            "customers": args.customers,
            "partitions": args.partitions,
            **({"reference": str(args.reference)} if args.reference is not None else {}),
        },
        "measured": {str(p): {role: asdict(x) for role, x in m.items()} for p, m in measured.items()},
    }
    path = save_result("peer_quix", data, rows, args.out)
    print("\n".join(peer_table(json.loads(path.read_text()))))
    for partitions, m in measured.items():
        for role in ("ours", REFERENCE):
            if role in m and m[role].written:
                per = ", ".join(f"{k} {v * 1000 / m[role].events:.1f}" for k, v in m[role].written.items())
                print(f"{partitions} partition(s), {role}, per 1000 events: {per} (offsets: records and markers)")
    for r in rows:
        if r.passed is not None:
            print(f"{r.metric}: ratio {r.ratio:.2f}, target {r.target}: {'met' if r.passed else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
