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
index, whatever the edge keeps per customer, allocator slack, spare capacity),
over each span between consecutive sizes and over the first size of at least
:data:`LONG_SPAN_FROM` (250k) to the largest (``--sizes 50000 250000 500000
1000000``: 50k->250k, 250k->500k, 500k->1M and 250k->1M, the figure per
customer at 1M). Target: <= 256 bytes per customer over every span.

Then, in the same run, the cost of a new customer on top of an event:
``--cost-events`` events in blocks of new customers (ids ``n0000123``, one event
each) and of known ones (the latest added, each once: their second event),
alternated in ABBA order, every block with the same event types and amounts
(the same indices), ids of the same length and event time one second apart
throughout. Each block's CPU seconds (``/proc/<pid>/stat``) are read once its
events are committed *and* the consumer is idle again (what follows a commit
counts with its block). The cost is the difference of the two phases' median
CPU per event in their cheapest blocks (target: <= 50 us): a block holding a
mass move (an inactivity sweep, a refinement's rescoring, a lens's lifecycle:
140,000 to 430,000 output records at 500k customers, 5 blocks in 12) costs
10 to 60 times the others, and such blocks fall on the two phases unevenly
(their medians gave -570 us on main). A block is a fifth of the refinement
period (``refine.every_events``). The measurement before this one read the CPU
of one long phase of each kind, and made a new customer cost -1,684 us.

``--before DIR`` measures the consumer of another source tree first (an
export of main: ``git archive main | tar -x -C DIR``), in the same run, as the
reference of each row.

**Where the bytes go** (defaults: two lenses, 8 event-id hashes, ids like
``c0001234``; the full table is in :class:`segmenter.features.FeatureStore`'s
notes): 129 bytes of columns per allocated row and 6 of id index, 1.125x
growth slack, 9 bytes of id in the arena and 8 of hash table: 168 bytes per
customer at 1M, and nothing else per customer (no Python object: tracemalloc
finds the arrays within 4 bytes; ownership and restore keep per partition;
the trigger engine keeps nothing without rules, with rules about 82 bytes of
packed history besides the id and its dict slot per customer with a
delivery). The quality hold's per-lens start time will add 4 per lens (9 at
1M with the slack). The rest of the RSS slope is what the mass moves leave:
an inactivity sweep or a refinement's rescoring moves a large share of the
customers in one batch (1.76M output records from 250k to 1M customers), and
glibc keeps freed holes. The core hands such a batch's outputs over a move
buffer at a time (``process_batch(sink=)``) and builds its changelog a part
at a time (``take_change_parts``), so a run holds only its encoded records
(about 0.9 KB per output) until it ends, not its message objects (about 3.5
KB each) nor the changelog's intermediates (about 5.7 KB per changed
customer); :mod:`segmenter.malloc_tuning` maps large blocks on their own and
the edge returns the free heap every 50,000 records sent (before the poll
after the commit, once the batch is gone).

Each size step and cost block also reports its peak RSS (sampled every 0.2 s
from the RSS at its start) and its output records: the rows "peak RSS of the
step with the most outputs" and "largest peak RSS of a step with a mass move"
(:data:`MASS_MOVE_OUTPUTS` output records or more).

