"""Memory per customer of the running consumer (and of the core alone), and what a new customer costs.

**The consumer process** (default; needs the broker, ``--bootstrap``): a real
``segmenter-consumer`` (``python -m consumer``, exactly-once, default settings)
runs as a subprocess on unique topics (one input partition). A warm-up of
``--warmup`` customers makes the lenses ready; then one event per new customer
(ids like the simulator's ``c0000123``, a mix of session, view, cart, e-mail and
purchase events, event time one second apart) is produced up to each size in
``--sizes``, and once all of it is committed the subprocess's RSS
(``/proc/<pid>/statm``) is read. The figure is the **slope** between sizes:
bytes of RSS per added customer of the running consumer (core columns, id
index, whatever the edge keeps per customer, allocator slack, spare capacity).
Target: <= 256 bytes per customer at 1M.

Then, in the same run, ``--cost-events`` events of known customers (cycling
over the latest 1,000 added, so mostly steady customers) and ``--cost-events``
events of as many new customers: the
subprocess's CPU seconds (``/proc/<pid>/stat``) per phase give events per CPU
second for each, and their difference the cost of a new customer on top of an
event (target: <= 50 us).

**The core alone** (``--core``): a Segmenter in this process, the same events
through ``parse_event`` + ``process_batch`` in replay's chunks, RSS delta over
the warmed-up baseline per customer, and (``--no-trace`` skips it) the live
tracemalloc allocations at the smallest size.

Usage::

    python -m bench.memory --sizes 50000 500000            # the consumer process
    python -m bench.memory --core --sizes 100000 1000000    # the core alone
"""

from __future__ import annotations

import argparse
import gc
import itertools
import logging
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from bench.common import BENCH_DIR, Row, add_common_args, rss_bytes, save_result, setup_logging
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK

log = logging.getLogger("bench.memory")

TARGET_BYTES = 256
TARGET_NEW_US = 50.0
KNOWN_CUSTOMERS = 1000
"""The known-customer phase cycles over the latest this many customers (steady customers, few moves)."""
ROOT = BENCH_DIR.parent
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
_TYPES = ("session_start", "product_view", "add_to_cart", "email_open", "purchase", "page_view")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _event(i: int, customer: str, t: int, tag: str = "m") -> bytes:
    """One event of ``customer`` at ``T0 + t`` (event id ``{tag}{i}``)."""
    etype = _TYPES[i % len(_TYPES)]
    ev: dict[str, Any] = {"event_id": f"{tag}{i}", "customer_id": customer, "type": etype, "ts": _iso(T0 + t)}
    if etype == "purchase":
        ev["amount"] = 10.0 + (i % 97)
    return orjson.dumps(ev)


def _feed(seg: Segmenter, start: int, stop: int, prefix: str, offset: int) -> None:
    batch = []
    for i in range(start, stop):
        batch.append(parse_event(_event(i, f"{prefix}{i:07d}", offset + i)))
        if len(batch) == REPLAY_CHUNK:
            seg.process_batch(batch)
            batch = []
    seg.process_batch(batch)


def build(sizes: list[int], warmup: int, measure: Callable[[], int]) -> tuple[list[dict[str, Any]], Segmenter]:
    """Warm a Segmenter up, then add customers up to each size; ``measure()`` gives bytes in use."""
    seg = Segmenter(default_config())
    _feed(seg, 0, warmup, "w", 0)
    if not all(lens.ready for lens in seg.lenses):
        log.warning("lenses not ready after %d warm-up customers", warmup)
    gc.collect()
    base = measure()
    base_store = seg.store.nbytes()
    out: list[dict[str, Any]] = []
    done = 0
    t0 = time.perf_counter()
    for n in sorted(sizes):
        _feed(seg, done, n, "c", warmup)
        done = n
        gc.collect()
        used = measure() - base
        out.append(
            {
                "customers": n,
                "bytes": used,
                "bytes_per_customer": used / n,
                "store_nbytes_per_customer": (seg.store.nbytes() - base_store) / n,
                "store_capacity": seg.store.capacity,
                "seconds": time.perf_counter() - t0,
                "held": len(seg.store),
            }
        )
        log.info("%d customers: %.0f bytes/customer (%.1f s)", n, used / n, time.perf_counter() - t0)
    return out, seg


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]


