"""``segmenter``: offline tools around the core (no Kafka).

Commands
--------
``segmenter replay EVENTS.jsonl --output OUT.jsonl --snapshot SNAP.jsonl [--config FILE] [--rules FILE] [--until ISO]``
    The whole pipeline over a file; output messages to OUT (``emitted_at``
    stamped with the wall clock), one line per customer to SNAP at the end,
    and a summary on the console. ``--checkpoint FILE`` also writes the core's
    full binary snapshot (readable by ``profile``).
``segmenter profile SNAPSHOT_OR_CHECKPOINT [--config FILE] [--html OUT.html]``
    Segment sizes and profiles from a replay snapshot (JSONL) or a checkpoint;
    ``--html``: write the segment explorer page for it instead (self-contained).
``segmenter evaluate SNAPSHOT_OR_CHECKPOINT [--truth FILE] [--k-range 2..10] [--json] [--config FILE]``
    The seed's evaluation step per lens: SSE ratio and ARI against batch
    k-means at the same k, silhouette, Davies-Bouldin, bootstrap stability, a
    k sweep with a suggested k, and purity/ARI against a simulator truth file.
``segmenter check-rules RULES [--config FILE]``
    Validate a rules file and describe every rule in plain words.
``segmenter schema [NAME] [--out DIR]``
    JSON Schema (draft 2020-12) of the input event, each output message and
    the membership record: all of them as one JSON object, or the one named,
    or ``--out DIR``: one ``NAME.schema.json`` file each (docs/schemas/).

Exit codes: 0 success (invalid input lines are reported and skipped); 2 an
error in an argument or a file (unreadable, invalid, an output path that is an
input): one line on stderr per problem, naming the file and the field, nothing
written; 1 an internal error (a bug: one line, ``-vv`` shows the traceback).
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS (a setting in the environment wins): the matrices here are
# small (refinement, quality metrics) and OpenBLAS's idle worker threads spin between calls. Measured on a 30-day
# dense replay: 9.2 s CPU with the default threads on 2 cores, 5.3 s with one, the same wall time.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import orjson

from segmenter.codec import is_record
from segmenter.config import SegmenterConfig, load_config
from segmenter.errors import ConfigError, StateError
from segmenter.gc_tuning import tune_gc
from segmenter.malloc_tuning import tune_malloc
from segmenter.numba_probes import load_numba_probes
from segmenter.output_paths import overwritten_input
from segmenter.pipeline import Segmenter
from segmenter.replay import ReplayIO, ReplayReport, replay
from segmenter.schema import NAMES, render, schemas, write_files

if TYPE_CHECKING:
    from segmenter.evaluation import LensEvaluation
    from segmenter.triggers.rules import RuleSet

# Imported where used (not by ``replay`` without ``--rules``; tests/unit/test_startup.py): segmenter.evaluation,
# segmenter.explorer and segmenter.triggers.rules, tens of ms of every start-up otherwise.

logger = logging.getLogger("segmenter")

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A user-facing error of the command line: printed as one ``error:`` line, exit code 2."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _parse_until(text: str) -> float:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"--until needs a UTC offset, e.g. {text}Z")
    return ts.timestamp()


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="segmenter", description="Streaming customer segmenter: offline tools.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bar")
    sub = parser.add_subparsers(dest="command", required=True)

    rp = sub.add_parser("replay", help="run the whole pipeline over a JSONL file of events")
    rp.add_argument("events", type=Path, help="events, one JSON object per line")
    rp.add_argument("--output", type=Path, help="write output messages here (JSONL)")
    rp.add_argument("--snapshot", type=Path, help="write one line per customer here at the end (JSONL)")
    rp.add_argument("--config", type=Path, help="config file (TOML or YAML); default: the packaged default")
    rp.add_argument("--rules", type=Path, help="campaign rules file (TOML or YAML)")
    rp.add_argument("--until", type=_parse_until, help="stop at this event time (ISO-8601) and re-score everyone then")
    rp.add_argument("--checkpoint", type=Path, help="also write the core's full binary snapshot here")

    pp = sub.add_parser("profile", help="segment sizes and profiles from a replay snapshot or a checkpoint")
    pp.add_argument("source", type=Path, help="a replay --snapshot file (JSONL) or a --checkpoint file")
    pp.add_argument("--config", type=Path, help="config the checkpoint was made with (default: packaged)")
    pp.add_argument("--html", type=Path, help="write the segment explorer page (one self-contained HTML file) here")

    ep = sub.add_parser("evaluate", help="segment quality per lens against batch k-means on the same features")
    ep.add_argument("source", type=Path, help="a replay --snapshot file (JSONL) or a --checkpoint file")
    ep.add_argument("--truth", type=Path, help="the simulator's --truth JSONL (purity and ARI against personas)")
    ep.add_argument("--k-range", default="2..10", help="k sweep of batch k-means, LOW..HIGH (default 2..10)")
    ep.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ep.add_argument(
        "--config",
        type=Path,
        help="config the file was made with: each lens is measured in its space "
        "(log_features) and a checkpoint restored with it (default: packaged)",
    )

    cp = sub.add_parser("check-rules", help="validate a rules file and describe its rules")
    cp.add_argument("rules", type=Path)
    cp.add_argument("--config", type=Path, help="config whose lenses and features the rules must use")

    sp = sub.add_parser("schema", help="JSON Schemas of the input event, the output messages and the membership record")
    sp.add_argument("name", nargs="?", choices=NAMES, help="print only this schema")
    sp.add_argument("--out", type=Path, help="write NAME.schema.json files into this directory instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segmenter`` console script."""
    args = build_parser().parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    tune_gc()
    tune_malloc()
    load_numba_probes()  # before the first compiled call: ~0.15 s of scipy.linalg and cffi otherwise
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "replay": _replay,
        "profile": _profile,
        "schema": _schema,
        "evaluate": _evaluate,
        "check-rules": _check_rules,
    }
    try:
        return commands[args.command](args)
    except (ConfigError, StateError, UsageError) as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a bug: one line, the traceback only with -vv
        logger.debug("internal error", exc_info=exc)
        _print_error(f"internal error ({type(exc).__name__}: {exc}); run with -vv for the traceback")
        return EXIT_BUG