What kept bytes per customer beyond the columns was the small-object
allocator: a mass move's commit held several Python objects per changed
customer at once (the changelog's sorted ``(id, row, source)`` tuples, the
batch's changed-customer dict, a float lag per output), CPython's arenas
grew to hold them, and the core's long-lived objects allocated among them
kept those arenas (an arena is returned only when all of it is free): 28
more 1 MiB arenas, 46 MB of them unused, between 250k and 500k customers.
The changelog now sorts the ids' bytes in one array
(:meth:`segmenter.id_index.IdIndex.order_of`), the changed customers wait
packed (:class:`consumer.changed_customers.ChangedCustomers`), the lags as
an ``array('d')``, and an idle consumer returns the free heap after 1,000
records (before, the batches since the last 50,000-record trim left 26 to
39 MB resident at the reading).

Measured (same run, ``--sizes 50000 250000 500000 1000000 --cost-events
50000 --before`` an export of main d62f772, RSS after each size): main 427 /
415 / 550 / 691 MB, this tree 267 / 310 / 350 / 442 MB; slopes main -61 /
541 / 281 B per customer, this tree 217 / 159 / 184 (50k->250k,
250k->500k, 500k->1M), and 250k->1M: main 368, this tree 176 B per
customer. Peak RSS in the cost block with 1.68M outputs at 1M: main 1,960
MB, this tree 1,943 MB.

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
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from bench.common import BENCH_DIR, Row, add_common_args, rss_bytes, save_result, setup_logging
from segmenter.change_blocks import Output
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.malloc_tuning import tune_malloc
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK

log = logging.getLogger("bench.memory")

TARGET_BYTES = 256
TARGET_NEW_US = 50.0
LONG_SPAN_FROM = 250_000
"""The slope is also reported from the first size of at least this many customers to the largest (1M)."""
DEFAULT_BLOCK = 4000
"""Events per cost block when the config refines on no event count."""
MASS_MOVE_OUTPUTS = 50_000
"""Output records of a step past which it holds a mass move (a sweep's, a refinement's, a lifecycle's)."""
IDLE_WINDOW_S = 0.5
IDLE_SHARE = 0.1
"""The consumer is idle when it uses less than this share of a core over :data:`IDLE_WINDOW_S`."""
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
    """Events of customers ``[start, stop)`` in replay's chunks; their outputs go to a sink that drops them."""
    batch = []
    for i in range(start, stop):
        batch.append(parse_event(_event(i, f"{prefix}{i:07d}", offset + i)))
        if len(batch) == REPLAY_CHUNK:
            seg.process_batch(batch, sink=_drop)
            batch = []
    seg.process_batch(batch, sink=_drop)


def _drop(part: list[Output]) -> None:
    """A sink that keeps nothing (the consumer encodes and spills each part, then lets it go)."""


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


class RunawayError(RuntimeError):
    """The consumer's RSS passed ``--max-rss-gb`` and it was stopped."""


class ConsumerProcess:
    """A ``python -m consumer`` subprocess (exactly-once) on unique topics, with its RSS and CPU time.

    ``root``: the source tree it runs from (this one, or an export of another commit for a before/after).
    """

    def __init__(self, bootstrap: str, tag: str, root: Path = ROOT, max_rss: int = 2**62) -> None:
        self.bootstrap = bootstrap
        self.max_rss = max_rss
        self.peak = 0
        """The largest RSS seen (sampled every 0.2 s while waiting)."""
        self.step_peak = 0
        """The largest RSS seen since :meth:`new_step` (a size step's or a cost block's)."""
        self.prefix = f"bench-mem-{tag}"
        self.input = f"{self.prefix}-in"
        self.output = f"{self.input}.out"
        self.group = self.prefix
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.admin.create_topics([NewTopic(self.input, 1, 1)])
        cmd = [sys.executable, "-m", "consumer", "--bootstrap-servers", bootstrap, "--group-id", self.group,
               "--instance-id", f"mem-{tag}", "--topics.input", self.input, "--topics.output", self.output,
               "--topics.dlq", f"{self.input}.dlq", "--topics.membership", f"{self.input}.membership",
               "--guarantee", "exactly-once", "--metrics-port", "-1", "--log-level", "WARNING"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
        # a file, not a pipe: a pipe nobody reads fills up with the consumer's warnings and blocks its logging
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=self._stderr)
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024)
        self.offsets = KafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
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

    def output_offsets(self) -> int:
        """The sum of the output topic's end offsets (outputs plus transaction markers; ``-1``: unknown)."""
        try:
            parts = self.offsets.partitions_for_topic(self.output) or set()
            ends = self.offsets.end_offsets([TopicPartition(self.output, p) for p in parts])
        except KafkaError:
            return -1
        return int(sum(ends.values()))

    def wait(self, timeout_s: float) -> None:
        """Until everything sent is committed (raises ``TimeoutError``, ``RuntimeError`` if the consumer died)."""
        deadline = time.monotonic() + timeout_s
        while self.committed() < self.sent:
            self._alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.committed()} of {self.sent} events committed after {timeout_s}s")
            time.sleep(0.2)

    def settle(self, timeout_s: float = 60.0) -> float:
        """The consumer's CPU seconds once it is idle again (what follows a commit counts with the work before it).

        Idle: less than :data:`IDLE_SHARE` of a core over :data:`IDLE_WINDOW_S`
        (its poll loop); after ``timeout_s`` the current reading is returned.
        """
        deadline = time.monotonic() + timeout_s
        cpu = self.cpu_s()
        while time.monotonic() < deadline:
            time.sleep(IDLE_WINDOW_S)
            self._alive()
            now = self.cpu_s()
            if now - cpu <= IDLE_SHARE * IDLE_WINDOW_S:
                return now
            cpu = now
        log.warning("the consumer did not fall idle within %.0f s", timeout_s)
        return cpu

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            self._stderr.seek(0)
            err = self._stderr.read().decode(errors="replace")
            raise RuntimeError(f"the consumer exited with {self.proc.returncode}: {err[-2000:]}")
        rss = self.rss()
        self.peak = max(self.peak, rss)
        self.step_peak = max(self.step_peak, rss)
        if rss > self.max_rss:
            self.proc.kill()  # a shared machine: stop it before it takes everyone's memory
            raise RunawayError(f"the consumer's RSS reached {rss / 1e9:.1f} GB (--max-rss-gb); it was stopped")

    def new_step(self) -> int:
        """Start a step's peak (from the RSS now); returns the output topic's end offsets now (see :meth:`step`)."""
        self.step_peak = self.rss()
        return self.output_offsets()

    def step(self, name: str, outputs_before: int) -> dict[str, Any]:
        """The step since :meth:`new_step`: its name, peak RSS and output records (plus transaction markers)."""
        return {"step": name, "peak_rss": self.step_peak, "outputs": self.output_offsets() - outputs_before}

    def rss(self) -> int:
        pages = int(open(f"/proc/{self.proc.pid}/statm").read().split()[1])  # noqa: SIM115
        return pages * os.sysconf("SC_PAGE_SIZE")

    def cpu_s(self) -> float:
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.producer.close()
        self.offsets.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._stderr.close()
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


