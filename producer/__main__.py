"""``segmenter-producer`` (= ``python -m producer``): simulate customers or replay a file, to Kafka or JSONL.

Usage::

    segmenter-producer synth --customers 1000 --days 90 --seed 7 --truth truth.jsonl --to kafka
    segmenter-producer synth --customers 200 --days 30 --duplicate-rate 0.01 --to file events.jsonl
    segmenter-producer synth --rate 200 --to kafka                  # paced, 200 events/s
    segmenter-producer synth --scenario sparse --customers 20000 --to file retail.jsonl
    segmenter-producer synth --scenario sparse --order partitions --partitions 3 --to kafka   # a backlog
    segmenter-producer synth --bad-clock-at 5000 --to file skewed.jsonl   # one event dated a year ahead
    segmenter-producer replay orders.csv --customer-col user --time-col created_at --type purchase \\
        --amount-col total --dlq-file bad_rows.jsonl --to file -

This module is the only place where logging is configured.

Exit codes: 0 success (bad rows are reported and skipped); 2 a usage error or a
bad input file (one line naming the file and the problem, e.g. an output path
that is an input path); 1 an output or Kafka error, or an internal error (one
line; ``-vv`` shows the traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeAlias

import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from producer.backlog import ORDERS, backlog_order
from producer.errors import InputError, ProducerError, SettingsError, SinkError
from producer.faults import FaultConfig, FaultInjector
from producer.kafka_sink import KafkaSettings, KafkaSink
from producer.personas import DEFAULT_ARRIVAL_MIX, DEFAULT_INITIAL_MIX, parse_mix
from producer.replay import ColumnMapping, load
from producer.retail import SparseConfig, SparseRetail
from producer.runner import Outgoing, Pacing, ProgressCallback, RunOptions, RunStats, run
from producer.settings import add_connection_flags, load_connection
from producer.simulator import DAY, SimConfig, Simulator, encoded, iso
from producer.sinks import JsonlSink, Sink
from segmenter.output_paths import overwritten_input

log = logging.getLogger("producer")

DEFAULT_TOPIC = "customer-events"
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
SCENARIOS = ("personas", "sparse")
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers()`` returns."""


@dataclass(frozen=True)
class Destination:
    """Parsed ``--to``: ``kafka``, or ``file`` with a path (``-`` = stdout)."""

    kind: str
    path: str | None = None


class _ToAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        vals = [values] if isinstance(values, str) else list(values or [])
        if vals == ["kafka"]:
            setattr(namespace, self.dest, Destination("kafka"))
        elif len(vals) == 2 and vals[0] == "file":
            setattr(namespace, self.dest, Destination("file", str(vals[1])))
        elif len(vals) == 1 and vals[0] == "file":
            parser.error("--to file needs a path: --to file events.jsonl (or - for stdout)")
        else:
            parser.error(
                f"--to expects 'kafka' or 'file PATH', got {' '.join(map(str, vals))!r} "
                "(put the replay FILE before --to)"
            )


def _iso_arg(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-01-01T00:00:00Z")
    return value


def _rate_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1], got {text}")
    return value


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {kind.__name__}: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _mix_arg(text: str) -> dict[str, float]:
    try:
        return parse_mix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _type_map_arg(text: str) -> tuple[str, str]:
    src, sep, dst = text.partition("=")
    if not sep or not src or not dst:
        raise argparse.ArgumentTypeError(f"expected SRC=TYPE, got {text!r}")
    return src, dst


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="segmenter-producer",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{synth,replay}")
    common = _common_parser()
    _add_synth(sub, common)
    _add_replay(sub, common)
    return parser