def _print_error(message: str) -> None:
    """Each line of ``message`` (one per problem) as its own ``error:`` line on stderr."""
    for line in message.splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)


def _cannot(action: str, path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot {action} {path}: {exc.strerror or exc}")


def _load(config: Path | None, rules: Path | None) -> tuple[SegmenterConfig, RuleSet | None]:
    cfg = load_config(config)
    if rules is None:
        return cfg, None
    from segmenter.triggers.rules import load_rules  # noqa: PLC0415 - only with --rules

    return cfg, load_rules(rules, cfg)


@dataclass(frozen=True)
class _Outputs:
    """The files a replay writes (each opened before the replay starts, so a bad path fails at once)."""

    output: IO[bytes] | None
    snapshot: IO[bytes] | None
    checkpoint: IO[bytes] | None


def _open_out(stack: ExitStack, path: Path | None) -> IO[bytes] | None:
    if path is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"cannot write {path}: {path.parent} is not a directory") from None
    except OSError as exc:
        raise _cannot("create the directory of", path, exc) from None
    try:
        return stack.enter_context(open(path, "wb"))
    except OSError as exc:
        raise _cannot("write", path, exc) from None


def _replay(args: argparse.Namespace) -> int:
    problem = overwritten_input(
        {"the events file": args.events, "--config": args.config, "--rules": args.rules},
        {"--output": args.output, "--snapshot": args.snapshot, "--checkpoint": args.checkpoint},
    )
    if problem is not None:
        raise UsageError(f"{problem} (nothing was read or written)")
    cfg, rules = _load(args.config, args.rules)
    try:
        total = args.events.stat().st_size
    except OSError as exc:
        raise _cannot("read", args.events, exc) from None
    with ExitStack() as stack:
        files = _Outputs(*(_open_out(stack, path) for path in (args.output, args.snapshot, args.checkpoint)))
        return _run_replay(args, cfg, rules, total, files)


