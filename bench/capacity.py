"""Capacity of shared mode on paper: how many processes one trainer serves, from two measurements.

In one run, on the same simulated events (:func:`bench.common.simulate`):

``process``
    CPU seconds per event of a shared-mode core,
    ``Segmenter(config, shared=True, vector_every=k).process_batch`` over pre-parsed
    events in batches of the service's default batch size, plus the
    ``take_vectors()`` that encodes each batch's sampled vectors for the trainer
    (what a process does per batch besides Kafka), assigning with a trained view;
    for each ``k`` in ``--vector-every``.
``trainer``
    Vectors per CPU second of ``ModelTrainer.apply`` on those encoded batches
    (decode, ``Lens.observe`` per vector and lens, the refinement sample and the
    refinements it triggers), for both lenses and for each lens alone (what a
    trainer per lens would do); and the CPU of one ``view()`` + ``state()``
    (what the trainer serialises per commit, every ``trainer_commit_interval_ms``).

From them: a process at full speed scores ``1 / process`` events per CPU
second and sends ``1/k`` of them as vectors, so one trainer keeps up with
``trainer x k`` events/s of group input. The trainer runs as a thread of one
of the processes and takes its CPU from that process (one interpreter lock per
process); a group of ``N`` single-core processes at input rate ``x`` needs
``x x process + x / (trainer x k) <= N`` cores, and the trainer is the
bottleneck once ``x = trainer x k`` needs more: the largest group it serves is
``N = 1 + trainer x k x process`` processes. The Kafka edge adds its own cost per event to each
process (bench/peer_quix.py measures the whole service), which only makes each
process slower and the group one trainer serves larger; the figures here are
for the core alone, the conservative bound.

Usage::

    python -m bench.capacity --customers 5000 --days 20 --vector-every 1 10 100
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from typing import Any

from bench.common import Row, add_common_args, save_result, setup_logging, simulate
from consumer.settings import Settings
from segmenter.config import SegmenterConfig, default_config
from segmenter.events import CustomerEvent, parse_event
from segmenter.gc_tuning import tune_gc
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer

log = logging.getLogger("bench.capacity")

BATCH: int = Settings.model_fields["batch_size"].default
"""The service's default batch size (events per process_batch call and per vectors record)."""


def _cpu(fn: Any) -> tuple[float, Any]:
    c0 = time.process_time()
    value = fn()
    return time.process_time() - c0, value


def shared_blobs(
    config: SegmenterConfig, events: list[CustomerEvent], k: int, view: bytes | None
) -> tuple[float, list[bytes]]:
    """One shared-mode core over ``events`` in batches; returns (CPU seconds, the encoded vectors per batch)."""
    seg = Segmenter(config, shared=True, vector_every=k)
    if view is not None:
        seg.load_shared_model(view)
    blobs: list[bytes] = []

    def loop() -> None:
        for i in range(0, len(events), BATCH):
            seg.process_batch(events[i : i + BATCH])
            blob = seg.take_vectors()
            if blob is not None:
                blobs.append(blob)

    cpu, _ = _cpu(loop)
    return cpu, blobs


def single_cpu(config: SegmenterConfig, events: list[CustomerEvent]) -> float:
    """CPU seconds of a single-mode core (it learns and assigns) over ``events`` in the service's batches."""
    seg = Segmenter(config)
    cpu, _ = _cpu(lambda: [seg.process_batch(events[i : i + BATCH]) for i in range(0, len(events), BATCH)])
    return cpu


def train(config: SegmenterConfig, blobs: list[bytes]) -> tuple[float, ModelTrainer]:
    """``ModelTrainer.apply`` over every blob; returns (CPU seconds, the trainer)."""
    trainer = ModelTrainer(config)
    cpu, _ = _cpu(lambda: [trainer.apply(b) for b in blobs])
    return cpu, trainer


def one_lens(config: SegmenterConfig, name: str) -> SegmenterConfig:
    """``config`` with only the lens ``name`` (a trainer per lens)."""
    return config.model_copy(update={"lenses": [lc for lc in config.lenses if lc.name == name]})


