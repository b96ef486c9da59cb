"""Whole-process throughput: ``segmenter replay`` next to a bare river loop, both as separate processes.

In one run, over the same JSONL event file(s):

``replay``
    ``python -m segmenter -q replay EVENTS --output /dev/null`` (start-up,
    imports and numba's cache load included), with the default config.
``bare river``
    ``python -m bench.replay_process --bare EVENTS``: a process that reads the
    same file (orjson), keeps a cheap per-customer feature vector for each lens
    of the default config (running counts and sums, no decay) and calls river's
    ``KMeans.learn_one`` + ``predict_one`` per event and lens (river's import
    included).

Each is timed by the CPU time (user + system) of the child process
(:func:`resource.getrusage` of the children), the best of ``--repeat`` runs;
the ratio bare river / replay is the target (>= 2). Wall times are printed too,
but on a shared machine the CPU times are the steadier ones. ``--against DIR``
also times the replay of another checkout (``PYTHONPATH=DIR``, e.g. an export
of main) in the same run, for before/after ratios measured side by side.

Usage::

    python -m bench.replay_process /tmp/sparse.jsonl /tmp/dense.jsonl --repeat 2 [--against /tmp/main-export]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from river import cluster

from bench.processes import process_env

TARGET_RATIO = 2.0
_CLUSTERS = {"value": 5, "engagement": 4}


def bare(path: Path) -> int:
    """The bare river loop over the events of ``path``; returns the number of events."""
    models: dict[str, Any] = {n: cluster.KMeans(n_clusters=k, halflife=0.01, seed=7) for n, k in _CLUSTERS.items()}
    state: dict[str, list[float]] = {}
    n = 0
    with open(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            ev = orjson.loads(line)
            s = state.get(ev["customer_id"])
            if s is None:
                s = state[ev["customer_id"]] = [0.0] * 8
            amount = float(ev.get("amount") or 0.0)
            s[0] += 1.0
            if ev.get("type") == "purchase":
                s[1] += 1.0
                s[2] += amount
            s[3] = s[2] / s[1] if s[1] else 0.0
            s[4] += ev.get("type") == "session_start"
            s[5] += ev.get("type") == "product_view"
            s[6] += ev.get("type") == "add_to_cart"
            s[7] += ev.get("type", "").startswith("email")
            x_value = {0: s[0], 1: s[1], 2: s[2], 3: s[3]}
            x_eng = {0: s[4], 1: s[5], 2: s[6], 3: s[1] / s[0], 4: s[7]}
            for model, x in ((models["value"], x_value), (models["engagement"], x_eng)):
                model.learn_one(x)
                model.predict_one(x)
            n += 1
    return n


def _child_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def timed(cmd: list[str], pythonpath: Path | None = None) -> tuple[float, float]:
    """Run ``cmd`` to completion; returns (wall, cpu) seconds of the child.

    ``pythonpath``: run it in that directory with ``PYTHONPATH`` set to it (``-m`` looks in the working
    directory first).
    """
    env = process_env() if pythonpath is None else process_env(pythonpath)
    c0, w0 = _child_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=pythonpath)
    return time.perf_counter() - w0, _child_cpu() - c0


def measure(path: Path, repeat: int, against: Path | None = None) -> dict[str, Any]:
    """Best (wall, cpu) of ``repeat`` runs of each process over ``path``, and the ratios."""
    py = sys.executable
    replay = [py, "-m", "segmenter", "-q", "replay", str(path.resolve()), "--output", os.devnull]
    cmds: dict[str, tuple[list[str], Path | None]] = {
        "replay": (replay, None),
        "bare_river": ([py, "-m", "bench.replay_process", "--bare", str(path)], None),
    }
    if against is not None:
        cmds["against"] = (replay, against)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for name, (cmd, pythonpath) in cmds.items():
            wall, cpu = timed(cmd, pythonpath)
            prev = best.get(name)
            best[name] = (wall, cpu) if prev is None or cpu < prev[1] else prev
    result = {
        "file": str(path),
        "replay_cpu_s": best["replay"][1],
        "replay_wall_s": best["replay"][0],
        "bare_cpu_s": best["bare_river"][1],
        "bare_wall_s": best["bare_river"][0],
        "ratio_cpu": best["bare_river"][1] / best["replay"][1],
    }
    if against is not None:
        result["against_cpu_s"] = best["against"][1]
        result["against_ratio_cpu"] = best["bare_river"][1] / best["against"][1]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="+", type=Path, help="JSONL event files")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs (default %(default)s)")
    parser.add_argument("--bare", action="store_true", help="be the bare river process (internal)")
    parser.add_argument("--against", type=Path, help="also time the replay of this checkout (PYTHONPATH), same run")
    args = parser.parse_args(argv)
    if args.bare:
        bare(args.events[0])
        return 0
    ok = True
    for path in args.events:
        r = measure(path, args.repeat, args.against)
        ok = ok and r["ratio_cpu"] >= TARGET_RATIO
        print(
            f"{path.name}: replay {r['replay_cpu_s']:.2f} s cpu ({r['replay_wall_s']:.2f} wall), "
            f"bare river {r['bare_cpu_s']:.2f} s cpu ({r['bare_wall_s']:.2f} wall), "
            f"bare/replay {r['ratio_cpu']:.2f}x (target >= {TARGET_RATIO:g})"
        )
        if args.against is not None:
            print(f"{path.name}: against {args.against}: replay {r['against_cpu_s']:.2f} s cpu, "
                  f"bare/replay {r['against_ratio_cpu']:.2f}x")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
