"""Resident state per customer of the core (:class:`segmenter.pipeline.Segmenter`).

A Segmenter with the default config is warmed up (its lenses become ready on
a few thousand customers), then one event per new customer is processed
(``parse_event`` + ``process_batch`` in replay's chunks; ids like the simulator's ``c0000123``, a mix of
session, view, cart, e-mail and purchase events, event time one second apart),
so the core builds its whole per-customer state: feature columns, id map,
de-duplication ring, segment and dwell per lens, dirty flags. Measured at each
size in ``--sizes``:

* **RSS delta** (``/proc/self/statm``) over the warmed-up baseline, divided by
  the customers added: what the process really pays, including the store's
  spare capacity (its columns grow by doubling) and allocator slack;
* **tracemalloc** (a second pass at the smallest size only, ``--no-trace`` to
  skip): Python and numpy allocations still alive, per customer;
* the store's own ``nbytes`` (numpy columns only) per customer.

The target is <= 256 bytes per customer.

Usage::

    python -m bench.memory --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from bench.common import Row, add_common_args, rss_bytes, save_result, setup_logging
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from segmenter.replay import REPLAY_CHUNK

log = logging.getLogger("bench.memory")

TARGET_BYTES = 256
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
_TYPES = ("session_start", "product_view", "add_to_cart", "email_open", "purchase", "page_view")


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _feed(seg: Segmenter, start: int, stop: int, prefix: str, offset: int) -> None:
    batch = []
    for i in range(start, stop):
        etype = _TYPES[i % len(_TYPES)]
        ev: dict[str, Any] = {
            "event_id": f"m{i}",
            "customer_id": f"{prefix}{i:07d}",
            "type": etype,
            "ts": _iso(T0 + offset + i),
        }
        if etype == "purchase":
            ev["amount"] = 10.0 + (i % 97)
        batch.append(parse_event(orjson.dumps(ev)))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="customer counts (default 100000 1000000)"
    )
    parser.add_argument("--warmup", type=int, default=3000, help="warm-up customers (default %(default)s)")
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc pass")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

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


if __name__ == "__main__":
    sys.exit(main())