def measure(config: SegmenterConfig, events: list[CustomerEvent], every: list[int]) -> dict[str, Any]:
    """Every measurement of the module docstring, as plain numbers."""
    Segmenter(config, shared=True).process_batch(events[:BATCH])  # loads the compiled loop (numba's cache)
    _, warm = shared_blobs(config, events, 1, None)
    _, trained = train(config, warm)  # a trained view to assign with, as a running group has
    view = trained.view()
    process: dict[int, float] = {}
    blobs_k1: list[bytes] = []
    for k in every:
        cpu, blobs = shared_blobs(config, events, k, view)
        process[k] = cpu / len(events)
        if k == 1:
            blobs_k1 = blobs
    blobs_k1 = blobs_k1 or shared_blobs(config, events, 1, view)[1]
    vectors = len(events)
    trainer: dict[str, float] = {}
    cpu, full = train(config, blobs_k1)
    trainer["both lenses"] = vectors / cpu
    for lc in config.lenses:
        single = one_lens(config, lc.name)  # a trainer per lens reads vectors records of its own lens
        cpu, _ = train(single, shared_blobs(single, events, 1, None)[1])
        trainer[lc.name] = vectors / cpu
    commit_cpu, _ = _cpu(lambda: (full.view(), full.state()))
    return {
        "process_cpu_per_event": process,
        "single_cpu_per_event": single_cpu(config, events) / len(events),
        "trainer_vectors_per_s": trainer,
        "trainer_commit_cpu_s": commit_cpu,
        "vectors": vectors,
    }


def largest_group(trainer_rate: float, k: int, process_cpu: float) -> float:
    """``1 + trainer x k x process``: processes at full speed one trainer (a thread of one of them) keeps up with."""
    return 1 + trainer_rate * k * process_cpu