def _common_parser() -> argparse.ArgumentParser:
    """The options of both commands: output, pacing and the Kafka connection."""
    common = argparse.ArgumentParser(add_help=False)
    out = common.add_argument_group("output")
    out.add_argument(
        "--to",
        nargs="+",
        action=_ToAction,
        default=Destination("kafka"),
        metavar="kafka|file PATH",
        help="'kafka' (default) or 'file PATH' (JSONL; '-' = stdout)",
    )
    out.add_argument("--topic", default=DEFAULT_TOPIC, help="input topic of the segmenter (default %(default)s)")
    out.add_argument(
        "--partitions",
        type=_positive(int),
        default=6,
        help="partitions when the topic is created (default %(default)s)",
    )
    out.add_argument(
        "--replication-factor",
        type=_positive(int),
        default=1,
        help="replication factor when the topic is created (default %(default)s)",
    )
    out.add_argument("--no-create-topic", action="store_true", help="do not create a missing topic")
    out.add_argument("--linger-ms", type=int, default=20, help="producer batching delay (default %(default)s)")
    out.add_argument(
        "--connect-timeout",
        type=_positive(float),
        default=10.0,
        help="seconds to keep trying to reach Kafka before giving up (default %(default)s)",
    )
    out.add_argument(
        "--compression", choices=["gzip", "lz4", "zstd", "snappy"], default=None, help="compress batches (codec)"
    )
    out.add_argument("--max-events", type=_positive(int), default=None, help="stop after this many messages")
    out.add_argument(
        "--rate",
        type=_positive(float),
        default=None,
        help="send at most this many events per second (default: full speed)",
    )
    out.add_argument(
        "--speed",
        type=_positive(float),
        default=None,
        help="follow the events' own timing, this many times faster than real time "
        "(replay: the file's timing; synth: simulated time, e.g. 1440 = a day per minute)",
    )
    add_connection_flags(common.add_argument_group("kafka connection (flags win over SEGMENTER_* variables)"))
    out.add_argument("--summary-json", type=Path, default=None, help="also write the final summary as JSON here")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")
    return common


def _add_synth(sub: _Commands, common: argparse.ArgumentParser) -> None:
    """The ``synth`` command and its options."""
    synth = sub.add_parser(
        "synth",
        parents=[common],
        help="simulate customers following personas",
        description="Simulate customers who follow personas (some drift) in event time.",
    )
    synth.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="personas",
        help="personas: dense web sessions of the built-in personas (default); sparse: long-horizon retail, "
        "1-20 purchases per customer over months, heavy-tailed amounts, monthly cohorts, most customers lapsing",
    )
    synth.add_argument(
        "--customers",
        type=int,
        default=None,
        help="customers at the start (personas, default 1000) or over the run (sparse, default 20000)",
    )
    synth.add_argument(
        "--days",
        type=_positive(float),
        default=None,
        help="simulated days (default 90 for personas, 548 = 18 months for sparse)",
    )
    synth.add_argument(
        "--start",
        type=_iso_arg,
        default=None,
        help="event time of the start, ISO-8601 with offset (default 2026-01-01T00:00:00Z for personas, "
        "2024-07-01T00:00:00Z for sparse)",
    )
    synth.add_argument(
        "--order",
        choices=ORDERS,
        default="time",
        help="send order: time (default); partitions: a multi-partition backlog, every event of partition 0 "
        "(Kafka's default partitioner over --partitions) then partition 1 ...; blocks: whole customer histories, "
        "--block-customers at a time. Each customer's events stay in order",
    )
    synth.add_argument(
        "--block-customers",
        type=_positive(int),
        default=1000,
        help="customers per block of --order blocks (default %(default)s)",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    synth.add_argument(
        "--drift-share",
        type=_rate_arg,
        default=0.2,
        help="share of customers who switch persona once (default %(default)s)",
    )
    synth.add_argument(
        "--arrivals-per-day", type=float, default=None, help="new customers per day (default: 0.5%% of --customers)"
    )
    synth.add_argument(
        "--emails-per-week",
        type=float,
        default=2.0,
        help="marketing e-mails per customer per week (default %(default)s)",
    )
    synth.add_argument(
        "--initial-mix",
        type=_mix_arg,
        default=None,
        help="persona weights at the start, e.g. 'loyal_high_value=1,lapsing=2' (default "
        + ",".join(f"{k}={v}" for k, v in DEFAULT_INITIAL_MIX.items())
        + ")",
    )
    synth.add_argument(
        "--arrival-mix",
        type=_mix_arg,
        default=None,
        help="persona weights of arriving customers (default "
        + ",".join(f"{k}={v}" for k, v in DEFAULT_ARRIVAL_MIX.items())
        + ")",
    )
    synth.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="write each customer's persona timeline here (JSONL: customer_id, persona, from)",
    )
    _add_faults(synth.add_argument_group("faults (probabilities per event)"))


