"""The core facade: events in, output messages out (no Kafka, no clock).

Per accepted event, :meth:`Segmenter.process` runs

1. erasure (``erasure_request``: :class:`~segmenter.erasing.Eraser`),
   lateness (older than the customer's own latest event time minus the
   lateness: ``EventError("late")``) and de-duplication (repeated
   ``event_id``: ``[]``); an event far ahead of its source's clock is not
   refused: its customer is *isolated* (below);
2. the feature update (:class:`~segmenter.features.FeatureStore`, event time);
3. for each lens, on the customer's raw feature vector at its latest event
   time: ``observe`` (model learning; lifecycle messages), ``assign`` (nearest
   segment with hysteresis) and, on a move, a ``segment_change`` plus the
   trigger engine's ``campaign_trigger`` messages
   (:class:`~segmenter.emission.MoveEmitter`);
4. every ``refine.every_events`` accepted events, ``Lens.refine`` against all
   current customers' features;
5. when the watermark moves, the work it drives (:class:`~segmenter.timed_work.TimedWork`):
   held triggers, refinement ticks in event time, and at each multiple of
   ``inactivity.check_interval_hours`` the re-scoring of everyone not scored
   within the interval (cause ``inactivity``, one compiled pass).

Steps 1 to 3 run in the compiled loop (:mod:`segmenter.kernel`), which stops
for what needs Python; this facade dispatches each stop from one table
(``Segmenter._stops``) and counts in one :class:`~segmenter.counters.CoreCounters`.

Shared mode (``Segmenter(config, shared=True)``, for scale-out): the lenses
never learn here; :meth:`Segmenter.take_vectors` hands the sampled raw vectors
to one :class:`~segmenter.shared.ModelTrainer` (anywhere), whose :meth:`~segmenter.shared.ModelTrainer.view` every
process loads with :meth:`Segmenter.load_shared_model`. The same view assigns
the same vector to the same segment id and name in every process.

Event time (:mod:`segmenter.clock`): every event source (input partition, the
``source`` argument of :meth:`Segmenter.process`; ``None`` offline) has a
robust clock; the watermark is the minimum over the active sources' clocks,
minus the lateness, and drives only time-driven work (inactivity, held
triggers, refinement ticks), never lateness. A customer more than
``features.max_future_hours`` ahead of its source's clock (one bad clock, or
the first customers back after a real gap) is *isolated*: its events are
applied to its own features, segments and outputs, but it takes no part in
lens learning, refinement or the shared-mode sample and does not move the
clock, until the clock reaches it (``SegmenterStats.isolated``).

Customers whose segment a lens merged or retired are moved at once (cause
``model``). Every order that decides an output depends only on the state, never
on row numbers or on Python's string hashing, so a restored core (from
:meth:`Segmenter.snapshot`, or from :meth:`Segmenter.model_state` plus the
latest :meth:`Segmenter.take_dirty` records) continues with identical outputs.
Those records are encoded and checked in :mod:`segmenter.model_state` (model
state, model parts, snapshots) and :mod:`segmenter.customer_records` (the
per-customer changelog); this facade only gathers and applies their values.
Its read-only views (stats, customer views, the membership table) are built
in :mod:`segmenter.views`.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from segmenter import kernel
from segmenter.batching import EventColumns, LensArrays, Moved, store_columns
from segmenter.change_blocks import ChangeBuilder, Output, messages_of
from segmenter.clock import EventClock, iso
from segmenter.config import SegmenterConfig
from segmenter.counters import CoreCounters
from segmenter.customer_records import CustomerRecords, known_segments
from segmenter.emission import MoveEmitter, OutputSink, Spool
from segmenter.erasing import Eraser
from segmenter.errors import EventError
from segmenter.events import CustomerEvent
from segmenter.explanations import Explainer
from segmenter.features import BASE_EPOCH, FEATURE_NAMES, FeatureStore
from segmenter.lenses.lens import Lens
from segmenter.lenses.quality import LensQuality
from segmenter.model_state import (
    CoreState,
    check_lens_states,
    decode_model_parts,
    decode_model_state,
    decode_snapshot,
    encode_model_parts,
    encode_model_state,
    encode_snapshot,
)
from segmenter.moves import MoveBuffer
from segmenter.outputs import OutputMessage
from segmenter.rescoring import Rescorer
from segmenter.shared import decode_view, load_lens_view
from segmenter.timed_work import RELEASE_EVERY_S, TimedWork
from segmenter.vectors import VectorSample
from segmenter.views import CustomerView, CustomerViews, SegmenterStats, SegmentSize, segment_sizes

if TYPE_CHECKING:
    from segmenter.triggers.engine import TriggerEngine
    from segmenter.triggers.rules import RuleSet

__all__ = ["BatchResult", "CustomerView", "OutputSink", "SegmentSize", "Segmenter", "SegmenterStats"]

logger = logging.getLogger(__name__)

_FLUSH_AT = frozenset(
    {kernel.Stop.DONE, kernel.Stop.LEARN, kernel.Stop.REFINE, kernel.Stop.WATERMARK, kernel.Stop.NONFINITE}
)
"""Stops of the compiled loop before which the lenses get their buffered samples (see ``LensArrays.flush``).

