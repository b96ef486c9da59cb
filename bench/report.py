"""Turn the JSON results in ``bench/out/`` into ``bench/RESULTS.md`` and PNG plots.

Usage::

    python -m bench.report [--out bench/out] [--results bench/RESULTS.md] [--no-plots]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from bench.capacity import capacity_section
from bench.common import BENCH_DIR, OUT_DIR, load_results, setup_logging
from bench.peer_quix import PEER_NOTE, peer_table

log = logging.getLogger("bench.report")

ORDER = (
    "consumer_throughput",
    "replay_throughput",
    "latency",
    "memory",
    "quality",
    "backlog",
    "peer_quix",
    "model_traffic",
    "capacity",
)
"""The results in the order of bench/run_all.py's steps (others follow, by name)."""
STATUS_FILE = "run_all.status"
"""bench/run_all.py's record of the run in the results directory: size, wall times, each step's arguments."""


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if unit == "share":
            return f"{100 * v:.2f}%"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}"
    return str(value)


def _pass(p: bool | None) -> str:
    return "" if p is None else ("**PASS**" if p else "**FAIL**")


def _names(results: dict[str, dict[str, Any]]) -> list[str]:
    return [n for n in ORDER if n in results] + sorted(set(results) - set(ORDER))


def _targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row that has a target (``passed`` is not None), in step order."""
    return [r for n in _names(results) for r in results[n]["rows"] if r["passed"] is not None]


def _value(r: dict[str, Any]) -> str:
    """A target row's figure: its same-run ratio where it has a reference, else the measured value."""
    if r["ratio"] is not None:
        return f"{_fmt(r['ratio'])} ({_fmt(r['measured'], r['unit'])} vs {_fmt(r['reference'])})"
    return _fmt(r["measured"], r["unit"]) + (f" {r['unit']}" if r["unit"] not in ("", "share") else "")


def summary_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """Every target once: the figure (a ratio against a same-run reference where the target is one) and PASS/FAIL."""
    rows = _targets(results)
    met = sum(bool(r["passed"]) for r in rows)
    lines = [
        f"{met} of {len(rows)} targets met.",
        "",
        "| section | metric | target | ratio (measured vs same-run reference) or measured | result |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['section']} | {r['metric']} | {r['target']} | {_value(r)} | {_pass(r['passed'])} |" for r in rows]
    return lines


def summary_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """The summary as plain text for the terminal: ``PASS``/``FAIL``, the target, the figure."""
    rows = _targets(results)
    out = [f"targets: {sum(bool(r['passed']) for r in rows)} of {len(rows)} met"]
    for r in rows:
        out.append(
            f"{'PASS' if r['passed'] else 'FAIL'}  {r['section']}: {r['metric']}: {_value(r)}, target {r['target']}"
        )
    return out


def run_section(status: dict[str, Any]) -> list[str]:
    """How the run was made: its size, wall time, and each step's arguments, wall time and result."""
    steps_s = sum(float(st.get("seconds", 0.0)) for st in status.get("steps", {}).values())
    run = (
        "the steps below come from more than one run (the last with `--only`)"
        if status.get("partial")
        else f"the run took {status.get('wall_s', 0.0):,.0f} s"
    )
    lines = [
        f"Size `{status.get('size', '?')}`; the steps' wall times add up to {steps_s:,.0f} s ({steps_s / 60:.1f} min); "
        f"{run}, the last finished {status.get('finished_at', '?')}. "
        "Each step is `python -m bench.<step> <arguments>`.",
        "",
        "| step | what | arguments (sizes) | wall s | result |",
        "|---|---|---|---|---|",
    ]
    for name, st in status.get("steps", {}).items():
        error = str(st.get("error", "")).strip().splitlines()
        result = "ok" if st.get("ok") else f"**failed**: {error[-1] if error else '?'}"
        args = " ".join(st.get("args", []))
        lines.append(f"| {name} | {st.get('what', '')} | `{args}` | {st.get('seconds', 0):,.0f} | {result} |")
    return lines


