"""Helpers shared by the benchmark scripts: results files, machine info, simulated input, configs.

Every benchmark script writes one JSON file ``<out>/<name>.json`` holding its
parameters, its raw measurements and a list of *rows* (metric, target,
measured, reference, ratio, pass) that :mod:`bench.report` turns into
``bench/RESULTS.md``. All targets are ratios against a reference measured in
the same run, or sizes/quality numbers that do not depend on the machine's
speed; nothing here asserts a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from producer.faults import FaultConfig, FaultInjector
from producer.personas import Persona
from producer.retail import SparseConfig, SparseRetail
from producer.simulator import SimConfig, Simulator, TruthEntry
from segmenter.config import DEFAULT_CONFIG_PATH, SegmenterConfig, config_from_dict

__all__ = [
    "ALGORITHMS",
    "OUT_DIR",
    "Row",
    "SimRun",
    "add_common_args",
    "algo_params",
    "config_for",
    "default_config_dict",
    "load_results",
    "machine_info",
    "percentiles",
    "rss_bytes",
    "save_result",
    "setup_logging",
    "simulate",
    "simulate_sparse",
    "with_bad_clock",
]

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
"""Default directory of the JSON results and the PNG plots."""

ALGORITHMS: tuple[str, ...] = ("kmeans", "streamkmeans", "denstream", "dbstream", "clustream")
"""Every river algorithm a lens config can select (segmenter.lenses.models.ALGORITHMS)."""


KMEANS_HALFLIFE = 0.01
"""The k-means step used for STREAMKMeans and CluStream (segmenter.lenses.models.DEFAULT_KMEANS_HALFLIFE)."""


def algo_params(algorithm: str, k: int) -> dict[str, Any]:
    """River parameters used for ``algorithm`` in a lens with ``k`` intended segments.

    K-means style models get ``k`` and the core's default KMeans step
    (``halflife`` 0.01: river's 0.5 makes centers jump and segment ids churn); density models get the settings under
    which the lens contract tests find well-separated blobs in scaled space
    (``tests/unit/lenses/helpers.py``), because river's own defaults are tuned
    for unscaled data.
    """
    if algorithm == "kmeans":
        return {"n_clusters": k}
    if algorithm == "streamkmeans":
        return {"n_clusters": k, "chunk_size": 50, "halflife": KMEANS_HALFLIFE}
    if algorithm == "denstream":
        return {
            "decaying_factor": 0.01,
            "beta": 0.5,
            "mu": 3,
            "epsilon": 0.5,
            "n_samples_init": 100,
            "stream_speed": 50,
        }
    if algorithm == "dbstream":
        return {
            "clustering_threshold": 0.6,
            "fading_factor": 0.001,
            "cleanup_interval": 50,
            "intersection_factor": 0.1,
            "minimum_weight": 2,
        }
    if algorithm == "clustream":
        return {"n_macro_clusters": k, "max_micro_clusters": 20, "time_gap": 100, "halflife": KMEANS_HALFLIFE}
    raise ValueError(f"unknown algorithm {algorithm!r}; use one of {', '.join(ALGORITHMS)}")


@dataclass
class Row:
    """One line of the results table.

    ``passed`` is None for informational rows (no target).
    """

    section: str
    metric: str
    measured: float | None
    unit: str = ""
    target: str = ""
    reference: float | None = None
    ratio: float | None = None
    passed: bool | None = None
    note: str = ""


def save_result(name: str, data: dict[str, Any], rows: Sequence[Row], out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>.json`` with the machine info, ``data`` and the table rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    payload = {
        "name": name,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "data": data,
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    log.info("wrote %s", path)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def load_results(out_dir: Path) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` result in ``out_dir``, by name."""
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(out_dir.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        if isinstance(payload, dict) and "rows" in payload:
            results[str(payload.get("name", path.stem))] = payload
    return results


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "-"


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "-"
    rev = out.stdout.strip() or "-"
    return f"{rev}{'+dirty' if dirty.stdout.strip() else ''}"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the versions of the libraries that matter here."""
    try:
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in load],
        "git": _git_revision(),
        "versions": {
            d: _version(d)
            for d in ("river", "numpy", "kafka-python", "pydantic", "orjson", "scikit-learn", "matplotlib")
        },
    }


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc/self/statm``; else the peak RSS)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentiles(values: Iterable[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` of ``values`` (NaN when empty)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if not len(arr):
        return {f"p{q:g}": float("nan") for q in qs}
    return {f"p{q:g}": float(np.percentile(arr, q)) for q in qs}


# ----------------------------------------------------------------------------- configs


def default_config_dict() -> dict[str, Any]:
    """The packaged default config (``segmenter/defaults/default.toml``) as plain data."""
    return tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))


def config_for(algorithm: str, *, k: dict[str, int] | None = None, **lens_overrides: Any) -> SegmenterConfig:
    """The default config with every lens switched to ``algorithm``.

    Parameters
    ----------
    algorithm
        One of :data:`ALGORITHMS`.
    k
        Intended segments per lens name (default: the default config's ``n_clusters``).
        Where ``algorithm`` is the lens's own, its other parameters are kept.
    lens_overrides
        Extra :class:`~segmenter.lenses.config.LensConfig` fields applied to every lens.
    """
    data = default_config_dict()
    for lens in data["lenses"]:
        n = (k or {}).get(lens["name"], int(lens.get("params", {}).get("n_clusters", 5)))
        # the config's own parameters (e.g. a KMeans halflife) are kept when the algorithm is unchanged
        own = dict(lens.get("params", {})) if lens.get("algorithm", "kmeans") == algorithm else {}
        lens["algorithm"] = algorithm
        lens["params"] = {**own, **algo_params(algorithm, n)}
        lens["max_segments"] = max(int(lens.get("max_segments", 12)), n)
        lens.update(lens_overrides)
    return config_from_dict(data, f"<bench {algorithm}>")


# ----------------------------------------------------------------------------- simulated input


@dataclass
class SimRun:
    """A simulated stream: encoded events, per-event metadata and the persona timeline."""

    values: list[bytes]
    keys: list[bytes]
    ts: list[float]
    personas: list[str]
    """The persona that produced each event (the ground truth at that moment)."""
    truth: list[TruthEntry]
    customers: int
    drifts: int
    config: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.values)

    def write_jsonl(self, path: Path) -> None:
        """The events as a JSONL file (what ``segmenter-producer synth --to file`` writes)."""
        with path.open("wb") as fh:
            for v in self.values:
                fh.write(v + b"\n")

    def final_persona(self) -> dict[str, str]:
        """Each customer's persona at the end of the run."""
        out: dict[str, str] = {}
        for entry in sorted(self.truth, key=lambda e: e.start):
            out[entry.customer_id] = entry.persona
        return out


def simulate(
    customers: int,
    days: float,
    seed: int = 1,
    *,
    max_events: int | None = None,
    personas: tuple[Persona, ...] | None = None,
    **sim_kwargs: Any,
) -> SimRun:
    """Run the producer's simulator (the code behind ``segmenter-producer synth --truth``) in memory."""
    kwargs: dict[str, Any] = dict(sim_kwargs)
    if personas is not None:
        kwargs["personas"] = personas
    cfg = SimConfig(customers=customers, days=days, seed=seed, **kwargs)
    return collect(
        Simulator(cfg),
        {"customers": customers, "days": days, "seed": seed, "drift_share": cfg.drift_share},
        max_events,
    )


def simulate_sparse(customers: int, days: float, seed: int = 1, *, max_events: int | None = None) -> SimRun:
    """The ``sparse`` scenario (``segmenter-producer synth --scenario sparse``) in memory."""
    cfg = SparseConfig(customers=customers, days=days, seed=seed)
    return collect(
        SparseRetail(cfg),
        {"scenario": "sparse", "customers": customers, "days": days, "seed": seed, "drift_share": 0.0},
        max_events,
    )


def collect(gen: Simulator | SparseRetail, config: dict[str, Any], max_events: int | None = None) -> SimRun:
    """Run a generator to its end (or ``max_events``) and keep its events, keys, times and personas."""
    values: list[bytes] = []
    keys: list[bytes] = []
    ts: list[float] = []
    who: list[str] = []
    dumps = orjson.dumps
    for ev in gen.events():
        values.append(dumps(ev.event))
        keys.append(ev.key)
        ts.append(ev.ts)
        who.append(ev.persona)
        if max_events is not None and len(values) >= max_events:
            break
    return SimRun(
        values, keys, ts, who, list(gen.truth), gen.customer_count, gen.drifts, {**config, "events": len(values)}
    )


def with_bad_clock(sim: SimRun, at: int, ahead_s: float = 365 * 86400.0) -> SimRun:
    """A copy of ``sim`` whose ``at``-th event is dated ``ahead_s`` ahead (the producer's ``bad_clock`` fault).

    ``ts`` keeps every event's true time (the stream's position), so per-day measures stay in place.
    """
    injector = FaultInjector(FaultConfig(bad_clock_at=at, bad_clock_ahead_s=ahead_s))
    out: list[tuple[bytes, bytes]] = []
    for t, key, value in zip(sim.ts, sim.keys, sim.values, strict=True):
        injector.process(t, key, value, out)
    injector.drain(out)
    values = [v for _, v in out]
    return SimRun(
        values,
        list(sim.keys),
        list(sim.ts),
        list(sim.personas),
        sim.truth,
        sim.customers,
        sim.drifts,
        {**sim.config, "bad_clock_at": at, "bad_clock_ahead_days": ahead_s / 86400.0},
    )


# ----------------------------------------------------------------------------- CLI plumbing


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--out`` (results directory), ``--seed`` and ``-v``."""
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="results directory (default bench/out)")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def setup_logging(verbose: bool = False) -> None:
    """Logging for a script's ``main`` (never at import)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "matplotlib", "PIL", "segmenter", "consumer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