def _run_replay(
    args: argparse.Namespace, cfg: SegmenterConfig, rules: RuleSet | None, total: int, files: _Outputs
) -> int:
    started = time.perf_counter()
    output, snapshot = files.output, files.snapshot
    try:
        if sys.stderr.isatty() and not args.quiet:
            # rich only where it draws (tens of ms of every start-up otherwise)
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

            with Progress(
                TextColumn("replay"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True
            ) as bar:
                task = bar.add_task("replay", total=total)
                io = ReplayIO(output, snapshot, _now, lambda n: bar.update(task, completed=n))
                report, seg = replay(args.events, Segmenter(cfg, rules), io, until=args.until)
        else:
            io = ReplayIO(output, snapshot, _now)
            report, seg = replay(args.events, Segmenter(cfg, rules), io, until=args.until)
        if files.checkpoint is not None:
            files.checkpoint.write(seg.snapshot())
    except OSError as exc:
        raise _cannot("replay", Path(exc.filename) if exc.filename else args.events, exc) from None
    elapsed = time.perf_counter() - started
    if not args.quiet:
        print_summary(report, elapsed)
    return EXIT_OK


def print_summary(report: ReplayReport, elapsed: float) -> None:
    """The end-of-replay summary on stdout."""
    from rich.console import Console  # noqa: PLC0415 - only where it prints (``-q`` skips it)
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    st = report.stats
    rate = report.lines / elapsed if elapsed > 0 else 0.0
    console.print(f"[bold]events read[/bold] {report.lines:,} in {elapsed:.1f} s ({rate:,.0f}/s)")
    rejected = sum(report.rejected.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(report.rejected.items()))
    console.print(f"rejected {rejected:,}" + (f" ({reasons})" if reasons else ""))
    for lineno, reason, detail in report.rejected_lines[:5]:
        console.print(f"  line {lineno}: {reason}: {detail}", markup=False)
    if st is None:
        return
    console.print(f"late {st.late:,}   duplicates {st.duplicates:,}   erasures {st.erasures:,}")
    if report.after_until:
        console.print(f"after --until (not applied) {report.after_until:,}")
    console.print(f"customers {st.customers:,}   watermark {st.watermark}")
    changes = ", ".join(f"{k} {v:,}" for k, v in st.changes.items()) or "none"
    console.print(f"segment changes: {changes}")
    for lens, sizes in st.segments.items():
        table = Table(title=f"lens {lens}", title_justify="left")
        table.add_column("segment")
        table.add_column("name")
        table.add_column("customers", justify="right")
        for s in sizes:
            table.add_row(s.id, s.name, f"{s.size:,}")
        console.print(table)
    if st.triggers or st.suppressed:
        table = Table(title="campaign triggers", title_justify="left")
        table.add_column("campaign")
        table.add_column("triggered", justify="right")
        table.add_column("suppressed by control")
        for campaign in sorted(set(st.triggers) | set(st.suppressed)):
            sup = st.suppressed.get(campaign, {})
            table.add_row(
                campaign, f"{st.triggers.get(campaign, 0):,}", ", ".join(f"{k} {v:,}" for k, v in sup.items()) or "-"
            )
        console.print(table)


def _profile(args: argparse.Namespace) -> int:
    try:
        data = args.source.read_bytes()
    except OSError as exc:
        raise _cannot("read", args.source, exc) from None
    if args.html is not None:
        return _profile_html(args, data)
    if is_record(data):  # a Segmenter.snapshot() checkpoint (segmenter.codec)
        seg = Segmenter.from_snapshot(load_config(args.config), data)
        all_rules = _checkpoint_rules(seg, str(args.source))
        for lens in seg.lenses:
            print(f"lens {lens.name} (model version {lens.model_version})")
            rules = all_rules.get(lens.name, {})
            for p in lens.profiles():
                centroid = ", ".join(f"{k}={v:.4g}" for k, v in p.centroid.items())
                print(f"  {p.id:<16} {p.size:>9,}  {p.name}  [{centroid}]")
                if p.id in rules:
                    rule = rules[p.id]
                    fid = rule["fidelity"]
                    print(
                        f"  {'':<16} rule: {rule['text']}  (matches {fid['members_matched']:.0%} of members, "
                        f"excludes {fid['non_members_excluded']:.0%} of the others)"
                    )
        return EXIT_OK
    return _profile_jsonl(args.source, data)


def _profile_html(args: argparse.Namespace, data: bytes) -> int:
    """``profile --html``: the explorer page of a checkpoint or a replay snapshot."""
    from segmenter.explorer import (  # noqa: PLC0415 - only for this command
        SizeHistory,
        lens_sizes,
        live_document,
        render_page,
        snapshot_document,
    )

    source = f"{args.source.name}"
    if is_record(data):  # a Segmenter.snapshot() checkpoint (segmenter.codec)
        seg = Segmenter.from_snapshot(load_config(args.config), data)
        history = SizeHistory()
        if seg.watermark is not None:
            history.add(seg.watermark, lens_sizes(seg.lenses))
        document = live_document(seg.lenses, history, seg.watermark, source=f"checkpoint {source}", live=False)
    else:
        lines = []
        for lineno, line in enumerate(data.splitlines(), 1):
            try:
                rec = orjson.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("segments"), dict):
                    lines.append(rec)
                    continue
            except orjson.JSONDecodeError:
                pass
            if line.strip():
                logger.warning("line %d: not a snapshot line", lineno)
        document = snapshot_document(lines, source=f"snapshot {source}")
    args.html.parent.mkdir(parents=True, exist_ok=True)
    args.html.write_text(render_page(document), encoding="utf-8")
    print(args.html)
    return EXIT_OK


