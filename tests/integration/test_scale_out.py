"""Scale-out on the real broker: several ``segmenter-consumer --mode shared`` processes, one segmentation.

Three (then four) processes share a six-partition input; processes are added
and SIGKILLed mid-stream, the trainer among them. Afterwards:

- every input offset is committed, nothing is dead-lettered;
- exactly-once: per customer and lens the ``segment_change`` chain is unbroken
  (each change starts where the previous one ended: a lost or duplicated output
  breaks it), no event causes two changes, and the last change agrees with the
  customer's committed state;
- one segmentation: every change's ``to_segment`` is the nearest segment of its
  features under the model view of the version it names (what any single
  process computes with that version), and a segment id has one name per
  version;
- the trainer's failover: the successor's first snapshot continues the model
  versions (no id reuse: every ``born`` id is new) within a bounded time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from segmenter import codec
from segmenter.lenses.lens import Lens
from segmenter.pipeline import Segmenter
from tests.integration.conftest import read_all
from tests.integration.consumer_support import ConsumerProcess, it_config, make_events, produce, wait_for

PARTITIONS = 6
CHUNK = 700
CHUNKS = 10
SESSION_MS = 6000
TXN_MS = 10000


def _args(bootstrap: str, group: str, inp: str, out: str, dlq: str, instance: str) -> list[str]:
    return [
        "--bootstrap-servers",
        bootstrap,
        "--group-id",
        group,
        "--topics.input",
        inp,
        "--topics.output",
        out,
        "--topics.dlq",
        dlq,
        "--metrics-port",
        "-1",
        "--mode",
        "shared",
        "--instance-id",
        instance,
        "--batch-size",
        "50",
        "--commit-interval-ms",
        "200",
        "--trainer-commit-interval-ms",
        "500",
        "--transaction-timeout-ms",
        str(TXN_MS),
        "--session-timeout-ms",
        str(SESSION_MS),
    ]


def _committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return sum(consumer.committed(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS))
    finally:
        consumer.close()


def _trainer_of(procs: dict[str, ConsumerProcess]) -> str | None:
    """The live process whose log last says it became the trainer (and not that it stopped being it)."""
    for name, proc in procs.items():
        if not proc.alive():
            continue
        text = proc.log_text()
        became, left = text.rfind("is the trainer now"), text.rfind("no longer the trainer")
        if became > left:
            return name
    return None


def _stable_trainer(procs: dict[str, ConsumerProcess]) -> str:
    """The trainer, once the same process claimed the role for two seconds (the trainer group settled)."""
    seen: list[str | None] = []

    def settled() -> bool:
        seen.append(_trainer_of(procs))
        return len(seen) >= 7 and seen[-1] is not None and len(set(seen[-7:])) == 1

    wait_for(settled, 60, "the trainer group to settle")
    assert seen[-1] is not None
    return seen[-1]


def _model_records(bootstrap: str, topic: str) -> list[tuple[bytes, bytes, dict[str, bytes], int]]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    end = consumer.end_offsets([tp])[tp]
    out: list[tuple[bytes, bytes, dict[str, bytes], int]] = []
    deadline = time.monotonic() + 30
    try:
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                out.extend((r.key, r.value, dict(r.headers or []), r.timestamp) for r in records)
    finally:
        consumer.close()
    return out


def test_three_processes_added_and_killed_make_one_segmentation(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer, tmp_path: Path
) -> None:
    inp = new_topic(partitions=PARTITIONS, suffix="in")
    out, dlq = new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(CHUNK * CHUNKS, customers=150, seed=23, step_minutes=0.5)
    chunks = [events[i * CHUNK : (i + 1) * CHUNK] for i in range(CHUNKS)]
    procs: dict[str, ConsumerProcess] = {}
    produced = 0

    def start(name: str) -> None:
        proc = ConsumerProcess(_args(bootstrap, group_id, inp, out, dlq, name), tmp_path / f"{name}.log")
        procs[name] = proc
        wait_for(lambda: "restored" in proc.log_text(), 60, f"{name} to own partitions")

    def feed(n: int = 1) -> None:
        nonlocal produced
        for _ in range(n):
            produce(plain_producer, inp, list(chunks[produced // CHUNK]))
            produced += CHUNK

    def caught_up(timeout_s: float = 60) -> None:
        wait_for(
            lambda: _committed_total(bootstrap, group_id, inp) >= produced, timeout_s, f"{produced} committed offsets"
        )

    kill_at: float | None = None
    killed_trainer: str | None = None
    try:
        feed()
        start("a")
        caught_up()
        feed()
        start("b")
        caught_up()
        feed()
        start("c")
        caught_up()
        killed_trainer = _stable_trainer(procs)
        assert killed_trainer is not None
        feed()
        procs[killed_trainer].kill()
        kill_at = time.time()
        feed(2)
        caught_up(90)
        wait_for(lambda: _trainer_of(procs) not in (None, killed_trainer), 60, "a new trainer")
        start("d")
        feed(2)
        caught_up(90)
        trainer = _stable_trainer(procs)
        victim = next(n for n in procs if procs[n].alive() and n != trainer)
        procs[victim].kill()
        feed(CHUNKS - produced // CHUNK)
        caught_up(90)
        time.sleep(1.5)  # let the trainer publish what it learnt from the last vectors
        for proc in procs.values():
            if proc.alive():
                assert proc.terminate() == 0, proc.log_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.alive():
                proc.kill()

    assert produced == len(events)
    assert read_all(bootstrap, dlq, timeout_s=3) == [], "no valid event may be dead-lettered (late) under skew"
    records = read_all(bootstrap, out, timeout_s=10)
    messages = [orjson.loads(v) for _, v, _ in records if v is not None]
    changes = [m for m in messages if m["kind"] == "segment_change"]
    lifecycle = [m for m in messages if m["kind"] == "segment_lifecycle"]
    assert len(changes) > 200 and lifecycle, "the model must have become ready and customers assigned"

    # exactly-once: unbroken chains, no event twice
    chain: dict[tuple[str, str], str | None] = {}
    seen_events: set[tuple[str, str, str]] = set()
    for m in changes:
        key = (m["customer_id"], m["lens"])
        prev = chain.get(key)
        start_id = None if m["from_segment"] is None else m["from_segment"]["id"]
        assert start_id == prev, f"broken chain for {key}: {prev} then {m}"
        chain[key] = None if m["to_segment"] is None else m["to_segment"]["id"]
        if m["cause"] == "event":
            ev = (m["customer_id"], m["lens"], m["cause_event_id"])
            assert ev not in seen_events, f"duplicate output for {ev}"
            seen_events.add(ev)

    # one segmentation: the views of every version, from the model topic
    config = it_config()
    views: dict[tuple[str, int], dict[str, Any]] = {}
    newest_view: bytes | None = None
    trainer_records: list[tuple[str, int, int]] = []  # (instance, total version, timestamp ms)
    for mkey, mvalue, headers, ts in _model_records(bootstrap, f"{group_id}.model"):
        if mkey == b"view":
            data = codec.decode(mvalue, "view", 2)
            newest_view = mvalue
            for name, state in data["lenses"].items():
                views[(name, int(state["model_version"]))] = state
        elif mkey == b"trainer":
            versions = codec.decode(codec.decode(mvalue, "trainer-state", 2)["view"], "view", 2)["versions"]
            trainer_records.append((headers["instance"].decode(), sum(versions.values()), ts))
    assert newest_view is not None and trainer_records
    lens_cfg = {lc.name: lc for lc in config.lenses}
    checked = 0
    names: dict[tuple[str, int, str], str] = {}
    for m in changes:
        if m["to_segment"] is None:
            continue
        state = views.get((m["lens"], m["model_version"]))
        assert state is not None, f"output names model version {m['model_version']} that was never published"
        lens = Lens(lens_cfg[m["lens"]], config.seed)
        lens.load_state(state)
        raw = np.array([m["features"][f] for f in lens.feature_names], dtype=np.float64)
        got = lens.assign(raw, None, 0)
        target = int(m["to_segment"]["id"].rpartition("-")[2])
        assert got.nearest is not None and lens.is_live(target)
        x = lens._scaled(raw)  # features are rounded to 4 decimals in the output: compare distances
        d_target = float(np.linalg.norm(np.subtract(x, lens._centers[lens._live.index(target)])))
        assert d_target <= float(got.distance or 0.0) + 1e-3, f"{m} is not the nearest segment of its version"
        named = names.setdefault((m["lens"], m["model_version"], m["to_segment"]["id"]), m["to_segment"]["name"])
        assert named == m["to_segment"]["name"], "one id, two names in one model version"
        checked += 1
    assert checked > 200

    # the committed state agrees with the last output of every customer
    core = Segmenter(config, shared=True)
    core.load_shared_model(newest_view)
    latest: dict[str, bytes | None] = {}
    for skey, svalue, _ in read_all(bootstrap, f"{group_id}.state", timeout_s=10):
        if skey is not None and not skey.startswith(b"\x00"):
            latest[skey.decode()] = svalue
    for cid, record in latest.items():
        if record is not None:
            core.load_customer(cid, record)
    for (cid, lens_name), last in chain.items():
        view = core.customer_view(cid)
        assert view is not None, f"{cid} has outputs but no committed state"
        held = view.segments[lens_name]
        assert (None if held is None else held.id) == last, f"{cid}/{lens_name}: state {held} != last output {last}"

    # trainer failover: no id reuse, versions continue, bounded time to the successor's first snapshot
    born = [(m["lens"], m["segment"]["id"]) for m in lifecycle if m["action"] == "born"]
    assert len(born) == len(set(born)), "a segment id was born twice"
    by_version: defaultdict[int, set[str]] = defaultdict(set)
    for instance, total, _ in trainer_records:
        by_version[total].add(instance)
    totals = [total for _, total, _ in trainer_records]
    assert totals == sorted(totals), "model versions went backwards across trainers"
    assert kill_at is not None and killed_trainer is not None
    successor = [(inst, ts) for inst, _, ts in trainer_records if ts / 1000 > kill_at and inst != killed_trainer]
    assert successor, "no snapshot from a successor trainer"
    failover_s = successor[0][1] / 1000 - kill_at
    print(
        f"\ntrainer failover: {failover_s:.1f}s from SIGKILL of {killed_trainer} to the first snapshot of "
        f"{successor[0][0]}"
    )
    assert failover_s < SESSION_MS / 1000 + 2 * TXN_MS / 1000 + 15
