"""Offline replay: the whole pipeline over a JSONL file of events, without Kafka.

``segmenter replay EVENTS.jsonl --output OUT.jsonl --snapshot SNAP.jsonl`` (see
docs/contracts.md, "Command line") is :func:`replay` plus the console around it
(:mod:`segmenter.__main__`). This module does file I/O but has no clock: the
caller passes one to stamp ``emitted_at``.

Invalid lines are reported (line number, reason) and skipped; late events are
counted; the run fails only when the input cannot be read.
"""

from __future__ import annotations

import codecs
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import IO

import orjson

from segmenter.change_blocks import Output, encode_runs, size_of
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, parse_event
from segmenter.pipeline import Segmenter, SegmenterStats

__all__ = ["MAX_REPORTED", "REPLAY_CHUNK", "ReplayIO", "ReplayReport", "replay", "write_snapshot"]

logger = logging.getLogger(__name__)

MAX_REPORTED = 1000
"""Rejected lines kept (with their reason) in the report; all are counted."""
_LOGGED = 20
_PROGRESS_EVERY = 4096
REPLAY_CHUNK = 1024
"""Events handed to :meth:`Segmenter.process_batch` at a time (outputs do not depend on it)."""

WRITE_EVERY = 2_000
"""Held outputs past which replay writes them (and at the end): one compiled pass per many move buffers.

(10,000 before the block writer's fixed cost per pass shrank; on the sparse replay stream both cost the same,
5.61 and 5.60 s CPU, best of two each in one process, and this one holds a fifth of the outputs.)"""


@dataclass
class ReplayReport:
    """What a replay read, rejected and wrote."""

    lines: int = 0
    """Non-empty input lines."""
    events: int = 0
    """Valid events handed to the core (late and duplicates included)."""
    rejected: Counter[str] = field(default_factory=Counter)
    """Invalid lines per reason (``not_json``, ``schema``, ...)."""
    rejected_lines: list[tuple[int, str, str]] = field(default_factory=list)
    """The first :data:`MAX_REPORTED` rejected lines: (line number, reason, detail)."""
    late: int = 0
    after_until: int = 0
    """Valid events after ``--until`` (not applied)."""
    outputs: Counter[str] = field(default_factory=Counter)
    """Messages written per kind."""
    customers: int = 0
    """Lines written to the snapshot."""
    stats: SegmenterStats | None = None


@dataclass(frozen=True)
class ReplayIO:
    """Where a replay writes, and the callbacks it makes."""

    output: IO[bytes] | None = None
    """Binary stream for the output messages (JSONL), or ``None``."""
    snapshot: IO[bytes] | None = None
    """Binary stream for the per-customer snapshot (JSONL), written at the end."""
    clock: Callable[[], str] | None = None
    """Returns the wall-clock time (ISO-8601 UTC) to stamp ``emitted_at``; ``None`` leaves it unset."""
    progress: Callable[[int], None] | None = None
    """Called with the number of bytes read so far, now and then."""


def replay(
    events_path: str | Path, core: Segmenter, io: ReplayIO | None = None, *, until: float | None = None
) -> tuple[ReplayReport, Segmenter]:
    """Feed every event of a JSONL file through a :class:`Segmenter` (a new one, or one restored from a checkpoint).

    Parameters
    ----------
    events_path
        One JSON event per line (UTF-8, a leading byte order mark skipped); blank lines are ignored.
    core
        The core (its configuration and campaign rules); it is returned, having seen the events.
    io
        The output streams, clock and progress callback (default: none).
    until
        Epoch seconds: events after it are skipped, and at the end the
        watermark is moved to it (every customer re-scored at ``until``).

    Raises
    ------
    OSError
        The input cannot be opened or read.
    """
    run = _Replay(core, io or ReplayIO(), until)
    with open(events_path, "rb") as fh:
        nbytes = _skip_bom(fh)
        nbytes += run.read(fh)
    report = run.report
    report.rejected_lines.sort()
    if run.io.progress is not None:
        run.io.progress(nbytes)
    if until is not None:
        core.advance_to(until, full=True, sink=run.emit)
        run.write_held()
    if run.io.snapshot is not None:
        report.customers = write_snapshot(core, run.io.snapshot)
    report.stats = core.stats()
    return report, core