def _add_faults(faults: argparse._ArgumentGroup) -> None:
    """``synth``'s fault options."""
    faults.add_argument(
        "--malformed-rate",
        type=_rate_arg,
        default=0.0,
        help="extra malformed messages: bad JSON, missing field, negative amount, naive ts",
    )
    faults.add_argument("--duplicate-rate", type=_rate_arg, default=0.0, help="events re-sent with the same id")
    faults.add_argument("--late-rate", type=_rate_arg, default=0.0, help="events sent late, out of order")
    faults.add_argument(
        "--late-max-hours",
        type=_positive(float),
        default=6.0,
        help="largest event-time delay of a late event (default %(default)s)",
    )
    faults.add_argument(
        "--bad-clock-at",
        type=int,
        default=None,
        metavar="N",
        help="send the N-th valid event (from 0) dated --bad-clock-days ahead (a device with a wrong clock)",
    )
    faults.add_argument(
        "--bad-clock-days",
        type=_positive(float),
        default=365.0,
        help="how far ahead --bad-clock-at dates its event (default %(default)s)",
    )
    faults.add_argument(
        "--fault-log",
        type=Path,
        default=None,
        help="write one JSONL line per injected fault (kind, event_id, customer_id, ts)",
    )


def _add_replay(sub: _Commands, common: argparse.ArgumentParser) -> None:
    """The ``replay`` command and its options."""
    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="replay a CSV or JSONL file in time order",
        description="Map a CSV/JSONL file's columns to events and send them in time order.",
    )
    replay.add_argument("file", type=Path, metavar="FILE", help="CSV (with header) or JSONL file")
    replay.add_argument(
        "--format", choices=["auto", "csv", "jsonl"], default="auto", help="file format (default: by extension)"
    )
    replay.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    replay.add_argument("--customer-col", default="customer_id", help="customer id column (default %(default)s)")
    replay.add_argument("--time-col", default="ts", help="event time column (default %(default)s)")
    kind = replay.add_mutually_exclusive_group()
    kind.add_argument("--type-col", default="type", help="event type column (default %(default)s)")
    kind.add_argument("--type", dest="fixed_type", default=None, help="one event type for every row")
    replay.add_argument(
        "--type-map",
        type=_type_map_arg,
        action="append",
        default=[],
        metavar="SRC=TYPE",
        help="rename a type value (repeatable), e.g. --type-map order=purchase",
    )
    for fld in ("amount", "quantity", "category", "currency", "channel"):
        replay.add_argument(
            f"--{fld}-col", default=None, help=f"{fld} column (default: a column named {fld!r} if present)"
        )
    replay.add_argument(
        "--price-col",
        default=None,
        help="unit-price column instead of --amount-col: amount = price x quantity, and a purchase with a negative "
        "quantity (a return) becomes a refund",
    )
    replay.add_argument(
        "--order-col",
        default=None,
        help="order (invoice) number column: the purchase lines of one order become one purchase, its return "
        "lines one refund (default: every line is an event)",
    )
    replay.add_argument("--session-col", default=None, help="session_id column (default: 'session_id' if present)")
    replay.add_argument(
        "--event-id-col",
        default=None,
        help="event id column (default: 'event_id' if present, else an id from file name + line)",
    )
    replay.add_argument(
        "--time-format",
        default=None,
        help="strptime format of the time column (default: auto, ISO-8601 or epoch s/ms/us)",
    )
    replay.add_argument("--timezone", default="UTC", help="zone of timestamps without an offset (default UTC)")
    replay.add_argument("--dlq-file", type=Path, default=None, help="write unusable rows here (JSONL)")


