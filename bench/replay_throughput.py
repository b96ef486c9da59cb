"""Throughput of the offline pipeline (``segmenter replay``) next to a bare river loop.

Whole processes, on two scenarios (the dense ``personas`` stream and the
``sparse`` long-horizon retail one, :mod:`producer.retail`):

``segmenter replay`` (process)
    ``python -m segmenter -q replay EVENTS.jsonl --output /dev/null`` in a new
    process: start-up (imports, loading the compiled core from numba's cache),
    read, parse, the core, encode and write; wall time around the subprocess
    and its CPU time (user + system, from ``getrusage``).
``bare river`` (process)
    ``python -m bench.bare_river EVENTS.jsonl`` (:mod:`bench.bare_river`): a new
    process reading the same file, with a few counters per customer as its
    feature vectors and ``KMeans.learn_one`` + ``predict_one`` per event and
    lens of the default config (always this tree's script, also for ``--before``).

Each command runs once unmeasured first (it fills numba's cache, as the
Docker image does at build), then the best of ``--repeat`` runs counts. With
``--before REV`` the replay process also runs from a ``git archive`` of
revision ``REV`` (e.g. ``main``) on the same files, in the same run: before
and after side by side. The target is replay / bare river >= 2 on both
scenarios, start-up included.

In the same process, on the dense stream (the profile):

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
    python -m bench.replay_throughput --sparse-customers 20000 --before main
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from river import cluster

from bench.common import (
    BENCH_DIR,
    Row,
    SimRun,
    add_common_args,
    save_result,
    setup_logging,
    simulate,
    simulate_sparse,
)
from bench.processes import process_env
from segmenter.config import SegmenterConfig, default_config
from segmenter.events import parse_event
from segmenter.features import FEATURE_NAMES, FeatureStore, event_kind
from segmenter.gc_tuning import tune_gc
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK, ReplayIO, replay

log = logging.getLogger("bench.replay_throughput")

TARGET_RATIO = 2.0
ROOT = BENCH_DIR.parent


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
        wall, cpu, (report, _) = _timed(lambda: replay(path, Segmenter(config), ReplayIO(sink, clock=lambda: stamp)))
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


@dataclass(frozen=True)
class Timing:
    """Best wall-clock and CPU seconds of a whole process."""

    wall: float
    cpu: float


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_process(cmd: list[str], tree: Path, repeat: int) -> Timing:
    """Run ``cmd`` with ``tree`` first on ``PYTHONPATH``: once unmeasured, then the best of ``repeat`` runs.

    Raises
    ------
    RuntimeError
        The command failed (its stderr's tail is in the message).
    """
    env = process_env(tree)
    best: Timing | None = None
    for i in range(repeat + 1):
        cpu0, wall0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=False)
        wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode}: {proc.stderr[-2000:]}")
        if i > 0 and (best is None or wall < best.wall):
            best = Timing(wall, cpu)
    assert best is not None
    return best


def replay_command(path: Path) -> list[str]:
    """The ``segmenter replay`` process over ``path``, outputs to ``/dev/null``."""
    return [sys.executable, "-m", "segmenter", "-q", "replay", str(path), "--output", os.devnull]


def bare_command(path: Path, config: SegmenterConfig, seed: int) -> list[str]:
    """The :mod:`bench.bare_river` process over ``path``, one ``--lens`` per lens of ``config``."""
    lenses = [f"--lens={len(lc.features)}:{int(lc.params.get('n_clusters', 5))}" for lc in config.lenses]
    return [sys.executable, "-m", "bench.bare_river", str(path), *lenses, f"--seed={seed}"]


def export_tree(rev: str, into: Path) -> Path:
    """The files of git revision ``rev`` (``git archive``) under ``into``; returns the tree."""
    tree = into / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def _revision(rev: str) -> str:
    cmd = ["git", "-C", str(ROOT), "rev-parse", "--short", rev]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return out.stdout.strip() or rev


def measure_processes(
    sims: dict[str, SimRun], config: SegmenterConfig, tmp: Path, args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Whole-process timings per scenario: replay (this tree, and ``--before`` if given) and the bare loop."""
    before = export_tree(args.before, tmp) if args.before else None
    out: dict[str, dict[str, Any]] = {}
    for name, sim in sims.items():
        path = tmp / f"{name}.jsonl"
        sim.write_jsonl(path)
        runs = {"replay": whole_process(replay_command(path), ROOT, args.repeat)}
        if before is not None:
            runs["replay_before"] = whole_process(replay_command(path), before, args.repeat)
        runs["bare_river"] = whole_process(bare_command(path, config, args.seed), ROOT, args.repeat)
        n = len(sim)
        out[name] = {
            "events": n,
            "customers": sim.customers,
            "seconds": {k: {"wall": t.wall, "cpu": t.cpu} for k, t in runs.items()},
            "rates": {k: {"wall": n / t.wall, "cpu": n / t.cpu} for k, t in runs.items()},
            "ratio": {
                k: {"wall": runs["bare_river"].wall / t.wall, "cpu": runs["bare_river"].cpu / t.cpu}
                for k, t in runs.items()
                if k != "bare_river"
            },
        }
        log.info("%s: %s", name, {k: round(v["wall"], 2) for k, v in out[name]["ratio"].items()})
    return out


def process_rows(processes: dict[str, dict[str, Any]], before: str | None) -> list[Row]:
    """Rows of the whole-process comparison: replay (and the ``before`` revision's) vs the bare river process."""
    sect = "throughput: whole processes"
    rows: list[Row] = []
    for name, p in processes.items():
        label = f"{name} ({p['events']:,} events, {p['customers']:,} customers)"
        for key, who in (("replay", "segmenter replay"), ("replay_before", f"segmenter replay at {before}")):
            if key not in p["ratio"]:
                continue
            for clock in ("wall", "cpu"):
                ratio = p["ratio"][key][clock]
                target = key == "replay"
                rows.append(
                    Row(
                        sect,
                        f"{label}: {who} process vs bare river process, {clock}",
                        p["rates"][key][clock],
                        "events/s",
                        f"ratio >= {TARGET_RATIO:g}" if target else "",
                        p["rates"]["bare_river"][clock],
                        ratio,
                        ratio >= TARGET_RATIO if target else None,
                        note="start-up included" if key == "replay" else "before: same files, same run",
                    )
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000, help="simulated customers (default %(default)s)")
    parser.add_argument("--days", type=float, default=10.0, help="simulated days (default %(default)s)")
    parser.add_argument("--max-events", type=int, default=200_000, help="cut the stream here (default %(default)s)")
    parser.add_argument(
        "--reference-events", type=int, default=40_000, help="events of the bare river loop (default %(default)s)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs of each (default %(default)s)")
    parser.add_argument("--sparse-customers", type=int, default=20_000, help="customers of the sparse scenario")
    parser.add_argument("--sparse-days", type=float, default=548.0, help="days of the sparse scenario")
    parser.add_argument("--before", default=None, metavar="REV", help="also time segmenter replay at git revision REV")
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
    sparse = simulate_sparse(args.sparse_customers, args.sparse_days, args.seed)
    log.info("sparse: %d events of %d customers", len(sparse), sparse.customers)
    with tempfile.TemporaryDirectory() as tmp:
        processes = measure_processes({"dense": sim, "sparse": sparse}, config, Path(tmp), args)
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
        "processes": processes,
        "before": _revision(args.before) if args.before else None,
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
    before = f"{args.before} ({data['before']})" if args.before else None
    rows += process_rows(processes, before)
    save_result("replay_throughput", data, rows, args.out)
    print(f"events {n:,} ({sim.customers:,} customers); bare river on {m:,}")
    for name, r in rates.items():
        print(f"  {name:<12} {r['wall']:>10,.0f} events/s wall   {r['cpu']:>10,.0f} events/s cpu")
    print(f"  replay / bare river: {ratio_wall:.2f} (wall), {ratio_cpu:.2f} (cpu); target >= {TARGET_RATIO:g}")
    for name, p in processes.items():
        ratios = ", ".join(f"{k} {v['wall']:.2f} (wall) {v['cpu']:.2f} (cpu)" for k, v in p["ratio"].items())
        print(f"  whole processes, {name} ({p['events']:,} events): {ratios} x the bare river process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