def _snapshot_line(line: bytes) -> list[tuple[str, str, str, dict[str, float]]]:
    """(lens, segment id, segment name, features) of each lens of one ``replay --snapshot`` line.

    Raises
    ------
    ValueError
        Saying what is wrong with the line.
    """
    try:
        rec: Any = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("segments"), dict):
        raise ValueError("not a snapshot line: expected an object with 'segments' and 'features' objects")
    features = rec.get("features")
    if not isinstance(features, dict):
        raise ValueError("field 'features': expected an object of lens -> {feature: number}")
    out = []
    for lens, ref in rec["segments"].items():
        if ref is not None and not (isinstance(ref, dict) and isinstance(ref.get("id"), str)):
            raise ValueError(f"field 'segments.{lens}': expected null or an object with 'id' and 'name'")
        values = features.get(lens, {})
        if not isinstance(values, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
        ):
            raise ValueError(f"field 'features.{lens}': expected an object of numbers")
        sid, name = (ref["id"], str(ref.get("name", ""))) if ref else ("(none)", "no segment yet")
        out.append((str(lens), sid, name, {str(k): float(v) for k, v in values.items()}))
    return out


def _snapshot_lines(seg: Segmenter) -> bytes:
    """The ``replay --snapshot`` lines of a restored core."""
    return b"\n".join(orjson.dumps(v.as_json()) for v in seg.customer_views())


def _checkpoint_rules(seg: Segmenter, source: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Per lens, segment id -> rule, fitted on the restored customers' features and segments."""
    from segmenter.evaluation import parse_snapshot, segment_rules  # noqa: PLC0415 - only for this command

    lines = _snapshot_lines(seg)
    if not lines:
        return {}
    _, lens_data = parse_snapshot(lines, source)
    rng = np.random.default_rng(0)
    return {name: segment_rules(d.features, np.asarray(d.rows), d.labels, rng) for name, d in lens_data.items()}


class _SegmentTally:
    """Per lens and segment id: customers, the segment's name and the sums of its features (``segmenter profile``)."""

    def __init__(self) -> None:
        self.sizes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.names: dict[tuple[str, str], str] = {}
        self.sums: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, lens: str, sid: str, name: str, features: dict[str, float]) -> None:
        self.sizes[lens][sid] += 1
        self.names[(lens, sid)] = name
        for k, v in features.items():
            self.sums[(lens, sid)][k] += v

    def print(self) -> None:
        """Per lens, one line per segment (largest first): size, name and feature means."""
        for lens in sorted(self.sizes):
            print(f"lens {lens}")
            for sid, n in sorted(self.sizes[lens].items(), key=lambda kv: (-kv[1], kv[0])):
                means = ", ".join(f"{k}={v / n:.4g}" for k, v in self.sums[(lens, sid)].items())
                print(f"  {sid:<16} {n:>9,}  {self.names[(lens, sid)]}  [{means}]")


