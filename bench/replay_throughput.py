"""Throughput of the offline pipeline (``segmenter replay``) next to a bare river loop.

In one run, on the same simulated events:

``replay``
    :func:`segmenter.replay.replay` over a JSONL file: read, JSON parse and
    validate, :meth:`Segmenter.process` (features, every lens, hysteresis,
    refinement, inactivity), encode and write the outputs (to ``/dev/null``),
    exactly what ``segmenter replay EVENTS.jsonl --output OUT`` does minus the
    console.
``process``
    :meth:`Segmenter.process_batch` alone over pre-parsed events, in replay's
    chunks (the core's own cost, for the profile).
``bare river``
    The naive per-event use of river: for every event and every lens of the
    default config, ``KMeans.learn_one`` + ``KMeans.predict_one`` on the
    customer's current feature vector (pre-computed, as ``{0: x0, ...}`` dicts;
    no parsing, no features, no outputs). Measured on the first
    ``--reference-events`` events (its cost per event does not depend on
    the position in the stream).

The target is replay / bare river >= 2 (the pipeline must not pay river's
per-event cost). Both wall-clock and CPU-time ratios are reported; on a shared
machine the CPU-time ratio is the steadier one. The process runs with the
garbage-collector settings of the ``segmenter`` command (:func:`segmenter.gc_tuning.tune_gc`),
which every measurement shares; each is the best of ``--repeat`` runs (the first
call of the compiled loop in a process loads it from numba's cache, about 0.2 s).

Usage::

    python -m bench.replay_throughput --customers 2000 --days 14
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from river import cluster

from bench.common import Row, add_common_args, save_result, setup_logging, simulate
from segmenter.config import SegmenterConfig, default_config
from segmenter.events import parse_event
from segmenter.features import FEATURE_NAMES, FeatureStore, event_kind
from segmenter.gc_tuning import tune_gc
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK, replay

log = logging.getLogger("bench.replay_throughput")

TARGET_RATIO = 2.0


def _timed(fn: Any) -> tuple[float, float, Any]:
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - w0, time.process_time() - c0, value


def feature_vectors(values: list[bytes], config: SegmenterConfig) -> list[list[dict[int, float]]]:
    """Per event, per lens: the customer's feature vector after the event, as river's ``{index: value}`` dict."""
    store = FeatureStore(config.features, len(config.lenses))
    idx = [[FEATURE_NAMES.index(f) for f in lc.features] for lc in config.lenses]
    out: list[list[dict[int, float]]] = []
    for raw in values:
        ev = parse_event(raw)
        t = store.to_seconds(ev.epoch)
        row = store.ingest(ev.customer_id, ev.event_id, event_kind(ev.type), t, ev.amount)
        if row < 0:
            continue
        vec = store.vector(row, store.last_time(row))
        out.append([{j: vec[i] for j, i in enumerate(ix)} for ix in idx])
    return out


def bare_river(vectors: list[list[dict[int, float]]], config: SegmenterConfig, seed: int) -> tuple[float, float]:
    """``KMeans.learn_one`` + ``predict_one`` per event and lens; returns (wall, cpu) seconds."""
    models: list[Any] = [
        cluster.KMeans(n_clusters=int(lc.params.get("n_clusters", 5)), seed=seed) for lc in config.lenses
    ]

    def loop() -> None:
        for per_lens in vectors:
            for model, x in zip(models, per_lens, strict=True):
                model.learn_one(x)
                model.predict_one(x)

    wall, cpu, _ = _timed(loop)
    return wall, cpu


def run_replay(path: Path, config: SegmenterConfig) -> tuple[float, float, dict[str, int]]:
    """The replay command's pipeline; returns (wall, cpu, outputs per kind)."""
    stamp = "2026-01-01T00:00:00+00:00"
    with open(os.devnull, "wb") as sink:
        wall, cpu, (report, _) = _timed(lambda: replay(path, config, output=sink, clock=lambda: stamp))
    return wall, cpu, dict(report.outputs)


