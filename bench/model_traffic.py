"""Bytes written to ``<group>.model`` per million events, and the model's restore, before and after the split.

Runs the real core on a simulated stream in commit-sized batches and, at
every commit, does what the service's commit step does with the model:

before
    one whole :meth:`Segmenter.model_state` record (key: the instance id)
    whenever its digest changed (the former ``ModelTracker``);
after
    :class:`consumer.state.ModelTracker` over :meth:`Segmenter.model_parts`:
    only the parts that changed, compressed, one key per part.

Restore is timed on the records a restore reads: the whole un-compacted
partition and, compacted, the newest record per key; *after* goes through
:func:`consumer.state.restore_model`, *before* decodes and loads the newest
whole record. Everything is measured in one run; times are ratios.

    python -m bench.model_traffic --events 50000 --algorithm kmeans clustream
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from bench.common import Row, add_common_args, config_for, save_result, setup_logging, simulate
from consumer.sink import InRecord
from consumer.state import FORMAT_HEADER, MODEL_FORMAT, BadRecords, ModelTracker, restore_model
from segmenter.config import SegmenterConfig
from segmenter.events import CustomerEvent, parse_event
from segmenter.pipeline import Segmenter

log = logging.getLogger(__name__)

INSTANCE = b"segmenter-0"
TOPIC = "g.model"


def traffic(config: SegmenterConfig, events: list[CustomerEvent], batch: int) -> dict[str, Any]:
    """Run ``events`` through a core in commits of ``batch`` events; the model records of both schemes."""
    seg = Segmenter(config)
    tracker = ModelTracker(INSTANCE.decode())
    last: bytes | None = None
    before: list[InRecord] = []
    after: list[InRecord] = []
    cpu = {"before": 0.0, "after": 0.0}
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        seg.process_batch(chunk, [0] * len(chunk))
        seg.take_dirty()
        t0 = time.perf_counter()
        whole = seg.model_state()
        digest = hashlib.blake2b(whole, digest_size=16).digest()
        if digest != last:
            last = digest
            before.append(InRecord(TOPIC, 0, len(before), INSTANCE, whole, ((FORMAT_HEADER, MODEL_FORMAT),)))
        t1 = time.perf_counter()
        for rec in tracker.records(seg.model_parts(), TOPIC):
            after.append(InRecord(TOPIC, 0, len(after), rec.key, rec.value, rec.headers))
        cpu["before"] += t1 - t0
        cpu["after"] += time.perf_counter() - t1
    return {"config": config, "before": before, "after": after, "commits": -(-len(events) // batch),
            "final": seg.model_state(), "cpu": cpu}  # fmt: skip


def _compacted(records: list[InRecord]) -> list[InRecord]:
    newest = {rec.key: rec for rec in records}
    return sorted(newest.values(), key=lambda r: r.offset)


def _bytes(records: list[InRecord]) -> int:
    return sum(len(r.key or b"") + len(r.value or b"") for r in records)


def _restore_before(config: SegmenterConfig, records: list[InRecord]) -> Segmenter:
    seg = Segmenter(config)
    newest = max(records, key=lambda r: r.offset)
    assert newest.value is not None
    seg.load_model_state(newest.value)
    return seg


def _restore_after(config: SegmenterConfig, records: list[InRecord]) -> Segmenter:
    seg = Segmenter(config)
    if restore_model(seg, records, ModelTracker(INSTANCE.decode()), BadRecords()) is None:
        raise RuntimeError("the model parts did not restore")
    return seg


def _timed(fn: Any, config: SegmenterConfig, records: list[InRecord], repeat: int) -> tuple[float, Segmenter]:
    best = float("inf")
    seg = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        seg = fn(config, records)
        best = min(best, time.perf_counter() - t0)
    assert seg is not None
    return best, seg


def measure(algorithm: str, events: list[CustomerEvent], batch: int, repeat: int) -> dict[str, Any]:
    """Traffic and restore of one algorithm's lenses."""
    run = traffic(config_for(algorithm), events, batch)
    config: SegmenterConfig = run["config"]
    per_m = 1e6 / len(events)
    out: dict[str, Any] = {"algorithm": algorithm, "events": len(events), "commits": run["commits"]}
    for scheme in ("before", "after"):
        records: list[InRecord] = run[scheme]
        restore = _restore_before if scheme == "before" else _restore_after
        full_s, seg = _timed(restore, config, records, repeat)
        if seg.model_state() != run["final"]:
            raise RuntimeError(f"{algorithm}: the {scheme} restore is not the state at the last commit")
        compact = _compacted(records)
        compact_s, _ = _timed(restore, config, compact, repeat)
        out[scheme] = {"records": len(records), "bytes": _bytes(records), "bytes_per_m_events": _bytes(records) * per_m,
                       "records_per_m_events": len(records) * per_m, "restore_read_records": len(records),
                       "restore_s": full_s, "compacted_records": len(compact), "compacted_bytes": _bytes(compact),
                       "compacted_restore_s": compact_s, "commit_step_s": run["cpu"][scheme]}  # fmt: skip
    return out


METRICS = (
    ("bytes per million events", "bytes_per_m_events", "bytes"),
    ("restore bytes read, compacted", "compacted_bytes", "bytes"),
    ("restore time, compacted (ratio after/before)", "compacted_restore_s", "s"),
    ("commit step CPU (encode, digest, compress)", "commit_step_s", "s"),
    ("restore bytes read, un-compacted", "bytes", "bytes"),
)
"""The table's rows per algorithm: (metric, key of the measurement, unit)."""


def rows_for(results: list[dict[str, Any]]) -> list[Row]:
    """The results table: after against before, same run."""
    rows = []
    sect = "model topic traffic (before: whole model per commit; after: changed parts, compressed)"
    for m in results:
        b, a = m["before"], m["after"]
        notes = {
            "bytes_per_m_events": f"{m['commits']} commits of {m['events'] // m['commits']} events; records per M "
            f"events {a['records_per_m_events']:.0f} (before {b['records_per_m_events']:.0f})",
            "compacted_bytes": f"{a['compacted_records']} records (before {b['compacted_records']})",
            "bytes": f"{a['records']} records (before {b['records']})",
        }
        for metric, key, unit in METRICS:
            rows.append(Row(sect, f"{m['algorithm']}: {metric}", a[key], unit, reference=b[key],
                            ratio=a[key] / b[key], note=notes.get(key, "")))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events (default %(default)s)")
    parser.add_argument("--customers", type=int, default=2_000, help="customers (default %(default)s)")
    parser.add_argument("--batch", type=int, default=500, help="events per commit (default %(default)s: 5k "
                        "events/s at the default 100 ms commit interval)")  # fmt: skip
    parser.add_argument("--algorithm", nargs="+", default=["kmeans", "clustream"], help="lens algorithms")
    parser.add_argument("--repeat", type=int, default=3, help="restore timings, best of (default %(default)s)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    sim = simulate(args.customers, 3.0, seed=args.seed, max_events=args.events)
    events = [parse_event(v) for v in sim.values]
    results = [measure(algo, events, args.batch, args.repeat) for algo in args.algorithm]
    params = {"events": len(events), "customers": args.customers, "batch": args.batch, "algorithms": args.algorithm}
    rows = rows_for(results)
    for row in rows:
        log.info("%s: %s %s (before %s, ratio %.3f)", row.metric, f"{row.measured:,.4g}", row.unit,
                 f"{row.reference:,.4g}", row.ratio)  # fmt: skip
    save_result("model_traffic", {"params": params, "results": results}, rows, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