def _check_outputs(args: argparse.Namespace, inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse an output path that is an input or another output (it would be truncated before it is read).

    Raises
    ------
    InputError
        Naming both options and the file.
    """
    dest: Destination = args.to
    to = Path(dest.path) if dest.kind == "file" and dest.path not in (None, "-") else None
    problem = overwritten_input(inputs, {"--to file": to, **outputs, "--summary-json": args.summary_json})
    if problem is not None:
        raise InputError(f"{problem} (nothing was sent or written)")


def _open_sink(args: argparse.Namespace) -> Sink:
    dest: Destination = args.to
    if dest.kind == "file":
        assert dest.path is not None
        return JsonlSink(dest.path)
    return KafkaSink(
        KafkaSettings(
            connection=args.connection,
            topic=args.topic,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            create_topic=not args.no_create_topic,
            linger_ms=args.linger_ms,
            compression=args.compression,
            connect_timeout_s=args.connect_timeout,
        )
    )


Completed = Callable[[int, float], float]
"""How far a run is, from (messages sent, event time of the latest event), in the progress bar's unit."""


@contextlib.contextmanager
def _progress(
    enabled: bool, description: str, total: float | None, completed: Completed
) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[sent]:>10,} msgs  {task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total, sent=0, rate=0.0)
        t0 = time.perf_counter()

        def update(sent: int, ts: float) -> None:
            elapsed = time.perf_counter() - t0
            bar.update(task, completed=completed(sent, ts), sent=sent, rate=sent / elapsed if elapsed > 0 else 0.0)

        yield update


def _summary(args: argparse.Namespace, stats: RunStats, extra: dict[str, Any]) -> dict[str, Any]:
    dest: Destination = args.to
    return {
        "command": args.command,
        "destination": f"kafka {args.connection.bootstrap_servers} {args.topic}"
        if dest.kind == "kafka"
        else ("stdout" if dest.path == "-" else dest.path),
        "messages": stats.messages,
        "valid_events": stats.events,
        "events_by_type": dict(sorted(stats.by_type.items())),
        "faults": dict(sorted(stats.faults.items())),
        "faults_total": sum(stats.faults.values()),
        "first_event": iso(stats.first_ts) if stats.first_ts is not None else None,
        "last_event": iso(stats.last_ts) if stats.last_ts is not None else None,
        "elapsed_s": round(stats.elapsed_s, 3),
        "events_per_s": round(stats.rate, 1),
        "stopped_early": stats.stopped_early,
        "interrupted": stats.interrupted,
        **extra,
    }


def _print_summary(summary: dict[str, Any]) -> None:
    table = Table(title=f"segmenter-producer {summary['command']}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key == "command":
            continue
        if isinstance(value, dict):
            text = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in value.items()) or "none"
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = f"{value:,}"
        else:
            text = str(value)
        table.add_row(key.replace("_", " "), text)
    Console(stderr=True).print(table)


def _finish(args: argparse.Namespace, summary: dict[str, Any]) -> None:
    if args.summary_json is not None:
        try:
            args.summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        except OSError as exc:
            raise SinkError(f"cannot write {args.summary_json}: {exc.strerror or exc}") from None
    if not args.quiet:
        _print_summary(summary)
    else:
        log.info(
            "sent %d messages (%d valid events) in %.2fs, %.0f/s",
            summary["messages"],
            summary["valid_events"],
            summary["elapsed_s"],
            summary["events_per_s"],
        )


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    try:
        with path.open("wb") as fh:
            for row in rows:
                fh.write(orjson.dumps(row) + b"\n")
                n += 1
    except OSError as exc:
        raise SinkError(f"cannot write {path}: {exc.strerror or exc}") from None
    return n