def _profile_jsonl(path: Path, data: bytes) -> int:
    tally = _SegmentTally()
    bad = good = 0
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            lenses = _snapshot_line(line)
        except ValueError as exc:
            bad += 1
            if bad <= 20:
                logger.warning("%s line %d skipped: %s", path, lineno, exc)
            continue
        good += 1
        for entry in lenses:
            tally.add(*entry)
    if bad and not good:
        raise UsageError(f"{path}: no snapshot line in {bad} line(s); give a replay --snapshot file or a checkpoint")
    tally.print()
    if bad:
        print(f"{path}: {bad} line(s) skipped", file=sys.stderr)
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    if args.out is not None:
        for path in write_files(args.out):
            print(path)
        return EXIT_OK
    docs = schemas()
    sys.stdout.write(render(docs[args.name] if args.name else docs).decode())
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    """``segmenter evaluate``: one-line errors naming the file (and line) on bad input."""
    from segmenter.evaluation import (  # noqa: PLC0415 - only for this command
        EvaluationInputError,
        evaluate_lenses,
        parse_k_range,
        parse_snapshot,
        parse_truth,
    )

    try:
        k_range = parse_k_range(args.k_range)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        data = args.source.read_bytes()
        truth_data = args.truth.read_bytes() if args.truth is not None else None
    except OSError as exc:
        raise _cannot("read", Path(exc.filename or args.source), exc) from None
    config = load_config(args.config)
    try:
        if is_record(data):  # a Segmenter.snapshot() checkpoint: the same lines, from the restored core
            seg = Segmenter.from_snapshot(config, data)
            ids, lenses = parse_snapshot(_snapshot_lines(seg), str(args.source))
        else:
            ids, lenses = parse_snapshot(data, str(args.source))
        truth = parse_truth(truth_data, str(args.truth)) if truth_data is not None else None
    except EvaluationInputError as exc:
        raise UsageError(str(exc)) from None
    for lc in config.lenses:  # each lens in its own space
        if lc.name in lenses:
            lenses[lc.name].heavy = lc.heavy_features
    results = evaluate_lenses(ids, lenses, truth, k_range)
    if args.json:
        print(orjson.dumps({"source": str(args.source), "lenses": [r.as_json() for r in results]}).decode())
        return EXIT_OK
    print_evaluation(results)
    return EXIT_OK


def print_evaluation(results: Sequence[LensEvaluation]) -> None:
    """The evaluation as tables: one row per lens, then each lens's k sweep."""
    from rich.console import Console  # noqa: PLC0415 - only where it prints
    from rich.table import Table  # noqa: PLC0415

    console = Console()
    table = Table(title="segments against batch k-means at the same k (lens space: log1p where heavy, z-scored)")
    for col in ("lens", "customers", "k", "SSE ratio", "ARI vs batch", "silhouette", "Davies-Bouldin",
                "stability", "suggested k", "purity", "ARI vs truth"):  # fmt: skip
        table.add_column(col, justify="left" if col == "lens" else "right")
    for r in results:
        table.add_row(r.lens, f"{r.customers:,}", str(r.k), _fmt(r.sse_ratio), _fmt(r.ari_vs_batch),
                      _fmt(r.silhouette), _fmt(r.davies_bouldin), _fmt(r.stability),
                      "-" if r.suggested_k is None else f"{r.suggested_k} ({r.criterion})",
                      _fmt(r.purity), _fmt(r.ari_vs_truth))  # fmt: skip
    console.print(table)
    for r in results:
        rules = Table(title=f"{r.lens}: segment rules (fidelity: members matched / non-members excluded)")
        for col in ("segment", "rule", "members", "non-members"):
            rules.add_column(col, justify="left" if col in ("segment", "rule") else "right")
        for sid, rule in r.rules.items():
            fid = rule["fidelity"]
            rules.add_row(sid, rule["text"], _fmt(fid["members_matched"]), _fmt(fid["non_members_excluded"]))
        console.print(rules)
        sweep = Table(title=f"{r.lens}: batch k-means sweep")
        for col in ("k", "SSE", "silhouette", "Davies-Bouldin"):
            sweep.add_column(col, justify="right")
        for p in r.sweep:
            sweep.add_row(str(p.k), f"{p.sse:,.1f}", _fmt(p.silhouette), _fmt(p.davies_bouldin))
        console.print(sweep)


def _fmt(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def _check_rules(args: argparse.Namespace) -> int:
    from segmenter.triggers.rules import describe_rules, load_rules  # noqa: PLC0415 - only for this command

    cfg = load_config(args.config)
    rules = load_rules(args.rules, cfg)
    for line in describe_rules(rules):
        print(line)
    print(f"{len(rules.rules)} rule(s) OK")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
