"""Cost of one population-wide refinement at a million customers, next to the event kernel's work.

In one run, on ``--customers`` customers (one purchase each, log-normal
amounts, spread over ``--days``):

``event pass``
    the reference: the compiled event loop's per-event feature work
    (:func:`segmenter.kernel._ingest` then :func:`segmenter.kernel._vector`)
    over one event per customer, i.e. ``--customers`` events; a lower bound of
    the event kernel's cost (which also scores every lens);
``vectors_at``
    :meth:`FeatureStore.vectors_at`: every customer's features at the tick (the
    value lens's columns);
``refine with the restart check``
    the lens's first :meth:`Lens.refine` of the default value lens on all of
    them (one run: the check runs at the first refinement, every 4th and where
    the SSE rose): population standardisation, Lloyd iterations warm-started
    from the live centers, batch k-means on a sample (the restart check) and
    the rows of the segment rules;
``refine``
    a refinement without the check (the same rows again: the SSE did not rise),
    the usual tick;
``quality and rules read``
    after a refinement, reading :attr:`Lens.quality` (batch k-means on the
    sample and the silhouette, the consumer's gauges) and :attr:`Lens.rules`
    (every segment's rule): what a refinement costs when everything is read;
``sample refine (before)``
    the refinement on a 2,000-customer sample, as the core did before.

Each is the best of ``--repeat`` runs; ratios are to the event pass of the same run.

Usage::

    python -m bench.refine_cost --customers 1000000
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import numpy as np
from numba import njit

from bench.common import Row, add_common_args, save_result, setup_logging
from segmenter.config import default_config
from segmenter.features import DAY, FEATURE_NAMES, EventKind, FeatureStore
from segmenter.kernel import N_FEATURES, _ingest, _vector
from segmenter.lenses.lens import Lens

log = logging.getLogger("bench.refine_cost")


@njit(cache=True)
def _event_pass(
    f: Any, t: Any, h: Any, hpos: Any, dirty: Any, times: Any, amounts: Any, dedup: int, fp: Any
) -> float:  # pragma: no cover
    out = np.empty(N_FEATURES, np.float64)
    total = 0.0
    for row in range(len(times)):
        _ingest(f, t, h, hpos, dirty, row, True, 4, times[row], amounts[row], row + 1, dedup, fp)
        _vector(f, t, row, times[row], fp, out)
        total += out[0]
    return total


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _read_after(lens: Lens, rows: np.ndarray) -> float:
    """Seconds to read a fresh refinement's quality and every rule (the refinement itself not timed)."""
    lens.refine(rows)
    t0 = time.perf_counter()
    _ = lens.quality, lens.rules
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers (default %(default)s)")
    parser.add_argument("--days", type=float, default=180.0, help="days the purchases spread over")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (default %(default)s)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = default_config()
    lens_cfg = config.lenses[0]
    n = args.customers
    rng = np.random.default_rng(args.seed)
    store = FeatureStore(config.features, n_lenses=len(config.lenses), capacity=n)
    for i in range(n):
        store.new_row(f"c{i:08d}")
    times = np.sort(rng.integers(0, int(args.days * DAY), n)).astype(np.int64) + store.to_seconds(1_750_000_000)
    amounts = rng.lognormal(3.5, 1.0, n)
    fp = store.kernel_rates()
    _event_pass(store.f[:1].copy(), store.t[:1].copy(), store.h[:1].copy(), store.hpos[:1].copy(),
                store.dirty[:1].copy(), times[:1], amounts[:1], store.dedup_size, fp)  # fmt: skip  # compile

    def event_pass() -> None:
        store.f[:n] = 0
        _event_pass(store.f, store.t, store.h, store.hpos, store.dirty, times, amounts, store.dedup_size, fp)

    t_event = _best(event_pass, args.repeat)
    for j in range(3):  # a few more purchases for some, so orders and aov vary
        some = rng.random(n) < 0.3 / (j + 1)
        for row in np.flatnonzero(some)[: n // 10].tolist():
            store.ingest(
                store.id_of(row),
                f"x{j}",
                EventKind.PURCHASE,
                int(times[row]) + (j + 1) * DAY,
                float(rng.lognormal(3.5, 1.0)),
            )
    at = int(times[-1]) + 3 * DAY
    cols = [FEATURE_NAMES.index(f) for f in lens_cfg.features]
    t_vectors = _best(lambda: store.vectors_at(at, cols), args.repeat)
    _, mat = store.vectors_at(at, cols)
    lens = Lens(lens_cfg, seed=config.seed)
    for x in mat[rng.choice(n, lens_cfg.warmup + 4 * lens_cfg.refresh_every, replace=False)]:
        lens.observe(x)
    t0 = time.perf_counter()
    lens.refine(mat)  # the first refinement: the restart check is due
    t_checked = time.perf_counter() - t0
    t_refine = _best(lambda: lens.refine(mat), args.repeat)
    t_read = min(_read_after(lens, mat) for _ in range(args.repeat))
    sample = mat[np.sort(rng.choice(n, 2000, replace=False))]
    t_sample = _best(lambda: lens.refine(sample), args.repeat)
    quality = lens.quality
    data = {
        "params": {
            "customers": n,
            "days": args.days,
            "repeat": args.repeat,
            "lens": lens_cfg.name,
            "features": list(lens_cfg.features),
        },
        "seconds": {
            "event_pass": t_event,
            "vectors_at": t_vectors,
            "refine_checked": t_checked,
            "refine": t_refine,
            "quality_and_rules": t_read,
            "sample_refine": t_sample,
        },
        "quality": None if quality is None else {"sse_ratio": quality.sse_ratio, "silhouette": quality.silhouette},
    }
    sect = f"refinement cost at {n:,} customers ({lens_cfg.name} lens)"
    timed = [
        ("vectors_at: all customers' features", t_vectors),
        ("refine on all customers, with the restart check", t_checked),
        ("refine on all customers", t_refine),
        ("quality and every rule read after a refine", t_read),
        ("refine on a 2,000 sample (before)", t_sample),
    ]
    rows = [Row(sect, "event pass (features of 1 event per customer)", t_event * 1e3, "ms")]
    rows += [Row(sect, what, t * 1e3, "ms", reference=t_event * 1e3, ratio=t / t_event) for what, t in timed]
    save_result("refine_cost", data, rows, args.out)
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:6.2f}x event pass"
        print(f"{r.metric:<48} {r.measured:10.1f} ms  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