def capacity_rows(m: dict[str, Any]) -> list[Row]:
    """The rows: the two measurements, and the largest group one trainer serves at each ``vector_every``."""
    sect = "capacity: shared mode, one trainer"
    v = m["trainer_vectors_per_s"]
    per_lens = min(rate for name, rate in v.items() if name != "both lenses")
    rows = [Row(sect, f"trainer: ModelTrainer.apply, {name}", rate, "vectors/s (CPU)") for name, rate in v.items()]
    rows.append(Row(sect, "trainer: view() + state() per commit", m["trainer_commit_cpu_s"] * 1e3, "ms (CPU)"))
    for key, cpu in sorted(m["process_cpu_per_event"].items(), key=lambda kv: int(kv[0])):
        k = int(key)
        n = largest_group(v["both lenses"], k, cpu)
        rows += [
            Row(
                sect,
                f"vector_every={k}: a process's core, per event",
                cpu * 1e6,
                "us (CPU)",
                reference=None,
                note=f"{1 / cpu:,.0f} events/s per core",
            ),
            Row(
                sect,
                f"vector_every={k}: group input one trainer keeps up with",
                v["both lenses"] * k,
                "events/s",
                note=f"a trainer per lens: {per_lens * k:,.0f} events/s",
            ),
            Row(
                sect,
                f"vector_every={k}: largest group of full-speed processes",
                float(math.floor(n)),
                "processes",
                note=f"1 + trainer x k x process = {n:.2f}; a trainer per lens: {largest_group(per_lens, k, cpu):.2f}",
            ),
        ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--days", type=float, default=20.0)
    parser.add_argument("--max-events", type=int, default=200_000)
    parser.add_argument("--vector-every", type=int, nargs="+", default=[1, 10, 100])
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    tune_gc()
    sim = simulate(args.customers, args.days, args.seed, max_events=args.max_events)
    events = [parse_event(v) for v in sim.values]
    m = measure(default_config(), events, args.vector_every)
    rows = capacity_rows(m)
    params = {
        "customers": args.customers,
        "days": args.days,
        "events": len(events),
        "batch": BATCH,
        "vector_every": args.vector_every,
    }
    save_result("capacity", {"params": params, **m}, rows, args.out)
    for r in rows:
        print(f"{r.metric}: {r.measured:,.2f} {r.unit}{'  (' + r.note + ')' if r.note else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


PAST_THE_LIMIT = """\
Past the largest group, the trainer falls behind: the `<group>.vectors` topic's lag grows without
bound, the view the processes assign with gets older (assignment goes on, with a model that learns
from ever older data), a successor trainer must first read the whole backlog, and the trainer's host
process, whose interpreter the trainer thread saturates, processes its own partitions slower. What
lifts the limit, from the measurements above: a larger `vector_every` (the trainer's load falls by
the same factor; each refinement still sees its `refine.sample_size` customers as long as the group
samples that many between refinements); a trainer per lens (the lenses learn independently; the
slowest lens alone sets the limit, the "trainer per lens" figures); and the trainer in a process
of its own (a core to itself: `trainer x k x process` processes without the host's share)."""


def edge_cpu_per_event(peer: dict[str, Any] | None, single_core: float | None) -> float | None:
    """What the Kafka edge adds per event: the whole single-mode service of the peer run (1 partition, CPU of
    every thread) minus a single-mode core alone; ``None`` without both measurements."""
    if peer is None or single_core is None or "1" not in peer["data"]["measured"]:
        return None
    ours = peer["data"]["measured"]["1"]["ours"]
    return max(0.0, float(ours["cpu_s"]) / float(ours["events"]) - single_core)


def capacity_section(result: dict[str, Any], peer: dict[str, Any] | None = None) -> list[str]:
    """The Markdown section of a saved result: the measurements, the table per ``vector_every``, the prose.

    With the same run's peer result (bench/peer_quix.py), the table also shows
    whole processes: a shared-mode core plus what the Kafka edge costs per event.
    """
    m = result["data"]
    v = m["trainer_vectors_per_s"]
    per_lens = min(rate for name, rate in v.items() if name != "both lenses")
    edge = edge_cpu_per_event(peer, m.get("single_cpu_per_event"))
    lines = [
        f"Trainer (`ModelTrainer.apply`, CPU): {v['both lenses']:,.0f} vectors/s for both lenses; alone: "
        + ", ".join(f"{name} {rate:,.0f}" for name, rate in v.items() if name != "both lenses")
        + f". `view()` + `state()` per trainer commit: {m['trainer_commit_cpu_s'] * 1e3:.1f} ms.",
    ]
    if edge is not None:
        lines.append(
            f"The Kafka edge per event: {edge * 1e6:.1f} us of CPU (the peer run's whole single-mode service, "
            f"{(edge + m['single_cpu_per_event']) * 1e6:.1f} us/event on 1 partition, minus a single-mode core "
            f"alone here, {m['single_cpu_per_event'] * 1e6:.1f} us/event); a whole shared-mode process is its core "
            "plus that."
        )
    head = "| vector_every | process core, us/event | events/s per core | input one trainer keeps up with, events/s "
    head += "| largest group (processes) | with a trainer per lens |"
    if edge is not None:
        head += " whole process, us/event | largest group of whole processes |"
    lines += ["", head, "|" + "---|" * (head.count("|") - 1)]
    for key, cpu in sorted(m["process_cpu_per_event"].items(), key=lambda kv: int(kv[0])):
        k = int(key)
        row = (
            f"| {k} | {cpu * 1e6:.1f} | {1 / cpu:,.0f} | {v['both lenses'] * k:,.0f} | "
            f"{math.floor(largest_group(v['both lenses'], k, cpu))} | {math.floor(largest_group(per_lens, k, cpu))} |"
        )
        if edge is not None:
            row += f" {(cpu + edge) * 1e6:.1f} | {math.floor(largest_group(v['both lenses'], k, cpu + edge))} |"
        lines.append(row)
    note = (
        "A process's cost in the first columns is its core alone, the conservative bound. The Kafka edge adds its "
        "own, which slows each process and lets one trainer serve proportionally more processes: with a whole "
        "process at X us/event, the largest group is 1 + trainer x k x X."
    )
    return [*lines, "", note, "", PAST_THE_LIMIT]
