"""Run every benchmark and write ``bench/RESULTS.md`` and the plots (``make bench``).

Each step runs in its own Python process (a clean heap for the memory
measurement, no interference between steps) and writes ``<out>/<step>.json``;
:mod:`bench.report` then writes the Markdown report and the PNG plots. A step
that fails is reported and the others still run; the exit code is 1 if any
step failed (not if a target is missed: the report says which).

Steps and their default ("full", about ten minutes on two cores) sizes:

``consumer_throughput``  20k events through segmenter-consumer (exactly-once, at-least-once), a bare consumer and a
                         bare exactly-once pass-through
``replay_throughput``    200k simulated events through ``segmenter replay`` vs a bare river loop; whole processes
                         (start-up included) on the dense and the sparse (20k customers) scenarios
``latency``              1k, 5k and 20k events/s offered, exactly-once, real broker
``memory``               100k and 1M customers
``quality``              every algorithm on the personas, the well-separated and the sparse (20k customers, 18
                         months) scenarios; the sparse one with a bad clock for the first algorithm
``peer_quix``            100k events on 1 and 3 partitions: ours vs a Quix Streams application vs the bare references
``capacity``             a shared-mode process's cost per event and the trainer's ingest rate (largest group)

``--size smoke`` runs everything at tiny sizes (a few seconds per step; the
smoke tests use it). Kafka steps need the broker (``make kafka-start``);
``--no-kafka`` skips them.

Usage::

    python -m bench.run_all [--size full|smoke] [--only quality memory] [--no-kafka]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, OUT_DIR, Row, add_common_args, save_result, setup_logging
from bench.consumer_throughput import DEFAULT_BATCH_SIZE, measure_rates
from bench.report import write_report
from segmenter.gc_tuning import tune_gc

log = logging.getLogger("bench.run_all")

ROOT = BENCH_DIR.parent
KAFKA_STEPS = ("consumer_throughput", "latency", "peer_quix")
STEPS = ("consumer_throughput", "replay_throughput", "latency", "memory", "quality", "peer_quix", "capacity")
CONSUMER_TARGET = 0.5

SIZES: dict[str, dict[str, list[str]]] = {
    "full": {
        "consumer_throughput": ["--events", "20000", "--customers", "2000"],
        "replay_throughput": [
            "--customers",
            "2000",
            "--days",
            "10",
            "--max-events",
            "200000",
            "--reference-events",
            "40000",
            "--sparse-customers",
            "20000",
        ],
        "latency": ["--rates", "1000", "5000", "20000", "--seconds", "15", "15", "5", "--customers", "5000"],
        "memory": ["--sizes", "100000", "1000000"],
        "quality": ["--customers", "1000", "--days", "30", "--separated-customers", "800",
                    "--sparse-customers", "20000"],
        "peer_quix": ["--events", "100000", "--customers", "10000", "--partitions", "1", "3"],
        "capacity": ["--customers", "5000", "--days", "20", "--max-events", "200000"],
    },
    "smoke": {
        "consumer_throughput": ["--events", "300", "--customers", "30"],
        "replay_throughput": ["--customers", "60", "--days", "3", "--max-events", "3000", "--reference-events", "1000",
                              "--sparse-customers", "100", "--sparse-days", "200", "--repeat", "1"],
        "latency": [
            "--rates",
            "200",
            "--seconds",
            "2",
            "--customers",
            "300",
            "--warmup-events",
            "400",
            "--drain-timeout",
            "60",
        ],
        "memory": ["--sizes", "2000", "--warmup", "400"],
        "quality": ["--customers", "40", "--days", "4", "--sparse-customers", "100", "--sparse-days", "200",
                    "--algorithms", "kmeans", "dbstream"],
        "peer_quix": ["--events", "300", "--customers", "30", "--partitions", "1"],
        "capacity": ["--customers", "60", "--days", "3", "--max-events", "3000"],
    },
}


def consumer_throughput(argv: list[str]) -> int:
    """The consumer throughput step: bench/consumer_throughput.py's helpers, results as JSON."""
    parser = argparse.ArgumentParser(prog="bench.run_all consumer_throughput")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the service's")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    tune_gc()  # as segmenter-consumer does
    r = measure_rates(args.bootstrap, args.events, args.customers, args.batch_size, args.timeout)
    bare, eos, alos = r.bare, r.exactly_once, r.at_least_once
    data = {
        "params": {"events": args.events, "customers": args.customers,
                   "batch_size": args.batch_size or DEFAULT_BATCH_SIZE},
        "bare": bare,
        "bare_eos": r.bare_eos,
        "exactly_once": eos,
        "at_least_once": alos,
    }
    sect = "throughput: Kafka consumer"
    rows = [
        Row(sect, "exactly-once events/s vs bare kafka-python read+decode", eos, "events/s",
            f"ratio >= {CONSUMER_TARGET}", bare, eos / bare, eos / bare >= CONSUMER_TARGET),
        Row(sect, "at-least-once events/s vs bare kafka-python read+decode", alos, "events/s",
            f"ratio >= {CONSUMER_TARGET}", bare, alos / bare, alos / bare >= CONSUMER_TARGET),
    ]
    if r.bare_eos is not None:
        rows += [
            Row(sect, "bare kafka-python exactly-once pass-through vs bare read+decode (the client's own ceiling)",
                r.bare_eos, "events/s", reference=bare, ratio=r.bare_eos / bare,
                note="read, decode, one record per event, one transaction per poll"),
            Row(sect, "exactly-once events/s vs the bare exactly-once pass-through", eos, "events/s",
                reference=r.bare_eos, ratio=eos / r.bare_eos),
        ]
    save_result("consumer_throughput", data, rows, args.out)
    print(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in data.items()}))
    return 0