def _skip_bom(fh: BufferedReader) -> int:
    """Skip a UTF-8 byte order mark at the start of ``fh`` (spreadsheet tools write one); returns the bytes skipped."""
    if fh.peek(len(codecs.BOM_UTF8)).startswith(codecs.BOM_UTF8):
        return len(fh.read(len(codecs.BOM_UTF8)))
    return 0


class _Replay:
    """One replay's reading, batching and writing (see :func:`replay`)."""

    def __init__(self, core: Segmenter, io: ReplayIO, until: float | None) -> None:
        self.core = core
        self.io = io
        self.until = until
        self.report = ReplayReport()
        self._chunk: list[CustomerEvent] = []
        self._linenos: list[int] = []
        self._held: list[Output] = []
        self._held_outputs = 0

    def read(self, fh: IO[bytes]) -> int:
        """Parse and apply every line of ``fh``, in chunks of :data:`REPLAY_CHUNK` events; returns the bytes read."""
        report, progress, until = self.report, self.io.progress, self.until
        chunk, linenos, parse = self._chunk, self._linenos, parse_event
        nbytes = lines = events = 0
        try:  # the line and event counts in locals, added to the report once (a few percent of the loop's cost)
            for lineno, line in enumerate(fh, 1):
                nbytes += len(line)
                if progress is not None and lineno % _PROGRESS_EVERY == 0:
                    progress(nbytes)
                body = line.strip()
                if not body:
                    continue
                lines += 1
                try:
                    event = parse(body)
                except EventError as exc:
                    _reject(report, lineno, exc)
                    continue
                events += 1
                if until is not None and event.epoch > until:
                    report.after_until += 1
                    continue
                chunk.append(event)
                linenos.append(lineno)
                if len(chunk) >= REPLAY_CHUNK:
                    self.flush()
        finally:
            report.lines += lines
            report.events += events
        self.flush()
        self.write_held()
        return nbytes

    def flush(self) -> None:
        """Apply the chunk read so far; hold its outputs as they come, count late events, report rejected ones."""
        result = self.core.process_batch(self._chunk, sink=self.emit)
        for i, exc in result.errors:
            if exc.reason == "late":
                self.report.late += 1
                logger.debug("line %d: %s", self._linenos[i], exc)
            else:
                _reject(self.report, self._linenos[i], exc)
        self._chunk.clear()
        self._linenos.clear()

    def emit(self, messages: Sequence[Output]) -> None:
        """Count output messages and hold them for writing (the core's sink).

        They are written once :data:`WRITE_EVERY` outputs are held and at the end: the core hands
        them over a move buffer at a time, and one write of many parts makes one compiled pass over their
        blocks of changes (:func:`~segmenter.change_blocks.encode_runs`) where one per part would pay its
        fixed cost per move buffer, while a mass move is still never held whole.
        """
        counts = self.report.outputs
        for m in messages:
            n = size_of(m)
            counts[m.kind] += n
            self._held_outputs += n
        self._held.extend(messages)
        if self._held_outputs >= WRITE_EVERY:
            self.write_held()

    def write_held(self) -> None:
        """Write the held outputs (stamped with the clock, if any), a block of changes from its columns."""
        held, self._held, self._held_outputs = self._held, [], 0
        clock, output = self.io.clock, self.io.output
        if held and output is not None:
            output.writelines(encode_runs(held, clock() if clock is not None else None))


def _reject(report: ReplayReport, lineno: int, exc: EventError) -> None:
    report.rejected[exc.reason] += 1
    n = sum(report.rejected.values())
    if len(report.rejected_lines) < MAX_REPORTED:
        report.rejected_lines.append((lineno, exc.reason, exc.detail))
    if n <= _LOGGED:
        logger.warning("line %d skipped: %s", lineno, exc)
    elif n == _LOGGED + 1:
        logger.warning("more invalid lines; only counted from here on")


def write_snapshot(seg: Segmenter, out: IO[bytes]) -> int:
    """Write one line per customer (ordered by id): ``{"customer_id", "segments", "features"}``."""
    n = 0
    for view in seg.customer_views():
        out.write(orjson.dumps(view.as_json()) + b"\n")
        n += 1
    return n