def block_size(cost_events: int, refine_every: int) -> int:
    """Events per cost block: a fifth of the refinement period (capped by ``cost_events``; see :func:`block_plan`).

    With a refinement every five blocks, the blocks that hold one fall on
    both phases in turn, whatever the offset of the period.
    """
    block = refine_every // 5 if refine_every >= 5 else DEFAULT_BLOCK
    return max(1, min(block, cost_events // 8))


def block_plan(pairs: int) -> list[str]:
    """The phases of the cost blocks, ``new`` and ``known`` in ABBA order (a drift over the run cancels out)."""
    out: list[str] = []
    for j in range(pairs):
        out += ["new", "known"] if j % 2 == 0 else ["known", "new"]
    return out


def new_customer_cost(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The CPU per event of each phase (its cheapest block) and their difference, the new-customer cost.

    A block that holds a mass move (an inactivity sweep, a refinement and its
    rescoring, a lens's lifecycle: 140,000 to 430,000 output records at 500k
    customers, in 5 of 12 blocks) or the store's growth costs 10 to 60 times
    the others, and such blocks fall on the two phases unevenly; they only
    ever add CPU, so each phase's cheapest block is its event cost without
    them (not what a new customer costs on top of an event). The medians and
    means keep them and are reported beside it.
    """
    out: dict[str, Any] = {}
    for name in ("new", "known"):
        per = [b["cpu_s"] / b["events"] * 1e6 for b in blocks if b["phase"] == name]
        out[name] = {"blocks": len(per), "median_us": float(np.median(per)), "mean_us": float(np.mean(per)),
                     "min_us": min(per), "max_us": max(per)}  # fmt: skip
    out["extra_us"] = out["new"]["min_us"] - out["known"]["min_us"]
    out["extra_median_us"] = out["new"]["median_us"] - out["known"]["median_us"]
    out["extra_mean_us"] = out["new"]["mean_us"] - out["known"]["mean_us"]
    return out


def _cost_blocks(
    proc: ConsumerProcess,
    t: int,
    done: int,
    cost_events: int,
    timeout_s: float,
    out: list[dict[str, Any]],
    steps: list[dict[str, Any]],
) -> None:
    """CPU of alternating blocks of events of new and of known customers (see :func:`block_plan`).

    Each block's peak RSS and output records are appended to ``steps`` (see :meth:`ConsumerProcess.step`).

    The two phases differ in newness only: the same event types and amounts
    (the same indices), ids of the same length, event time one second apart
    throughout, and the CPU is read once the consumer is idle after each
    block's commit. A new customer's event is its first, a known customer's
    its second: the latest customers added, each once, in the order they
    were added (all about as long after their first event), so both phases
    show the lenses points alike (a few customers with many events each
    would pull the centres away and set off mass moves). One pair before
    them is a warm-up and is not counted.
    """
    block = block_size(cost_events, default_config().refine.every_events)
    pairs = max(2, cost_events // (2 * block))
    first = max(0, done - (pairs + 1) * block)
    known = [f"c{i:07d}" for i in range(first, done)]
    fresh = used = 0
    cpu = proc.settle()
    for k, phase in enumerate(["new", "known", *block_plan(pairs)]):
        outputs = proc.new_step()
        idx = range(k * block, (k + 1) * block)
        if phase == "new":
            ids = [f"n{fresh + i:07d}" for i in range(block)]
            fresh += block
        else:
            ids = [known[(used + i) % len(known)] for i in range(block)]
            used += block
        proc.send([_event(i, c, t + i, phase[0]) for i, c in zip(idx, ids, strict=True)], [c.encode() for c in ids])
        proc.wait(timeout_s)
        now = proc.settle()
        step = proc.step(f"cost block {k} ({phase})", outputs)
        steps.append(step)
        if k >= 2:
            out.append({"phase": phase, "events": block, "cpu_s": now - cpu,
                        "output_offsets": step["outputs"]})  # fmt: skip
        cpu = now


def measure_consumer(args: argparse.Namespace, root: Path = ROOT) -> dict[str, Any]:
    """RSS of a running consumer (from ``root``) after each size, and the CPU per event of known and new customers."""
    sizes, warmup, timeout_s = args.sizes, args.warmup, args.timeout
    proc = ConsumerProcess(args.bootstrap, uuid.uuid4().hex[:8], root, int(args.max_rss_gb * 1e9))
    rss: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    stopped = None
    base = 0
    try:
        t = 0
        _customers(proc, 0, warmup, "w", t)
        t += warmup
        proc.wait(timeout_s)
        cpu = proc.settle()
        base = proc.rss()
        done = 0
        for n in sorted(sizes):
            outputs = proc.new_step()
            _customers(proc, done, n, "c", t)
            t += n - done
            step, done = n - done, n
            proc.wait(timeout_s)
            now = proc.settle()
            cpu_us, cpu = (now - cpu) / step * 1e6, now
            rss.append({"customers": n, "rss": proc.rss(), "rss_delta": proc.rss() - base, "cpu_us_per_new": cpu_us})
            steps.append(proc.step(f"{done - step:,} to {n:,} customers", outputs))
            log.info("%s: %d customers: RSS %.1f MB", root, n, rss[-1]["rss"] / 1e6)
        _cost_blocks(proc, t, done, args.cost_events, timeout_s, blocks, steps)
    except RunawayError as exc:
        log.error("%s: %s", root, exc)
        stopped = str(exc)
    finally:
        proc.close()
    phases = {b["phase"] for b in blocks}
    cost = new_customer_cost(blocks) if phases == {"new", "known"} else None
    if cost is not None:
        log.info("%s: new customer %.1f us on top of an event (cheapest of %d blocks)", root, cost["extra_us"],
                 cost["new"]["blocks"])  # fmt: skip
    return {"root": str(root), "base_rss": base, "rss": rss, "blocks": blocks, "cost": cost, "peak_rss": proc.peak,
            "steps": steps, "stopped": stopped}  # fmt: skip


def _slopes(rss: list[dict[str, Any]]) -> list[tuple[int, int, float, dict[str, Any], dict[str, Any]]]:
    """The RSS slope over each span between consecutive sizes, then over :data:`LONG_SPAN_FROM` to the largest.

    The long span starts at the first size of at least :data:`LONG_SPAN_FROM` customers and is left out when it
    is one of the consecutive spans already.
    """
    spans = list(itertools.pairwise(rss))
    start = next((m for m in rss if m["customers"] >= LONG_SPAN_FROM), None)
    if start is not None and rss.index(start) < len(rss) - 2:
        spans.append((start, rss[-1]))
    return [(lo["customers"], hi["customers"], (hi["rss"] - lo["rss"]) / (hi["customers"] - lo["customers"]), lo, hi)
            for lo, hi in spans]  # fmt: skip


def consumer_rows(result: dict[str, Any], before: dict[str, Any] | None = None) -> list[Row]:
    """The result table of :func:`measure_consumer` (``before``: the same measured from another tree)."""
    sect = "memory: the running consumer per customer"
    rows: list[Row] = []
    ref = {(a, b): s for a, b, s, _, _ in _slopes(before["rss"])} if before is not None else {}
    for a, b, slope, lo, hi in _slopes(result["rss"]):
        was = ref.get((a, b))
        rows.append(Row(sect, f"RSS slope {a:,} to {b:,} customers", slope, "bytes", f"<= {TARGET_BYTES}",
                        reference=was, ratio=None if not was else slope / was, passed=slope <= TARGET_BYTES,
                        note=f"RSS {lo['rss'] / 1e6:.0f} MB to {hi['rss'] / 1e6:.0f} MB"
                        + ("" if was is None else " (reference: the before tree, same run)")))  # fmt: skip
    was_peak = before["peak_rss"] / 1e6 if before is not None else None
    rows.append(Row(sect, "peak RSS (sampled every 0.2 s)", result["peak_rss"] / 1e6, "MB", reference=was_peak,
                    note=result["stopped"] or ""))  # fmt: skip
    rows += mass_move_rows(sect, result, before)
    cost = result["cost"]
    if cost is None:
        rows.append(Row(sect, "new customer: CPU on top of an event of a known customer", None, "us",
                        f"<= {TARGET_NEW_US:.0f}", passed=False,
                        note=f"not measured: {result['stopped']}"))  # fmt: skip
        return rows
    extra = cost["extra_us"]
    was_cost = before["cost"]["extra_us"] if before is not None and before["cost"] is not None else None
    rows.append(Row(sect, "new customer: CPU on top of an event of a known customer", extra, "us",
                    f"<= {TARGET_NEW_US:.0f}", reference=was_cost, passed=extra <= TARGET_NEW_US,
                    note=f"cheapest of {cost['new']['blocks']} blocks per phase: {cost['new']['min_us']:.1f} vs "
                    f"{cost['known']['min_us']:.1f} us per event (medians {cost['new']['median_us']:.1f} vs "
                    f"{cost['known']['median_us']:.1f}, means {cost['new']['mean_us']:.1f} vs "
                    f"{cost['known']['mean_us']:.1f})"))  # fmt: skip
    return rows


def mass_move(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step with the most output records, if it holds a mass move (:data:`MASS_MOVE_OUTPUTS` of them or more)."""
    biggest = max(steps, key=lambda st: st["outputs"], default=None)
    return biggest if biggest is not None and biggest["outputs"] >= MASS_MOVE_OUTPUTS else None


def mass_move_rows(sect: str, result: dict[str, Any], before: dict[str, Any] | None) -> list[Row]:
    """The peak RSS of the step holding the biggest mass move, and the largest peak of any step holding one."""
    rows = []
    for metric, pick in (("peak RSS of the step with the most outputs", mass_move),
                         ("largest peak RSS of a step with a mass move", _dearest)):  # fmt: skip
        got = pick(result.get("steps", []))
        was = pick(before.get("steps", [])) if before is not None else None
        note = "no step with a mass move" if got is None else f"{got['step']}: {got['outputs']:,} output records"
        if was is not None:
            note += f" (before: {was['step']}: {was['outputs']:,})"
        rows.append(Row(sect, metric, None if got is None else got["peak_rss"] / 1e6, "MB",
                        reference=None if was is None else was["peak_rss"] / 1e6,
                        ratio=None if got is None or was is None else got["peak_rss"] / was["peak_rss"],
                        note=note))  # fmt: skip
    return rows


def _dearest(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    mass = [st for st in steps if st["outputs"] >= MASS_MOVE_OUTPUTS]
    return max(mass, key=lambda st: st["peak_rss"], default=None)


def consumer_main(args: argparse.Namespace) -> int:
    """Measure the consumer process (see the module); with ``--before``, that tree's first, in the same run."""
    before = None
    if args.before is not None:
        before = measure_consumer(args, args.before.resolve())
    result = measure_consumer(args)
    rows = consumer_rows(result, before)
    params = {"sizes": args.sizes, "warmup": args.warmup, "cost_events": args.cost_events, "mode": "consumer",
              "before": None if args.before is None else str(args.before)}  # fmt: skip
    save_result("memory", {"params": params, **result, "before": before}, rows, args.out)
    for r in rows:
        was = "" if r.reference is None else f" (before {r.reference:.1f})"
        shown = "-" if r.measured is None else f"{r.measured:.1f}"
        print(f"{r.metric:<60} {shown:>10} {r.unit}{was}  {r.note}")
    return 0


def core_main(args: argparse.Namespace) -> int:
    """Measure the core alone, in this process (see the module), with the allocator settings of the commands."""
    tune_malloc()
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
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="also measure the consumer of this source tree (an export of main), first, same run",
    )
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=8.0,
        help="stop a consumer whose RSS exceeds this (a shared machine; default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a phase's commit")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return core_main(args) if args.core else consumer_main(args)


if __name__ == "__main__":
    sys.exit(main())