def _scenario(args: argparse.Namespace) -> tuple[Simulator | SparseRetail, float, float]:
    """The generator of ``--scenario`` and its event-time span ``(start, end)``; raises ``ValueError``."""
    if args.scenario == "sparse":
        sparse = SparseConfig(
            customers=20_000 if args.customers is None else args.customers,
            days=548.0 if args.days is None else args.days,
            start=args.start or SparseConfig.start,
            seed=args.seed,
        )
        return SparseRetail(sparse), sparse.start_epoch, sparse.end_epoch
    config = SimConfig(
        customers=1000 if args.customers is None else args.customers,
        days=90.0 if args.days is None else args.days,
        start=args.start or SimConfig.start,
        seed=args.seed,
        drift_share=args.drift_share,
        arrivals_per_day=args.arrivals_per_day,
        emails_per_week=args.emails_per_week,
        initial_mix=args.initial_mix or dict(DEFAULT_INITIAL_MIX),
        arrival_mix=args.arrival_mix or dict(DEFAULT_ARRIVAL_MIX),
    )
    return Simulator(config), config.start_epoch, config.end_epoch


def _in_order(args: argparse.Namespace, sim: Simulator | SparseRetail) -> Iterator[Outgoing]:
    """The encoded stream in the send order of ``--order`` (a backlog order holds the whole stream in memory)."""
    if args.order == "time":
        return encoded(sim)
    stream = list(encoded(sim))
    order = backlog_order(
        [o.key for o in stream], args.order, partitions=args.partitions, block_customers=args.block_customers
    )
    return iter([stream[i] for i in order])


def _fault_config(args: argparse.Namespace) -> FaultConfig:
    """The fault options of ``synth``; raises ``ValueError``."""
    return FaultConfig(
        malformed_rate=args.malformed_rate,
        duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate,
        late_max_s=args.late_max_hours * 3600,
        late_min_s=min(600.0, args.late_max_hours * 3600),
        bad_clock_at=args.bad_clock_at,
        bad_clock_ahead_s=args.bad_clock_days * DAY,
        seed=args.seed,
    )


def _injector(stack: contextlib.ExitStack, config: FaultConfig, fault_log: Path | None) -> FaultInjector | None:
    """The fault injector of ``config`` (``None`` if no fault is asked for), logging to ``fault_log`` if given.

    Raises
    ------
    SinkError
        ``fault_log`` cannot be written.
    """
    if fault_log is None:
        return FaultInjector(config) if config.active else None
    try:
        fh: IO[bytes] = stack.enter_context(fault_log.open("wb"))
    except OSError as exc:
        raise SinkError(f"cannot write {fault_log}: {exc.strerror or exc}") from None

    def listen(kind: str, details: dict[str, Any]) -> None:
        fh.write(orjson.dumps({"fault": kind, **details}) + b"\n")

    return FaultInjector(config, listen) if config.active else None


def _synth_progress(args: argparse.Namespace, start: float, end: float) -> tuple[float | None, Completed]:
    """The progress bar's total and measure: messages with a limit or a backlog order, else simulated time."""
    if args.max_events or args.order != "time":
        return args.max_events or None, lambda sent, ts: float(sent)
    return end - start, lambda sent, ts: ts - start


def _synth_extra(args: argparse.Namespace, sim: Simulator | SparseRetail, truth_lines: int) -> dict[str, Any]:
    """The summary fields of ``synth`` besides the run's counts."""
    personas_initial: dict[str, int] = {}
    for entry in sim.truth:
        if entry.cause != "drift":
            personas_initial[entry.persona] = personas_initial.get(entry.persona, 0) + 1
    return {
        "customers": sim.customer_count,
        "arrivals": sim.arrivals,
        "drifts": sim.drifts,
        "personas_at_start_or_arrival": dict(sorted(personas_initial.items())),
        "personas_at_end": sim.persona_counts(),
        "scenario": args.scenario,
        "order": args.order,
        "seed": args.seed,
        "truth_file": str(args.truth) if args.truth else None,
        "truth_lines": truth_lines,
    }