def run_process(values: list[bytes], config: SegmenterConfig) -> tuple[float, float]:
    """:meth:`Segmenter.process_batch` over pre-parsed events, in replay's chunks; returns (wall, cpu)."""
    events = [parse_event(v) for v in values]
    seg = Segmenter(config)

    def loop() -> None:
        for i in range(0, len(events), REPLAY_CHUNK):
            seg.process_batch(events[i : i + REPLAY_CHUNK])

    wall, cpu, _ = _timed(loop)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers (default %(default)s)")
    parser.add_argument("--days", type=float, default=10.0, help="simulated days (default %(default)s)")
    parser.add_argument("--max-events", type=int, default=200_000, help="cut the stream here (default %(default)s)")
    parser.add_argument(
        "--reference-events", type=int, default=40_000, help="events of the bare river loop (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs of each (default %(default)s)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    tune_gc()  # as the `segmenter` command does

    config = default_config()
    sim = simulate(args.customers, args.days, args.seed, max_events=args.max_events)
    n = len(sim)
    log.info("simulated %d events of %d customers", n, sim.customers)
    vectors = feature_vectors(sim.values[: args.reference_events], config)
    best: dict[str, tuple[float, float]] = {}
    outputs: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        sim.write_jsonl(path)
        for _ in range(args.repeat):
            wall, cpu = bare_river(vectors, config, args.seed)
            best["bare_river"] = min(best.get("bare_river", (wall, cpu)), (wall, cpu))
            wall, cpu, outputs = run_replay(path, config)
            best["replay"] = min(best.get("replay", (wall, cpu)), (wall, cpu))
            wall, cpu = run_process(sim.values, config)
            best["process"] = min(best.get("process", (wall, cpu)), (wall, cpu))
    m = len(vectors)
    rates = {
        "replay": {"wall": n / best["replay"][0], "cpu": n / best["replay"][1]},
        "process": {"wall": n / best["process"][0], "cpu": n / best["process"][1]},
        "bare_river": {"wall": m / best["bare_river"][0], "cpu": m / best["bare_river"][1]},
    }
    ratio_wall = rates["replay"]["wall"] / rates["bare_river"]["wall"]
    ratio_cpu = rates["replay"]["cpu"] / rates["bare_river"]["cpu"]
    data = {
        "params": {
            "customers": args.customers,
            "days": args.days,
            "events": n,
            "reference_events": m,
            "repeat": args.repeat,
            "lenses": [lc.name for lc in config.lenses],
        },
        "rates": rates,
        "outputs": outputs,
        "ratio_wall": ratio_wall,
        "ratio_cpu": ratio_cpu,
    }
    sect = "throughput: offline pipeline"
    rows = [
        Row(
            sect,
            "replay events/s (wall) vs bare river KMeans learn+predict",
            rates["replay"]["wall"],
            "events/s",
            f"ratio >= {TARGET_RATIO:g}",
            rates["bare_river"]["wall"],
            ratio_wall,
            ratio_wall >= TARGET_RATIO,
        ),
        Row(
            sect,
            "replay events/s (CPU time) vs bare river",
            rates["replay"]["cpu"],
            "events/s",
            f"ratio >= {TARGET_RATIO:g}",
            rates["bare_river"]["cpu"],
            ratio_cpu,
            ratio_cpu >= TARGET_RATIO,
        ),
        Row(
            sect,
            "Segmenter.process alone (pre-parsed, wall)",
            rates["process"]["wall"],
            "events/s",
            reference=rates["bare_river"]["wall"],
            ratio=rates["process"]["wall"] / rates["bare_river"]["wall"],
        ),
    ]
    save_result("replay_throughput", data, rows, args.out)
    print(f"events {n:,} ({sim.customers:,} customers); bare river on {m:,}")
    for name, r in rates.items():
        print(f"  {name:<12} {r['wall']:>10,.0f} events/s wall   {r['cpu']:>10,.0f} events/s cpu")
    print(f"  replay / bare river: {ratio_wall:.2f} (wall), {ratio_cpu:.2f} (cpu); target >= {TARGET_RATIO:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