class ConsumerProcess:
    """A ``python -m consumer`` subprocess (exactly-once) on unique topics, with its RSS and CPU time."""

    def __init__(self, bootstrap: str, tag: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"bench-mem-{tag}"
        self.input = f"{self.prefix}-in"
        self.group = self.prefix
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.admin.create_topics([NewTopic(self.input, 1, 1)])
        cmd = [sys.executable, "-m", "consumer", "--bootstrap-servers", bootstrap, "--group-id", self.group,
               "--instance-id", f"mem-{tag}", "--topics.input", self.input, "--topics.output", f"{self.input}.out",
               "--topics.dlq", f"{self.input}.dlq", "--topics.membership", f"{self.input}.membership",
               "--guarantee", "exactly-once", "--metrics-port", "-1", "--log-level", "WARNING"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
        self.sent = 0

    def send(self, values: list[bytes], keys: list[bytes]) -> None:
        for key, value in zip(keys, values, strict=True):
            self.producer.send(self.input, value=value, key=key)
        self.producer.flush()
        self.sent += len(values)

    def committed(self) -> int:
        try:
            offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        except KafkaError:
            return -1
        return sum(m.offset for tp, m in offsets.items() if tp.topic == self.input and m.offset >= 0)

    def wait(self, timeout_s: float) -> None:
        """Until everything sent is committed (raises ``TimeoutError``, ``RuntimeError`` if the consumer died)."""
        deadline = time.monotonic() + timeout_s
        while self.committed() < self.sent:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"the consumer exited with {self.proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.committed()} of {self.sent} events committed after {timeout_s}s")
            time.sleep(0.2)

    def rss(self) -> int:
        pages = int(open(f"/proc/{self.proc.pid}/statm").read().split()[1])  # noqa: SIM115
        return pages * os.sysconf("SC_PAGE_SIZE")

    def cpu_s(self) -> float:
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.producer.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        names = [t for t in self.admin.list_topics() if t.startswith(self.prefix)]
        try:
            self.admin.delete_topics(names)
        except KafkaError:
            log.warning("could not delete the bench topics %s", names)
        self.admin.close()


def _customers(proc: ConsumerProcess, start: int, stop: int, prefix: str, t0: int, tag: str = "m") -> None:
    """One event per customer ``{prefix}{i:07d}`` for i in ``[start, stop)``, event time ``t0 + i - start``."""
    step = 50_000
    for lo in range(start, stop, step):
        hi = min(stop, lo + step)
        ids = [f"{prefix}{i:07d}" for i in range(lo, hi)]
        proc.send([_event(i, c, t0 + i - start, tag) for i, c in zip(range(lo, hi), ids, strict=True)],
                  [c.encode() for c in ids])  # fmt: skip


def measure_consumer(
    bootstrap: str, sizes: list[int], warmup: int, cost_events: int, timeout_s: float
) -> dict[str, Any]:
    """RSS of a running consumer after each size, and the CPU per event of known and new customers."""
    proc = ConsumerProcess(bootstrap, uuid.uuid4().hex[:8])
    try:
        t = 0
        _customers(proc, 0, warmup, "w", t)
        t += warmup
        proc.wait(timeout_s)
        base = proc.rss()
        rss: list[dict[str, Any]] = []
        done = 0
        for n in sorted(sizes):
            cpu = proc.cpu_s()
            _customers(proc, done, n, "c", t)
            t += n - done
            step, done = n - done, n
            proc.wait(timeout_s)
            cpu_us = (proc.cpu_s() - cpu) / step * 1e6
            rss.append({"customers": n, "rss": proc.rss(), "rss_delta": proc.rss() - base, "cpu_us_per_new": cpu_us})
            log.info("%d customers: RSS %.1f MB", n, rss[-1]["rss"] / 1e6)
        phases: dict[str, dict[str, float]] = {}
        for name in ("new", "known"):  # new first: the known phase makes later commits dearer
            before, wall = proc.cpu_s(), time.monotonic()
            if name == "known":  # steady customers: cycling over the latest ones added
                ids = [f"c{i:07d}" for i in range(max(0, done - KNOWN_CUSTOMERS), done)]
                for lo in range(0, cost_events, 50_000):
                    idx = range(lo, min(cost_events, lo + 50_000))
                    proc.send([_event(i, ids[i % len(ids)], t + i, "k") for i in idx],
                              [ids[i % len(ids)].encode() for i in idx])  # fmt: skip
            else:
                _customers(proc, 0, cost_events, "n", t)
            t += cost_events
            proc.wait(timeout_s)
            cpu = proc.cpu_s() - before
            phases[name] = {"events": cost_events, "cpu_s": cpu, "events_per_cpu_s": cost_events / cpu,
                            "wall_s": time.monotonic() - wall}  # fmt: skip
            log.info("%s customers: %.0f events per CPU second", name, cost_events / cpu)
        return {"base_rss": base, "rss": rss, "cost": phases}
    finally:
        proc.close()


def consumer_rows(result: dict[str, Any]) -> list[Row]:
    """The result table of :func:`measure_consumer`."""
    sect = "memory: the running consumer per customer"
    rows: list[Row] = []
    rss = result["rss"]
    for lo, hi in itertools.pairwise(rss):
        slope = (hi["rss"] - lo["rss"]) / (hi["customers"] - lo["customers"])
        rows.append(Row(sect, f"RSS slope {lo['customers']:,} to {hi['customers']:,} customers", slope, "bytes",
                        f"<= {TARGET_BYTES}", passed=slope <= TARGET_BYTES,
                        note=f"RSS {lo['rss'] / 1e6:.0f} MB to {hi['rss'] / 1e6:.0f} MB"))  # fmt: skip
    known, new = result["cost"]["known"], result["cost"]["new"]
    extra_us = (new["cpu_s"] / new["events"] - known["cpu_s"] / known["events"]) * 1e6
    rows.append(Row(sect, "new customer: CPU on top of an event of a known customer", extra_us, "us",
                    f"<= {TARGET_NEW_US:.0f}", passed=extra_us <= TARGET_NEW_US,
                    note=f"{new['events_per_cpu_s']:.0f} vs {known['events_per_cpu_s']:.0f} events per CPU second "
                    f"(new / known: {new['events_per_cpu_s'] / known['events_per_cpu_s']:.2f})"))  # fmt: skip
    return rows


def consumer_main(args: argparse.Namespace) -> int:
    """Measure the consumer process (see the module)."""
    result = measure_consumer(args.bootstrap, args.sizes, args.warmup, args.cost_events, args.timeout)
    rows = consumer_rows(result)
    params = {"sizes": args.sizes, "warmup": args.warmup, "cost_events": args.cost_events, "mode": "consumer"}
    save_result("memory", {"params": params, **result}, rows, args.out)
    for r in rows:
        print(f"{r.metric:<60} {r.measured:10.1f} {r.unit}  {r.note}")
    return 0


def core_main(args: argparse.Namespace) -> int:
    """Measure the core alone, in this process (see the module)."""
    rss, seg = build(args.sizes, args.warmup, rss_bytes)
    del seg
    gc.collect()
    traced: list[dict[str, Any]] = []
    if not args.no_trace:
        tracemalloc.start()
        traced, seg = build([min(args.sizes)], args.warmup, _traced)
        tracemalloc.stop()
        del seg
    data = {
        "params": {"sizes": args.sizes, "warmup": args.warmup, "config": "default"},
        "rss": rss,
        "tracemalloc": traced,
    }
    sect = "memory: core state per customer"
    rows: list[Row] = []
    for m in rss:
        rows.append(
            Row(
                sect,
                f"{m['customers']:,} customers, RSS delta",
                m["bytes_per_customer"],
                "bytes",
                f"<= {TARGET_BYTES}",
                passed=m["bytes_per_customer"] <= TARGET_BYTES,
                note=f"store columns {m['store_nbytes_per_customer']:.0f} B/customer "
                f"(capacity {m['store_capacity']:,})",
            )
        )
    for m in traced:
        rows.append(
            Row(
                sect,
                f"{m['customers']:,} customers, tracemalloc",
                m["bytes_per_customer"],
                "bytes",
                f"<= {TARGET_BYTES}",
                passed=m["bytes_per_customer"] <= TARGET_BYTES,
                note="live Python + numpy allocations",
            )
        )
    save_result("memory", data, rows, args.out)
    for r in rows:
        print(f"{r.metric:<40} {r.measured:8.1f} B/customer  {r.note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 500_000], help="customer counts")
    parser.add_argument("--warmup", type=int, default=3000, help="warm-up customers (default %(default)s)")
    parser.add_argument("--core", action="store_true", help="measure the core in this process, not the consumer")
    parser.add_argument("--no-trace", action="store_true", help="--core: skip the tracemalloc pass")
    parser.add_argument(
        "--cost-events",
        type=int,
        default=100_000,
        help="events of known and of new customers for the new-customer cost (default %(default)s)",
    )
    parser.add_argument("--bootstrap", default=os.environ.get("SEGMENTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a phase's commit")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return core_main(args) if args.core else consumer_main(args)


if __name__ == "__main__":
    sys.exit(main())