WATERMARK too, since a watermark may tick a refinement (``refine.every_days``), which reads the live scaler."""


@dataclass(frozen=True)
class BatchResult:
    """What :meth:`Segmenter.process_batch` returns."""

    parts: list[Output]
    """Output messages in order (``emitted_at`` unset), a move buffer's segment changes as one
    :class:`SegmentChanges` block where no campaign rule read them (an edge that only writes them writes the
    block's bytes, :func:`~segmenter.change_blocks.encode_parts`); empty when a sink received them."""
    errors: list[tuple[int, EventError]]
    """Rejected events by index into the batch (``late``, or ``schema`` for a time out of range)."""
    dropped: list[int] = field(default_factory=list)
    """Events dropped without output by index: of an erased customer, at or before its erasure (not errors)."""

    @cached_property
    def outputs(self) -> list[OutputMessage]:
        """The output messages in order: :attr:`parts` with every block replaced by its messages."""
        return messages_of(self.parts)


@dataclass
class _Run:
    """One :meth:`Segmenter.process_batch` call: its events, columns, results and the loop's I/O arrays."""

    events: Sequence[CustomerEvent]
    sources: Sequence[int | None]
    cols: EventColumns
    errors: dict[int, EventError]
    out: Spool
    params: tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.float64]]]
    pos: np.ndarray[Any, np.dtype[np.int64]] = field(default_factory=lambda: np.zeros(2, np.int64))
    io: np.ndarray[Any, np.dtype[np.int64]] = field(default_factory=lambda: np.zeros(kernel.IO_SIZE, np.int64))
    state: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(len(kernel.STATE_FIELDS), np.int64)
    )
    dropped: list[int] = field(default_factory=list)

    @property
    def prm(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        return self.params[0]

    @property
    def fp(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        return self.params[1]


class Segmenter:
    """The streaming segmenter's core (see docs/internals.md).

    Parameters
    ----------
    config
        The validated configuration.
    rules
        Campaign rules; ``None`` emits no campaign triggers.

    Examples
    --------
    >>> from segmenter.config import default_config
    >>> from segmenter.events import parse_event
    >>> seg = Segmenter(default_config())
    >>> ev = parse_event(b'{"event_id":"e1","customer_id":"c1","type":"purchase",'
    ...                  b'"ts":"2026-01-02T00:00:00Z","amount":20}')
    >>> seg.process(ev)            # the lenses are still warming up
    []
    >>> seg.process(ev)            # a duplicate
    []
    >>> seg.stats().duplicates
    1
    """

    def __init__(
        self, config: SegmenterConfig, rules: RuleSet | None = None, *, shared: bool = False, vector_every: int = 1
    ) -> None:
        self.config = config
        self._shared = shared
        self._vector_every = max(1, vector_every)
        self._lenses = [Lens(lc, config.seed) for lc in config.lenses]
        self._names = [lc.name for lc in config.lenses]
        self._idx = [[FEATURE_NAMES.index(f) for f in lc.features] for lc in config.lenses]
        self._idx_arrays = [np.asarray(ix, np.int64) for ix in self._idx]
        # itemgetter of >= 2 indices returns a tuple; of one index, a bare value (wrapped below)
        self._pick: list[Callable[[list[float]], Any]] = [_picker(ix) for ix in self._idx]
        self._fnames = [tuple(lc.features) for lc in config.lenses]
        self._store = FeatureStore(config.features, len(self._lenses))
        self._lateness = round(config.features.lateness_hours * 3600)
        self._refine_every = config.refine.every_events
        # event-time clock (int seconds relative to BASE_EPOCH)
        self._clock = EventClock(
            self._lateness, config.features.clock_quorum, round(config.features.max_future_hours * 3600)
        )
        # shared mode: sampled raw vectors for the trainer (customer hash, one raw vector per lens)
        self._vectors = VectorSample(self._names, self._pick)
        self._vec_seen = 0
        self._counts = CoreCounters()
        self._engine: TriggerEngine | None = None
        engine = self._current_engine
        # erased since the last take_dirty (ordered dict used as an ordered set)
        self._erased: dict[str, int] = {}
        self._records = CustomerRecords(self._store, self._lenses, engine, self._erased)
        self._views = CustomerViews(self._store, self._lenses, self._idx)
        self._arrays = LensArrays(self._lenses, self._idx)
        self._group_key: tuple[int, ...] = ()
        self._group_cache: tuple[kernel.Events, kernel.StoreColumns, kernel.ClockColumns, kernel.LensColumns] | None = (
            None
        )
        self._moves = MoveBuffer()
        self._explainers = [Explainer(lens) for lens in self._lenses]
        builder = ChangeBuilder(self._store, self._lenses, self._explainers, self._idx_arrays)
        self._emitter = MoveEmitter(self._store, builder, self._counts, engine, self._lateness)
        self._rescorer = Rescorer(self._store, self._arrays, self._lenses, self._emitter.emit_parts)
        self._eraser = Eraser(self._store, self._lenses, clock=self._clock, vectors=self._vectors,
                              counters=self._counts, engine=engine, erased=self._erased, shared=shared)  # fmt: skip
        self._timed = TimedWork(
            self._clock, self._store, self._lenses, self._rescorer, self._idx, emitter=self._emitter,
            eraser=self._eraser, engine=engine, counters=self._counts,
            interval=max(1, round(config.inactivity.check_interval_hours * 3600)),
            refine_every_s=0 if shared else round(config.refine.every_days * 86400),
        )  # fmt: skip
        self.set_rules(rules)

    def _current_engine(self) -> TriggerEngine | None:
        """The trigger engine of the current rules (collaborators ask: :meth:`set_rules` replaces it)."""
        return self._engine

    # ------------------------------------------------------------------ rules
    def set_rules(self, rules: RuleSet | None) -> None:
        """Replace the campaign rules (``None``: no triggers); per-customer trigger state is kept when possible."""
        if rules is None:
            self._engine = None
            return
        from segmenter.triggers.engine import TriggerEngine  # noqa: PLC0415 - only with rules (start-up time)

        old = self._engine
        engine = TriggerEngine(rules)
        if old is not None:
            for cid in self._store.customer_ids():
                st = old.customer_state(cid)
                if st is not None:
                    engine.load_customer_state(cid, st)
        self._engine = engine

    @property
    def lenses(self) -> list[Lens]:
        """The lenses, in config order."""
        return list(self._lenses)

    @property
    def watermark(self) -> float | None:
        """The watermark as epoch seconds (``None`` before the first event)."""
        return None if self._clock.watermark is None else float(self._clock.watermark + BASE_EPOCH)

    # -------------------------------------------------------------- the flow
    def process(self, event: CustomerEvent, source: int | None = None) -> list[OutputMessage]:
        """Apply one event and return the output messages it causes (``emitted_at`` unset).

        A batch of one (:meth:`process_batch`); use that for speed.

        Parameters
        ----------
        event
            The validated event.
        source
            Where the event came from (the input partition; ``None``: the one
            source of an offline run). Each source has its own clock (see
            :mod:`segmenter.clock`); lateness is judged per customer.

        Raises
        ------
        EventError
            ``late``: the event is older than its customer's latest event time
            minus the lateness (counted, not applied); ``schema``: its time is
            outside the supported range. An event far ahead of its source's
            clock is applied to its customer alone (``stats().isolated``).
        """
        result = self.process_batch([event], [source])
        if result.errors:
            raise result.errors[0][1]
        return result.outputs

    def process_batch(
        self,
        events: Sequence[CustomerEvent],
        sources: Sequence[int | None] | None = None,
        *,
        sink: OutputSink | None = None,
    ) -> BatchResult:
        """Apply events in order; same outputs as :meth:`process` on each, in one compiled pass.

        The compiled loop (:mod:`segmenter.kernel`) applies the features and
        scores every lens, applying and buffering the moves it decides; it stops
        for what needs Python (a new customer, a full move buffer, a model
        update, the watermark's work), the buffered moves become their messages
        in order, and it is resumed where it stopped, so the result never
        depends on how events are cut into batches.

        Parameters
        ----------
        events
            Validated events.
        sources
            Per event, its source (see :meth:`process`); default ``None`` for all.
        sink
            Receives the output messages in order, a part at a time, as soon as
            they exist (see :data:`OutputSink`): a mass move (an inactivity sweep,
            a refinement's re-scoring) is never held whole. ``None``: they are
            returned in :attr:`BatchResult.outputs`. The parts, joined, are that list.

        Returns
        -------
        BatchResult
            The output messages in order (none with a ``sink``), and the rejected
            events (late, or a time out of range) by index; rejected events change nothing.

        Raises
        ------
        ValueError
            A feature vector is not finite (cannot happen with the store's
            clipping; a bug). Any exception (the sink's too) leaves the batch half
            applied, with some of its outputs handed over: discard the core and
            what the sink received, and restore it (the consumer aborts its transaction).
        """
        n = len(events)
        srcs: Sequence[int | None] = sources if sources is not None else [None] * n
        if len(srcs) != n:
            raise ValueError(f"{n} events but {len(srcs)} sources")
        out = Spool(sink)
        result = BatchResult(out, [])
        if not n:
            return result
        if self._clock.needs_repair:
            self._repair_clock()
        cols = EventColumns(events, srcs, self._store, self._clock.index)
        if cols.moved is not None:
            self._note_moved(cols.moved)
        run = _Run(events, srcs, cols, dict(cols.errors), out, self._params())
        run.dropped.extend(self._eraser.drop_erased(events, cols, range(n)))
        arrays = self._arrays
        arrays.sync(counters=True)
        stops = self._stops
        resume: tuple[int, int] | None = (0, 0)
        while resume is not None:
            # Caller-side rules of the stop/resume protocol (segmenter.kernel):
            # 1. before each call, the Python-held clock and counters are pushed into ``state`` and the lens
            #    arrays re-packed where a lens changed; the column groups are rebuilt, since a handler may
            #    have grown the store (new rows) or a lens's centers;
            # 2. after each call, ``state`` is pulled back first, and before anything reads or changes a lens,
            #    the moves it buffered (already applied to the store) become their messages, in order, and only then
            #    are a lens's buffered samples handed over (``flush``), at DONE, LEARN, REFINE, WATERMARK and NONFINITE;
            # 3. the handler of the stop does that piece and names where to resume: the same (event, step) when
            #    the loop stopped before doing something (NEW_ROW) or after deciding it (MOVE: the buffer was full,
            #    LEARN, REFINE, SHARED_SAMPLE), the next event when this one is rejected or consumed (LATE, ERASE);
            #    WATERMARK stops after its event, so its position is already the next one.
            run.pos[:] = resume
            self._push_clock(run.state)
            arrays.sync(counters=False)
            kernel.run(run.pos, run.io, *self._groups(cols), self._moves.columns, run.state, run.prm, run.fp)
            self._pull_clock(run.state)
            self._emitter.emit(self._moves, run.out, cause="event", events=run.events)
            reason, i, step = run.io[: kernel.IO_STEP + 1].tolist()
            if reason in _FLUSH_AT:
                for li, msgs in arrays.flush():
                    run.out.extend(msgs)
                    self._timed.after_lifecycle(li, msgs, run.out, skip=cols.row(i) if i < n else None)
            resume = stops[kernel.Stop(reason)](run, i, step)
            run.out.hand_over()
        self._push_clock(run.state)
        cols.release_unused(self._store)
        result.errors.extend(sorted(run.errors.items()))
        result.dropped.extend(run.dropped)
        return result

    def _params(self) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.float64]]]:
        """The loop's parameters (``P_*`` and ``FP_*`` of :mod:`segmenter.kernel`)."""
        c = self._clock
        prm = [self._lateness, self._refine_every, self._shared, self._vector_every, self._engine is not None,
               RELEASE_EVERY_S, self._store.dedup_size, c.max_future, c.quorum]  # fmt: skip
        return np.array(prm, np.int64), self._store.kernel_rates()

    def _groups(
        self, cols: EventColumns
    ) -> tuple[kernel.Events, kernel.StoreColumns, kernel.ClockColumns, kernel.LensColumns]:
        """The column groups of one :func:`kernel.run` call, rebuilt when a handler replaced arrays.

        New rows may grow the store (all its columns at once), new sources the clock's arrays, an erasure
        the batch's placeholders, and a lens with more live segments the packed centers.
        """
        s, c, a = self._store, self._clock, self._arrays
        key = (id(cols.newrows), id(s.f), id(c.clock), id(a.centers), id(a.live))
        if self._group_key != key:
            self._group_key = key
            self._group_cache = (
                kernel.Events(cols.rows, cols.newrows, cols.newfirst, cols.kinds, cols.times, cols.amounts,
                              cols.hashes, cols.chashes, cols.srcs, cols.parts),
                store_columns(s),
                kernel.ClockColumns(c.clock, c.smax, c.idle, c.dirty, c.ktime, c.kkey, c.kcount, c.atime, c.akey,
                                    c.acount),
                a.columns(),
            )  # fmt: skip
        assert self._group_cache is not None
        return self._group_cache

    # ------------------------------------------------ stops of the compiled loop: (run, event, step) -> resume
    @property
    def _stops(self) -> dict[kernel.Stop, Callable[[_Run, int, int], tuple[int, int] | None]]:
        stop = kernel.Stop
        return {
            stop.DONE: lambda run, i, step: None,
            stop.WATERMARK: self._stop_watermark,
            stop.MOVE: lambda run, i, step: (i, step),  # the buffered moves were handed over above
            stop.NEW_ROW: self._stop_new_row,
            stop.LATE: self._stop_late,
            stop.ERASE: self._stop_erase,
            stop.REFINE: self._stop_refine,
            stop.SHARED_SAMPLE: self._stop_sample,
            stop.LEARN: lambda run, i, step: (i, step),  # the samples were handed over above
            stop.NONFINITE: self._stop_nonfinite,
        }

    def _stop_watermark(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        self._timed.on_watermark(run.out)
        return i, step

    def _stop_new_row(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        run.cols.set_new_row(i, self._store.new_row(run.events[i].customer_id))
        return i, step

    def _stop_late(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        self._counts.late += 1
        run.errors[i] = self._late_error(run.events[i], run.cols.row(i))
        return i + 1, 0

    def _stop_erase(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        ev = run.events[i]
        self._counts.events += 1
        run.cols.release(i, self._store)
        run.out.extend(self._eraser.erase(ev.customer_id, ev.epoch))
        cid = ev.customer_id
        later = [j for j in range(i + 1, len(run.events)) if run.events[j].customer_id == cid]
        run.dropped.extend(self._eraser.drop_erased(run.events, run.cols, later))
        run.cols.forget(i)
        return i + 1, 0

    def _stop_refine(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        self._timed.refine(run.out)
        return i, step

    def _stop_sample(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        self._sample_vectors(run.cols.row(i))
        return i, step

    def _stop_nonfinite(self, run: _Run, i: int, step: int) -> tuple[int, int]:
        row = run.cols.row(i)
        li = (step - 1) // 2
        values = [float(v) for v in self._pick[li](self._store.vector(row, self._store.last_time(row)))]
        raise ValueError(f"lens {self._lenses[li].name!r}: non-finite feature value in {values!r}")

    def _push_clock(self, state: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        c = self._clock
        max_t, wm, nxt, rel = c.max_t, c.watermark, c.next_check, c.released_at
        counts = self._counts
        state[:] = (
            counts.events,
            counts.duplicates,
            self._vec_seen,
            max_t is not None,
            max_t or 0,
            wm is not None,
            wm or 0,
            nxt is not None,
            nxt or 0,
            rel is not None,
            rel or 0,
            counts.isolated,
        )

    def _pull_clock(self, state: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        c, counts = self._clock, self._counts
        (counts.events, counts.duplicates, self._vec_seen, has_max, max_t, has_wm, wm, has_next, nxt, has_rel,
         rel, counts.isolated) = state.tolist()  # fmt: skip
        c.max_t = max_t if has_max else None
        c.watermark = wm if has_wm else None
        c.next_check = nxt if has_next else None
        c.released_at = rel if has_rel else None

    def _repair_clock(self) -> None:
        """After a restore: clamp clocks far ahead of the restored customers' robust time (old poisoned state)."""
        store = self._store
        robust = store.robust_time(self._clock.quorum)
        self._clock.repair(robust)

    def _note_moved(self, moved: Moved) -> None:
        """Known customers' events from another input partition than before: a WARNING the first time, then
        DEBUG lines (one per batch), counted in :meth:`stats` ``moved_partition``."""
        first = not self._counts.moved
        self._counts.moved += moved.events
        logger.log(
            logging.WARNING if first else logging.DEBUG,
            "%d events of known customers came from another input partition than before (first: customer %r from "
            "%d to %d; %d so far%s); is the input keyed by customer id?",
            moved.events, moved.customer_id, moved.before, moved.after, self._counts.moved,
            ", further ones are counted, not logged" if first else "",
        )  # fmt: skip

    def _late_error(self, event: CustomerEvent, row: int) -> EventError:
        ref = self._store.last_time(row)
        return EventError(
            "late",
            f"event time {event.ts.isoformat()} is more than {self.config.features.lateness_hours:g} h before "
            f"customer {event.customer_id!r}'s latest event time {iso(ref)} (features.lateness_hours)",
            field="ts",
        )

    def _sample_vectors(self, row: int) -> None:
        """Shared mode: keep this event's raw vectors (one per lens) for the trainer."""
        store = self._store
        self._vectors.add(int(store.crc[row]), store.vector(row, store.last_time(row)))

    def erase(self, customer_id: str, at: float | None = None) -> list[OutputMessage]:
        """Forget a customer (Kafka tombstone); final ``segment_change`` per lens where it had a segment.

        ``at`` (epoch seconds) stamps ``event_ts``; default the latest event time seen.
        """
        return self._eraser.erase(customer_id, at)

    def advance_to(self, epoch: float, full: bool = False, *, sink: OutputSink | None = None) -> list[OutputMessage]:
        """Move the watermark to ``epoch`` (never backwards) and run the inactivity re-scoring it causes.

        With ``full=True`` every customer not yet scored at ``epoch`` is re-scored
        at ``epoch`` (unbounded work; for ``replay --until``). Returns the output
        messages; with a ``sink``, it received them instead (see :meth:`process_batch`).
        """
        t = self._store.to_seconds(epoch)
        out = Spool(sink)
        if self._clock.advance(t):
            self._timed.on_watermark(out)
        if full:
            self._timed.rescore_all(out)
        out.hand_over()
        return messages_of(out)

    # ------------------------------------------------------------ Kafka state
    def take_dirty(self) -> dict[str, bytes | None]:
        """Customer records changed since the last call, by customer id (sorted); ``None``: erased."""
        return {cid: record for cid, record, _ in self.take_changes()}

    def take_changes(self) -> list[tuple[str, bytes | None, int | None]]:
        """:meth:`take_dirty` with each customer's source (input partition; ``None``: none): its changelog route.

        The source is the one of the customer's latest applied event (or of
        its restored record); an erased customer's is the one it had then.
        """
        return self._records.take_changes()

    def take_change_parts(self, size: int) -> Iterator[list[tuple[str, bytes | None, int | None]]]:
        """:meth:`take_changes` in parts of ``size``, each built when reached: a mass move's changelog is never
        held whole. Consume it before the core changes again."""
        return self._records.take_change_parts(size)

    def membership_values(self, customer_ids: Sequence[str], updated_at: Sequence[str]) -> list[bytes | None]:
        """The membership-table record value of each customer (:func:`segmenter.membership.membership_values`:
        its current segment per lens, ``since`` when it entered it, the lens's model version at that move,
        ``updated_at`` its own of ``updated_at``), from the columns; ``None`` for one not held (erased)."""
        return self._views.membership_values(customer_ids, updated_at)

    def load_customer(self, customer_id: str, record: bytes, source: int | None = None) -> None:
        """Restore one customer from a :meth:`take_dirty` record (replacing what is held); ``source``: its partition.

        Raises
        ------
        StateError
            The record is corrupt, of another version, holds values that are not
            finite or out of range, or names a segment its lens does not know;
            the customer is then not held (it starts afresh).
        """
        self._records.load(customer_id, record, source, self._known_segments())
        self._rescorer.forget()

    def forget_customer(self, customer_id: str) -> None:
        """Drop one customer without output (a record that cannot be restored: it starts afresh)."""
        self._records.forget(customer_id)

    def _known_segments(self) -> list[dict[int, Any]] | None:
        return known_segments(self._lenses, started=self._counts.events > 0)

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget (without output) every customer whose latest event came from one of ``partitions``, in one pass.

        Returns how many. The Kafka edge calls it when those input partitions
        are revoked (their owner restores the customers from the state topic).
        """
        return self._records.drop_partitions(partitions)

    # ------------------------------------------------------- per-source clock
    # The edge's side of the event clock (segmenter.clock): assignment opens a source, reaching the end
    # offset makes it idle, revocation drops it, and its clock travels with the partition's state.
    def open_source(self, source: int) -> None:
        """An assigned partition: until it has events, a restored clock or is idle, it holds the watermark."""
        self._clock.open_source(source)

    def set_idle(self, source: int, idle: bool) -> None:
        """The partition was read to its end offset (``True``: it stops holding the watermark) or has data again.

        An event from the source makes it active again by itself. The
        inactivity step a watermark move may cause waits for the next event.
        """
        self._clock.set_idle(source, idle)

    def take_dirty_clocks(self) -> dict[int, float]:
        """Sources (input partitions) whose clock moved since the last call: ``{source: epoch}``.

        The Kafka edge writes them next to the partition's customer records, so
        whoever owns a partition next restores its clock (:meth:`load_clock`).
        The ``None`` source (offline use) is not reported.
        """
        return {s: float(t + BASE_EPOCH) for s, t in self._clock.take_dirty().items()}

    def load_clock(self, source: int, epoch: float) -> None:
        """Restore one source's clock (keeps the later of what is held and ``epoch``).

        A clock far ahead of the restored customers' own times (state written
        by older code after one far-future event) is repaired before the next
        event (see docs/internals.md, "Event time").
        """
        self._clock.load(source, self._store.to_seconds(epoch))

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        """Forget the clock of every source for which ``keep(source)`` is false (its partition moved away).

        The watermark never moves back; it advances with the remaining active sources.
        """
        self._clock.drop_sources(keep)

    # ------------------------------------------------------------ shared mode
    @property
    def shared(self) -> bool:
        """True when the lenses only assign with a model published by a trainer (no local learning)."""
        return self._shared

    def model_versions(self) -> dict[str, int]:
        """Each lens's model version."""
        return {lens.name: lens.model_version for lens in self._lenses}

    def take_vectors(self) -> bytes | None:
        """Shared mode: the sampled raw vectors since the last call, encoded for the trainer (``None``: none)."""
        return self._vectors.take()

    def discard_vectors(self) -> None:
        """Drop sampled vectors not yet taken (their batch was aborted)."""
        self._vectors.discard()

    def load_shared_model(self, view: bytes, *, sink: OutputSink | None = None) -> list[OutputMessage]:
        """Shared mode: assign with a trainer's model view (:meth:`~segmenter.shared.ModelTrainer.view`) from now on.

        Customers in segments the new view no longer has live (merged, split,
        retired) are re-assigned at once (cause ``model``), as the learning core
        does after a lifecycle event. Returns those changes; with a ``sink``, it
        received them instead, a part at a time (see :meth:`process_batch`).

        Raises
        ------
        StateError
            The view is corrupt or for other lenses.
        """
        lenses = decode_view(view, self._names, self._fnames)
        check_lens_states(self.config, lenses)  # a bad view changes nothing
        out = Spool(sink)
        for li, lens in enumerate(self._lenses):
            self._timed.move_out_of(li, load_lens_view(lens, lenses[lens.name]), out, skip=None)
        return messages_of(out)

    # ------------------------------------------------------------ model state
    def model_state(self) -> bytes:
        """Lenses (scalers, models, registries), event-time clock and counters, as a :mod:`~segmenter.codec` record."""
        return encode_model_state(self._lens_states(), self._core_state())

    def model_parts(self) -> dict[str, bytes]:
        """The model state as separate records, so an edge can write only the parts that changed.

        ``"core"`` holds the event-time clock, the counters and the trigger
        engine's global state (small; it moves with every event); ``"lens:<name>"``
        holds one lens's scaler, model and registry (it moves only when that
        lens observed or learned). Loading the newest of each
        (:meth:`load_model_parts`) is the same as loading :meth:`model_state`.
        """
        return encode_model_parts(self._lens_states(), self._core_state())

    def _lens_states(self) -> dict[str, Any]:
        return {lens.name: lens.state() for lens in self._lenses}

    def _core_state(self) -> CoreState:
        triggers = None if self._engine is None else self._engine.global_state()
        return CoreState(self._fnames, self._clock.state(), self._counts.saved(), triggers, self._eraser.markers)

    def load_model_state(self, data: bytes) -> None:
        """Restore :meth:`model_state` output (customers are untouched).

        Everything is checked before anything changes: a refused record leaves
        the core as it was.

        Raises
        ------
        StateError
            Not a model-state record of this version, corrupt data, lenses that
            differ from the config, or values out of range.
        """
        self._load_model(*decode_model_state(data, self._names, self._fnames))

    def load_model_parts(self, parts: Mapping[str, bytes]) -> None:
        """Restore :meth:`model_parts` output (one record per part; customers are untouched).

        Everything is checked before anything changes, as in :meth:`load_model_state`.

        Raises
        ------
        StateError
            A part is missing, unknown, corrupt or of another version, or the
            lenses differ from the config.
        """
        self._load_model(*decode_model_parts(parts, self._names, self._fnames))

    def _load_model(self, lenses: dict[str, Any], core: CoreState) -> None:
        """Check, then load, the lens states and the core state (clock, counters, trigger globals, markers)."""
        check_lens_states(self.config, lenses)
        if self._engine is not None and core.triggers is not None:
            # per-customer trigger state already loaded (load_customer may come first) is kept;
            # load_global_state checks everything before it changes anything
            self._engine.load_global_state(core.triggers)
        for lens in self._lenses:
            lens.load_state(lenses[lens.name])
        self._records.forget_unknown_segments()
        self._clock.load_state(core.clock)
        self._counts.load(core.counters)
        self._eraser.markers = core.markers

    def snapshot(self) -> bytes:
        """Everything: :meth:`model_state` plus every customer (features, segments, trigger state)."""
        engine = None if self._engine is None else self._engine.state()
        return encode_snapshot(self.model_state(), self._store.columns(self._names), engine)

    @classmethod
    def from_snapshot(cls, config: SegmenterConfig, data: bytes, rules: RuleSet | None = None) -> Segmenter:
        """Rebuild a core from :meth:`snapshot` output.

        Raises
        ------
        StateError
            Not a snapshot of this version, corrupt data, a snapshot of a
            different lens setup, or values out of range.
        """
        model, customers, triggers = decode_snapshot(data)
        seg = cls(config, rules)
        seg.load_model_state(model)
        seg._store.load_columns(customers, seg._names, seg._known_segments())
        seg._rescorer.forget()
        if seg._engine is not None and triggers is not None:
            seg._engine.load_state(triggers)
        return seg

    # ----------------------------------------------------------------- views
    def stats(self) -> SegmenterStats:
        """Counters, segment sizes per lens and the watermark."""
        suppressed: dict[str, dict[str, int]] = {}
        if self._engine is not None:
            suppressed = {k: dict(v) for k, v in self._engine.suppressed().items()}
        counts = self._counts
        return SegmenterStats(
            events=counts.events,
            late=counts.late,
            duplicates=counts.duplicates,
            erasures=counts.erasures,
            customers=len(self._store),
            changes=dict(sorted(counts.changes.items())),
            triggers=dict(sorted(counts.triggers.items())),
            suppressed=suppressed,
            segments=segment_sizes(self._lenses, self._store),
            watermark=None if self._clock.watermark is None else iso(self._clock.watermark),
            isolated=counts.isolated,
            after_erasure=counts.after_erasure,
            moved_partition=counts.moved,
        )

    def lens_quality(self) -> dict[str, LensQuality]:
        """Each refined lens's quality at its latest refinement (SSE ratio against batch k-means, silhouette).

        Read by the consumer's gauges; measured when first read after a refinement, so a replay that never
        asks never pays for it. Lenses not refined yet are left out.
        """
        return {lens.name: q for lens in self._lenses if (q := lens.quality) is not None}

    def customer_view(self, customer_id: str) -> CustomerView | None:
        """The customer's segment per lens and the features each lens last clustered (at its last scoring)."""
        return self._views.view(customer_id)

    def customer_views(self) -> Iterable[CustomerView]:
        """Every customer's view, ordered by customer id."""
        return self._views.all()

    @property
    def store(self) -> FeatureStore:
        """The feature store (read-only use: memory measurements, tests)."""
        return self._store


def _picker(index: list[int]) -> Callable[[list[float]], Any]:
    """A fast ``values -> tuple of values[index]`` (``itemgetter`` of one index returns a bare value)."""
    if len(index) > 1:
        return operator.itemgetter(*index)
    i = index[0]
    return lambda values: (values[i],)