def cmd_synth(args: argparse.Namespace) -> int:
    """Run ``synth``."""
    try:
        sim, start, end = _scenario(args)
        fault_config = _fault_config(args)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    _check_outputs(args, {}, {"--truth": args.truth, "--fault-log": args.fault_log})
    with contextlib.ExitStack() as stack:
        injector = _injector(stack, fault_config, args.fault_log)
        sink = stack.enter_context(_open_sink(args))
        total, completed = _synth_progress(args, start, end)
        show = not args.quiet and sys.stderr.isatty()
        with _progress(show, f"synth → {sink.description}", total, completed) as progress:
            pacing = Pacing(rate=args.rate, speed=args.speed)
            options = RunOptions(faults=injector, max_events=args.max_events, pacing=pacing, on_progress=progress)
            stats = run(_in_order(args, sim), sink, options)
            if progress is not None and not stats.stopped_early:
                progress(stats.messages, end)  # the whole span was simulated
    truth_lines = 0
    if args.truth is not None:
        truth_lines = _write_jsonl(args.truth, (t.to_json() for t in sim.truth))
    _finish(args, _summary(args, stats, _synth_extra(args, sim, truth_lines)))
    return EXIT_INTERRUPTED if stats.interrupted else 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run ``replay``."""
    try:
        mapping = ColumnMapping(
            customer_col=args.customer_col,
            time_col=args.time_col,
            type_col=None if args.fixed_type else args.type_col,
            fixed_type=args.fixed_type,
            amount_col=args.amount_col,
            quantity_col=args.quantity_col,
            category_col=args.category_col,
            currency_col=args.currency_col,
            channel_col=args.channel_col,
            session_col=args.session_col,
            event_id_col=args.event_id_col,
            price_col=args.price_col,
            order_col=args.order_col,
            type_map=dict(args.type_map),
            time_format=args.time_format,
            timezone=args.timezone,
            file_format=args.format,
            delimiter=args.delimiter,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    _check_outputs(args, {"the input file": args.file}, {"--dlq-file": args.dlq_file})
    data = load(args.file, mapping)
    for bad in data.bad[:20]:
        log.warning("%s line %d: %s", args.file, bad.line, bad.reason)
    if len(data.bad) > 20:
        log.warning(
            "... and %d more bad rows%s",
            len(data.bad) - 20,
            "" if args.dlq_file else " (write them all with --dlq-file)",
        )
    if args.dlq_file is not None:
        _write_jsonl(args.dlq_file, (b.to_json() for b in data.bad))
    with _open_sink(args) as sink:
        show = not args.quiet and sys.stderr.isatty()
        total = float(min(len(data.events), args.max_events or len(data.events)))
        with _progress(show, f"replay → {sink.description}", total, lambda sent, ts: float(sent)) as progress:
            pacing = Pacing(rate=args.rate, speed=args.speed)
            stats = run(
                data.outgoing(), sink, RunOptions(max_events=args.max_events, pacing=pacing, on_progress=progress)
            )
    summary = _summary(
        args,
        stats,
        {
            "file": str(args.file),
            "rows": data.rows,
            "valid_rows": data.valid_rows,
            "bad_rows": len(data.bad),
            "bad_rows_file": str(args.dlq_file) if args.dlq_file else None,
        },
    )
    _finish(args, summary)
    if data.bad:
        log.warning(
            "%d of %d rows were not sent (bad rows)%s",
            len(data.bad),
            data.rows,
            f"; see {args.dlq_file}" if args.dlq_file else "",
        )
    return EXIT_INTERRUPTED if stats.interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``segmenter-producer``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=max(logging.WARNING - 10 * args.verbose, logging.DEBUG),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # the client logs every failed connection attempt (our own error says what to do), and at DEBUG every
    # request's raw bytes, a SASL PLAIN password among them: never below INFO
    logging.getLogger("kafka").setLevel(logging.CRITICAL + 1 if args.verbose < 2 else logging.INFO)
    try:
        args.connection = load_connection(vars(args))
        if args.command == "synth":
            return cmd_synth(args)
        return cmd_replay(args)
    except (SettingsError, InputError) as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    except ProducerError as exc:
        log.error("%s", exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line, the traceback only with -vv
        log.debug("internal error", exc_info=exc)
        log.error("internal error (%s: %s); run with -vv for the traceback", type(exc).__name__, exc)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
