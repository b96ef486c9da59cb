"""Run every benchmark and write ``bench/RESULTS.md`` and the plots (``make bench``).

Each step runs in its own Python process (a clean heap for the memory
measurement, no interference between steps) and writes ``<out>/<step>.json``;
:mod:`bench.report` then writes the Markdown report and the PNG plots. A step
that fails or runs past its time limit is reported and the others still run;
the exit code is 1 if any step failed (not if a target is missed: the report
and the summary printed at the end say which, PASS or FAIL next to each target).

The steps, their sizes and time limits are the table :data:`STEPS` (the
report lists each step's arguments and wall time). A run never takes more than
``--budget`` (45 minutes): a step gets at most its own limit and what is left
of the budget (stopped past it, with every process it started), and a step the
budget no longer allows is skipped and reported. Measured on 2026-12-01 on two
cores shared with other work (load average 8-10): the full steps took 24
minutes together, memory (9.5 min) and quality (5 min) the longest.
``--quick`` runs every step at tiny sizes (about a minute and a half in all) to
check the pipeline, not to measure. Kafka steps need the broker
(``make kafka-start``); ``--no-kafka`` skips them.

Usage::

    python -m bench.run_all [--quick] [--only quality memory] [--no-kafka]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import BENCH_DIR, OUT_DIR, Row, add_common_args, load_results, save_result, setup_logging
from bench.consumer_throughput import DEFAULT_BATCH_SIZE, measure_rates
from bench.report import STATUS_FILE, summary_lines, write_report
from segmenter.gc_tuning import tune_gc

log = logging.getLogger("bench.run_all")

ROOT = BENCH_DIR.parent
CONSUMER_TARGET = 0.5


@dataclass(frozen=True)
class Step:
    """One benchmark script of the run: what it measures, its arguments at each size, its time limit."""

    name: str
    what: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    limit_s: float
    """Wall seconds allowed at the full sizes (the run stops the step past it)."""
    kafka: bool = False


STEPS: tuple[Step, ...] = (
    Step("consumer_throughput", "segmenter-consumer exactly-once and at-least-once vs bare kafka-python read and "
         "exactly-once pass-through",
         ("--events", "20000", "--customers", "2000"),
         ("--events", "300", "--customers", "30"), 180, kafka=True),
    Step("replay_throughput", "segmenter replay vs a bare river loop; whole processes on the dense and the sparse "
         "scenarios",
         ("--customers", "2000", "--days", "10", "--max-events", "200000", "--reference-events", "40000",
          "--sparse-customers", "20000"),
         ("--customers", "60", "--days", "3", "--max-events", "3000", "--reference-events", "1000",
          "--sparse-customers", "100", "--sparse-days", "200", "--repeat", "1"), 420),
    Step("latency", "event -> committed output at offered rates, exactly-once, real broker",
         ("--rates", "1000", "5000", "20000", "--seconds", "15", "15", "5", "--customers", "5000"),
         ("--rates", "200", "--seconds", "2", "--customers", "300", "--warmup-events", "2500",
          "--drain-timeout", "60"), 240, kafka=True),
    Step("memory", "RSS per customer of the running consumer (the slope over each span up to 1M customers and "
         "over 250k to 1M) and the cost of a new customer",
         ("--sizes", "50000", "250000", "500000", "1000000", "--cost-events", "50000"),
         ("--sizes", "2000", "6000", "--warmup", "400", "--cost-events", "2000"), 900, kafka=True),
    Step("quality", "every algorithm on every scenario, the sparse long-horizon one and one event a year ahead "
         "among them",
         ("--customers", "600", "--days", "30", "--separated-customers", "500", "--sparse-customers", "5000"),
         ("--customers", "40", "--days", "4", "--sparse-customers", "100", "--sparse-days", "200",
          "--algorithms", "kmeans", "dbstream"), 660),
    Step("backlog", "a 3-partition backlog (partition by partition) read by a fresh group: sparse and dense",
         ("--sparse-customers", "20000", "--customers", "500", "--days", "10"),
         ("--sparse-customers", "200", "--sparse-days", "200", "--customers", "30", "--days", "2"), 240, kafka=True),
    Step("peer_quix", "ours vs a Quix Streams application vs the bare references, 1 and 3 partitions",
         ("--events", "100000", "--customers", "10000", "--partitions", "1", "3"),
         ("--events", "300", "--customers", "30", "--partitions", "1"), 420, kafka=True),
    Step("model_traffic", "bytes written to the model topic per million events, before and after the split",
         ("--events", "50000", "--customers", "2000"),
         ("--events", "3000", "--customers", "100", "--repeat", "1"), 120),
    Step("capacity", "a shared-mode process's cost per event, the trainer's ingest rate, the largest group",
         ("--customers", "5000", "--days", "20", "--max-events", "200000"),
         ("--customers", "60", "--days", "3", "--max-events", "3000"), 180),
)  # fmt: skip
"""Every step in the order it runs (the report keeps this order)."""

SIZES = ("full", "quick")
MIN_STEP_S = 30.0
"""A step is not started with less of the budget left than this."""


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
        "params": {
            "events": args.events,
            "customers": args.customers,
            "batch_size": args.batch_size or DEFAULT_BATCH_SIZE,
        },
        "bare": bare,
        "bare_eos": r.bare_eos,
        "exactly_once": eos,
        "at_least_once": alos,
    }
    sect = "throughput: Kafka consumer"
    rows = [
        Row(
            sect,
            "exactly-once events/s vs bare kafka-python read+decode",
            eos,
            "events/s",
            f"ratio >= {CONSUMER_TARGET}",
            bare,
            eos / bare,
            eos / bare >= CONSUMER_TARGET,
        ),
        Row(
            sect,
            "at-least-once events/s vs bare kafka-python read+decode",
            alos,
            "events/s",
            f"ratio >= {CONSUMER_TARGET}",
            bare,
            alos / bare,
            alos / bare >= CONSUMER_TARGET,
        ),
    ]
    if r.bare_eos is not None:
        rows += [
            Row(
                sect,
                "bare kafka-python exactly-once pass-through vs bare read+decode (the client's own ceiling)",
                r.bare_eos,
                "events/s",
                reference=bare,
                ratio=r.bare_eos / bare,
                note="read, decode, one record per event, one transaction per poll",
            ),
            Row(
                sect,
                "exactly-once events/s vs the bare exactly-once pass-through",
                eos,
                "events/s",
                reference=r.bare_eos,
                ratio=eos / r.bare_eos,
            ),
        ]
    save_result("consumer_throughput", data, rows, args.out)
    print(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in data.items()}))
    return 0


def run_step(step: Step, size: str, out: Path, left_s: float) -> dict[str, Any]:
    """Run one step in a subprocess for at most ``left_s``; its status: ok, wall seconds, arguments, failure."""
    extra = list(step.full if size == "full" else step.quick)
    status: dict[str, Any] = {"what": step.what, "args": extra}
    if left_s < MIN_STEP_S:
        return {**status, "ok": False, "seconds": 0.0, "error": "skipped: the run's budget was spent"}
    if step.name == "consumer_throughput":
        cmd = [sys.executable, "-m", "bench.run_all", "--step-consumer-throughput", "--", *extra, "--out", str(out)]
    else:
        cmd = [sys.executable, "-m", f"bench.{step.name}", *extra, "--out", str(out)]
    limit = min(step.limit_s, left_s)
    log.info("step %s: %s", step.name, " ".join(cmd[1:]))
    t0 = time.perf_counter()
    status["limit_s"] = round(limit)
    # a session of its own: past its limit the step is stopped with every process it started (a consumer, a peer)
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:  # fmt: skip
        try:
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            return {**status, "ok": False, "seconds": round(time.perf_counter() - t0, 1),
                    "error": f"stopped at its time limit of {limit:.0f} s"}  # fmt: skip
    if stdout.strip():
        print(stdout.rstrip())
    status.update(ok=proc.returncode == 0, seconds=round(time.perf_counter() - t0, 1))
    if proc.returncode != 0:
        status["error"] = stderr[-3000:]
    return status


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the step's process group, SIGKILL to what is left after 30 s (the step's own id only)."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _selected(args: argparse.Namespace) -> list[Step]:
    return [s for s in STEPS if (args.only is None or s.name in args.only) and not (args.no_kafka and s.kafka)]


def _write_status(path: Path, size: str, steps: dict[str, Any], wall_s: float, partial: bool) -> None:
    """``run_all.status``: the size, the whole run's wall time and each step's; a partial run keeps earlier steps."""
    if partial and path.exists():
        with contextlib.suppress(OSError, json.JSONDecodeError):
            steps = {**json.loads(path.read_text()).get("steps", {}), **steps}
    status = {"size": size, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "wall_s": round(wall_s, 1), "partial": partial, "steps": steps}  # fmt: skip
    path.write_text(json.dumps(status, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--step-consumer-throughput"]:
        rest = argv[1:]
        return consumer_throughput(rest[1:] if rest[:1] == ["--"] else rest)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full", help="sizes of every step (default full)")
    parser.add_argument("--quick", dest="size", action="store_const", const="quick", help="= --size quick")
    parser.add_argument("--only", nargs="+", choices=[s.name for s in STEPS], default=None, help="only these steps")
    parser.add_argument("--no-kafka", action="store_true", help="skip the steps that need the broker")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="results and plots (default bench/out)")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="the report (Markdown)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--budget", type=float, default=45.0, help="minutes the whole run may take (default 45)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    steps = _selected(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only is None:  # a full run starts from a clean results directory
        for stale in [*args.out.glob("*.json"), args.out / STATUS_FILE]:
            stale.unlink(missing_ok=True)
    log.info("%d steps at size %s, within %.0f min", len(steps), args.size, args.budget)
    status: dict[str, Any] = {}
    t_all = time.perf_counter()
    for step in steps:
        left = args.budget * 60 - (time.perf_counter() - t_all)
        status[step.name] = run_step(step, args.size, args.out, left)
        log.info("step %s %s in %.0f s", step.name, "done" if status[step.name]["ok"] else "FAILED",
                 status[step.name]["seconds"])  # fmt: skip
        if not status[step.name]["ok"]:
            log.error("step %s failed:\n%s", step.name, status[step.name]["error"])
        _write_status(args.out / STATUS_FILE, args.size, status, time.perf_counter() - t_all, args.only is not None)
    log.info("all steps in %.0f s", time.perf_counter() - t_all)
    try:
        command = "make bench" if args.size == "full" else f"python -m bench.run_all --size {args.size}"
        path = write_report(args.out, args.results, plots=not args.no_plots, command=command)
    except FileNotFoundError as exc:
        log.error("no report: %s", exc)
        return 1
    print("\n".join(summary_lines(load_results(args.out))))
    print(f"report: {path}")
    return 1 if any(not st["ok"] for st in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