def run_step(step: str, extra: list[str], out: Path, timeout: float) -> tuple[bool, float, str]:
    """Run one step in a subprocess; returns (ok, seconds, tail of stderr)."""
    if step == "consumer_throughput":
        cmd = [sys.executable, "-m", "bench.run_all", "--step-consumer-throughput", "--", *extra, "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", f"bench.{step}", *extra, "--out", str(out)]
    log.info("step %s: %s", step, " ".join(cmd[1:]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
    took = time.perf_counter() - t0
    if proc.stdout.strip():
        print(proc.stdout.rstrip())
    return proc.returncode == 0, took, proc.stderr[-3000:]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--step-consumer-throughput"]:
        rest = argv[1:]
        return consumer_throughput(rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="full", help="sizes of every step (default full)")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=None, help="run only these steps")
    parser.add_argument("--no-kafka", action="store_true", help="skip the steps that need the broker")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="results and plots (default bench/out)")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="the report (Markdown)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--step-timeout", type=float, default=1200, help="seconds allowed per step")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    steps = [s for s in STEPS if (args.only is None or s in args.only) and not (args.no_kafka and s in KAFKA_STEPS)]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only is None:  # a full run starts from a clean results directory
        for stale in args.out.glob("*.json"):
            stale.unlink()
    status: dict[str, Any] = {}
    failed = []
    t_all = time.perf_counter()
    for step in steps:
        ok, took, err = run_step(step, SIZES[args.size][step], args.out, args.step_timeout)
        status[step] = {"ok": ok, "seconds": round(took, 1)}
        log.info("step %s %s in %.0f s", step, "done" if ok else "FAILED", took)
        if not ok:
            failed.append(step)
            log.error("step %s failed:\n%s", step, err)
    log.info("all steps in %.0f s", time.perf_counter() - t_all)
    status_path = args.out / "run_all.status"
    if args.only is not None and status_path.exists():  # keep the other steps' status of an earlier run
        with contextlib.suppress(OSError, json.JSONDecodeError):
            status = {**json.loads(status_path.read_text()).get("steps", {}), **status}
    status_path.write_text(json.dumps({"size": args.size, "steps": status}, indent=1) + "\n")
    try:
        path = write_report(
            args.out,
            args.results,
            plots=not args.no_plots,
            command="make bench" if args.size == "full" else f"python -m bench.run_all --size {args.size}",
        )
        print(f"report: {path}")
    except FileNotFoundError as exc:
        log.error("no report: %s", exc)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