def targets_table(results: dict[str, dict[str, Any]]) -> list[str]:
    """The table of every row of every result: section, metric, target, measured, reference, ratio, pass."""
    lines = [
        "| section | metric | target | measured | reference | ratio | result | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in _names(results):
        for r in results[name]["rows"]:
            measured = _fmt(r["measured"], r["unit"]) + (f" {r['unit']}" if r["unit"] not in ("", "share") else "")
            lines.append(
                f"| {r['section']} | {r['metric']} | {r['target'] or '-'} | {measured} | "
                f"{_fmt(r['reference'])} | {_fmt(r['ratio'])} | {_pass(r['passed'])} | {r['note']} |"
            )
    return lines


def quality_tables(q: dict[str, Any]) -> list[str]:
    """One table per scenario: every algorithm side by side."""
    out: list[str] = []
    params = q["data"]["params"]
    for scenario, runs in q["data"]["runs"].items():
        sp = params["scenarios"].get(scenario, {})
        out += [
            "",
            f"#### Scenario `{scenario}`: {sp.get('customers_total', '?')} customers, "
            f"{sp.get('days', '?')} days, {sp.get('events', '?'):,} events, {sp.get('drifts', 0)} drifts",
            "",
        ]
        lens_names = list(next(iter(runs.values()))["lenses"]) if runs else []
        head = ["algorithm", "joint ARI vs personas"]
        for ln in lens_names:
            head += [f"{ln} ARI vs personas", f"{ln} ARI vs batch KMeans (k)", f"{ln} batch KMeans ARI vs personas"]
        head += ["prequential joint ARI (2nd half)"]
        for ln in lens_names:
            head += [
                f"{ln} flap rate (moves); 2nd half",
                f"{ln} reversal rate 7 days; 30 days",
                f"{ln} model moves / customer",
                f"{ln} segments ever (live)",
            ]
        head += ["drift followed", "drift median days (p90)", "refused (late)", "events/s"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for algorithm, r in runs.items():
            cells = [algorithm, _fmt(r["final_ari_joint"])]
            for ln in lens_names:
                v = r["lenses"][ln]
                cells += [
                    _fmt(v["final_ari"]),
                    f"{_fmt(v['ari_vs_batch'])} ({v['batch_k']})",
                    _fmt(v["batch_ari_vs_truth"]),
                ]
            cells.append(_fmt(r["prequential_ari_joint_2nd_half"]))
            for ln in lens_names:
                v = r["lenses"][ln]
                cells += [
                    f"{100 * v['flap_rate']:.2f}% ({v['moves']}); {100 * v.get('flap_rate_2nd_half', math.nan):.2f}%",
                    f"{100 * v.get('reversal_rate_7d', math.nan):.2f}% ({v.get('reversals_7d', '?')}); "
                    f"{100 * v.get('reversal_rate_30d', math.nan):.2f}%",
                    _fmt(v["model_moves_per_customer"]),
                    f"{v['segments_ever']} ({v['live_segments']})",
                ]
            d = r["drift"]
            if d["drifted"]:
                cells += [
                    f"{100 * d['followed_share']:.0f}% of {d['drifted']}",
                    f"{_fmt(d['median_days'])} ({_fmt(d['p90_days'])})",
                ]
            else:
                cells += ["-", "-"]
            cells.append(str(r.get("late", "?")))
            cells.append(_fmt(r["events_per_s"]))
            out.append("| " + " | ".join(cells) + " |")
    return out


def latency_table(lat: dict[str, Any]) -> list[str]:
    """Phases of the latency run."""
    lines = [
        "| offered rate | achieved offer | committed rate | drain after last send | samples | p50 | p95 | p99 | "
        "max | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph in lat["data"]["phases"]:
        lines.append(
            f"| {ph['rate']:,.0f}/s | {ph['offered']:,.0f}/s | {ph['committed_rate']:,.0f}/s | "
            f"{ph['drain_s']:.2f} s | {ph['samples']:,} | {ph['p50_ms']:.0f} ms | {ph['p95_ms']:.0f} ms | "
            f"{ph['p99_ms']:.0f} ms | {ph['max_ms']:.0f} ms | {'yes' if ph['sustained'] else '**no**'} |"
        )
    return lines


# ----------------------------------------------------------------------------- plots


class _Plots:
    """Writes PNG plots into one directory and remembers their paths."""

    def __init__(self, plot_dir: Path) -> None:
        matplotlib.use("Agg")
        plot_dir.mkdir(parents=True, exist_ok=True)
        self.dir = plot_dir
        self.written: list[Path] = []

    def save(self, fig: Any, name: str) -> None:
        path = self.dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        self.written.append(path)


def _throughput_bars(results: dict[str, dict[str, Any]]) -> list[tuple[str, float, str]]:
    """(label, events/s, colour) of the consumer and the offline pipeline next to their references (gray)."""
    bars: list[tuple[str, float, str]] = []
    ct = results.get("consumer_throughput")
    if ct:
        d = ct["data"]
        bars += [
            ("bare kafka-python\nread+decode", d["bare"], "tab:gray"),
            *([("bare kafka-python\nexactly-once copy", d["bare_eos"], "tab:gray")] if d.get("bare_eos") else []),
            ("consumer\nexactly-once", d["exactly_once"], "tab:blue"),
            ("consumer\nat-least-once", d["at_least_once"], "tab:cyan"),
        ]
    rt = results.get("replay_throughput")
    if rt:
        r = rt["data"]["rates"]
        bars += [
            ("bare river KMeans\nlearn+predict x lenses", r["bare_river"]["wall"], "tab:gray"),
            ("segmenter replay", r["replay"]["wall"], "tab:green"),
            ("Segmenter.process_batch\n(pre-parsed)", r["process"]["wall"], "tab:olive"),
        ]
    return bars


def _plot_throughput(plots: _Plots, results: dict[str, dict[str, Any]]) -> None:
    bars = _throughput_bars(results)
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
    ax.set_ylabel("events/s")
    ax.set_title("Throughput against same-run references (gray)")
    for i, b in enumerate(bars):
        ax.text(i, b[1], f"{b[1]:,.0f}", ha="center", va="bottom", fontsize=8)
    plots.save(fig, "throughput.png")


def _plot_latency(plots: _Plots, lat: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    for ph in lat["data"]["phases"]:
        v = np.sort(np.asarray(ph["latencies_ms"]))
        if len(v):
            ax.plot(v, np.linspace(0, 1, len(v)), label=f"{ph['rate']:,.0f}/s (p99 {ph['p99_ms']:.0f} ms)")
    ax.axvline(250, color="red", linestyle="--", linewidth=1, label="target p99 at 5k/s")
    ax.set_xscale("log")
    ax.set_xlabel("event -> committed output latency (ms)")
    ax.set_ylabel("cumulative share")
    ax.set_title("Latency distribution (exactly-once, real broker)")
    ax.legend(fontsize=8)
    plots.save(fig, "latency.png")


def _plot_prequential(plots: _Plots, scenario: str, by_algo: dict[str, Any]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    for algorithm, r in by_algo.items():
        pts = [(p["day"], p["joint"]) for p in r["prequential"] if p["joint"] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=algorithm)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("prequential ARI (joint label vs persona)")
    ax.set_title(f"Prequential ARI over time, scenario {scenario}")
    ax.set_ylim(-0.05, 1.0)
    if ax.get_legend_handles_labels()[1]:  # a tiny run may have no point to plot
        ax.legend(fontsize=8)
    plots.save(fig, f"ari_over_time_{scenario}.png")


def _plot_segment_sizes(plots: _Plots, base: dict[str, Any], scen: str) -> None:
    lens_names = list(base["lenses"])
    fig, axes = plt.subplots(1, len(lens_names), figsize=(6 * len(lens_names), 4), squeeze=False)
    days = [s["day"] for s in base["sizes_over_time"]]
    for ax, ln in zip(axes[0], lens_names, strict=True):
        ids: dict[str, int] = {}
        for s in base["sizes_over_time"]:
            for sid, n in s["segments"].get(ln, {}).items():
                ids[sid] = max(ids.get(sid, 0), n)
        top = sorted(ids, key=lambda k: -ids[k])[:12]
        for sid in top:
            ax.plot(days, [s["segments"].get(ln, {}).get(sid, 0) for s in base["sizes_over_time"]], label=sid)
        ax.set_title(f"{ln}: segment sizes (kmeans, {scen}; {len(ids)} ids seen)")
        ax.set_xlabel("simulated day")
        ax.set_ylabel("customers")
        if top:
            ax.legend(fontsize=6, ncol=2)
    plots.save(fig, "segment_sizes.png")


def _plot_segment_profiles(plots: _Plots, base: dict[str, Any], scen: str) -> None:
    lens_names = list(base["lenses"])
    fig, axes = plt.subplots(1, len(lens_names), figsize=(6 * len(lens_names), 4), squeeze=False)
    for ax, ln in zip(axes[0], lens_names, strict=True):
        profiles = base["lenses"][ln]["profiles"]
        if not profiles:
            continue
        feats = list(profiles[0]["z"])
        mat = [[p["z"][f] for f in feats] for p in profiles]
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-2.5, vmax=2.5, aspect="auto")
        ax.set_xticks(range(len(feats)), feats, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(profiles)), [f"{p['id']} ({p['size']})\n{p['name']}" for p in profiles], fontsize=6)
        ax.set_title(f"{ln}: segment profiles (z-scores, kmeans, {scen})")
        fig.colorbar(im, ax=ax)
    plots.save(fig, "segment_profiles.png")


def make_plots(results: dict[str, dict[str, Any]], plot_dir: Path) -> list[Path]:
    """Write the PNG plots; returns their paths."""
    plots = _Plots(plot_dir)
    _plot_throughput(plots, results)
    lat = results.get("latency")
    if lat and lat["data"]["phases"]:
        _plot_latency(plots, lat)
    q = results.get("quality")
    if q:
        runs = q["data"]["runs"]
        for scenario, by_algo in runs.items():
            _plot_prequential(plots, scenario, by_algo)
        scen = "personas" if "personas" in runs else next(iter(runs), "")
        base = runs.get(scen, {}).get("kmeans")
        if base:
            _plot_segment_sizes(plots, base, scen)
            _plot_segment_profiles(plots, base, scen)
    return plots.written


# ----------------------------------------------------------------------------- the report


def _header(results: dict[str, dict[str, Any]], command: str) -> list[str]:
    """Title, what the numbers are, and the machine of the first result."""
    m = results[_names(results)[0]]["machine"]
    return [
        "# Benchmark and quality results",
        "",
        f"Written by `{command}` (bench/run_all.py); every script can be run alone (see bench/*.py).",
        "Targets are ratios against a reference measured in the same run, or machine-independent sizes and",
        "quality numbers. The machine is shared and noisy: rates move by 10-30% between runs.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), {m['memory_gib']} GiB, {m['os']}",
        f"- Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- git {m['git']}; load average at start {m['load_avg']}",
        "",
    ]


def _parameters(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each result's parameters (its sizes) and when it was written."""
    lines = []
    for name in _names(results):
        params = results[name]["data"].get("params", {})
        lines.append(
            f"- `{name}` ({results[name]['written_at']}): "
            + ", ".join(f"{k}={v}" for k, v in params.items() if k != "scenarios")
        )
    return lines


def _quality_section(q: dict[str, Any]) -> list[str]:
    return [
        "Final ARI after a full re-score at the end; *batch KMeans* is scikit-learn on the same final",
        "features (log1p + standardised, k = segments the lens ended with); *batch KMeans ARI vs personas*",
        "(k = number of personas) shows what the features allow. Flap: a move reversed within the",
        f"customer's next {q['data']['params']['flap_window']} events. *Model moves*:",
        "customers moved because their segment merged/retired. *Drift followed*: the customer's joint",
        "segment maps (by majority) to its new persona before the run ends.",
        *quality_tables(q),
    ]


SECTIONS: tuple[tuple[str, str, Callable[[dict[str, dict[str, Any]]], list[str]]], ...] = (
    ("latency", "Latency phases", lambda rs: latency_table(rs["latency"])),
    (
        "peer_quix",
        "Peer framework: Quix Streams (exactly-once, same events, same run)",
        lambda rs: [PEER_NOTE, "", *peer_table(rs["peer_quix"])],
    ),
    (
        "capacity",
        "Capacity of shared mode: the largest group one trainer serves",
        lambda rs: capacity_section(rs["capacity"], rs.get("peer_quix")),
    ),
    ("quality", "Quality per algorithm", lambda rs: _quality_section(rs["quality"])),
)
"""The sections after the tables of every target and measurement: (result needed, title, its lines)."""


def write_report(out_dir: Path, results_path: Path, plots: bool = True, command: str = "make bench") -> Path:
    """Write ``results_path`` from the JSON results in ``out_dir`` (and the plots into ``out_dir``)."""
    results = load_results(out_dir)
    if not results:
        raise FileNotFoundError(f"no results in {out_dir}")
    written = make_plots(results, out_dir) if plots else []
    lines = _header(results, command)
    status_path = out_dir / STATUS_FILE
    if status_path.exists():
        lines += ["## How this run was made", "", *run_section(json.loads(status_path.read_text())), ""]
    lines += ["## Summary: every target", "", *summary_table(results), ""]
    lines += ["## Parameters", "", *_parameters(results)]
    lines += ["", "## Every measurement", "", *targets_table(results)]
    for name, title, section in SECTIONS:
        if name in results:
            lines += ["", f"## {title}", "", *section(results)]
    if written:
        lines += ["", "## Plots", ""]
        for p in written:
            rel = p.relative_to(results_path.parent) if p.is_relative_to(results_path.parent) else p
            lines.append(f"![{p.stem}]({rel})")
    results_path.write_text("\n".join(lines) + "\n")
    log.info("wrote %s and %d plots", results_path, len(written))
    return results_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the JSON results and plots")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="the Markdown report")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    write_report(args.out, args.results, plots=not args.no_plots, command="python -m bench.report")
    print(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
