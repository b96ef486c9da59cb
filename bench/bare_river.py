"""The whole-process reference of ``bench.replay_throughput``: a bare river loop over an events file.

A new Python process that reads the JSONL file ``segmenter replay`` reads,
parses each line, keeps a few running counters per customer (events,
purchases, spend, last time) to make one feature vector per lens, and runs
river's ``KMeans.learn_one`` + ``predict_one`` on it: the naive per-event use
of river, start-up (imports) included, as one process. Nothing of the
segmenter is imported, so the start-up it pays is river's and Python's only.

Usage::

    python -m bench.bare_river EVENTS.jsonl --lens 4:5 --lens 5:4

(``--lens DIMENSIONS:CLUSTERS`` once per lens of the config being compared).
Prints one JSON line: ``{"events": N, "vectors": N * lenses}``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from river import cluster


def _lens(text: str) -> tuple[int, int]:
    dims, _, clusters = text.partition(":")
    try:
        return int(dims), int(clusters)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected DIMENSIONS:CLUSTERS, e.g. 4:5, got {text!r}") from None


def run(path: Path, lenses: list[tuple[int, int]], seed: int) -> tuple[int, int]:
    """The loop; returns (events, vectors learnt and predicted)."""
    models: list[Any] = [cluster.KMeans(n_clusters=k, seed=seed) for _, k in lenses]
    dims = [d for d, _ in lenses]
    customers: dict[str, list[float]] = {}
    events = vectors = 0
    with path.open("rb") as fh:
        for line in fh:
            ev = orjson.loads(line)
            t = datetime.fromisoformat(ev["ts"]).timestamp()
            c = customers.get(ev["customer_id"])
            if c is None:
                c = customers[ev["customer_id"]] = [0.0, 0.0, 0.0, t]
            c[0] += 1.0
            if ev["type"] == "purchase":
                c[1] += 1.0
                c[2] += float(ev.get("amount") or 0.0)
            gap = (t - c[3]) / 86400.0
            c[3] = t
            values = (c[0], c[1], c[2], gap, c[2] / c[1] if c[1] else 0.0)
            for model, d in zip(models, dims, strict=True):
                x = {j: values[j % len(values)] for j in range(d)}
                model.learn_one(x)
                model.predict_one(x)
                vectors += 1
            events += 1
    return events, vectors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", type=Path, help="events, one JSON object per line")
    parser.add_argument("--lens", type=_lens, action="append", required=True, metavar="DIMENSIONS:CLUSTERS")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    events, vectors = run(args.events, args.lens, args.seed)
    print(orjson.dumps({"events": events, "vectors": vectors}).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
