"""The core facade: events in, output messages out (no Kafka, no clock).

Per accepted event, :meth:`Segmenter.process` runs

1. erasure (``erasure_request``) or lateness (older than the watermark:
   ``EventError("late")``) and de-duplication (repeated ``event_id``: ``[]``);
2. the feature update (:class:`~segmenter.features.FeatureStore`, event time);
3. for each lens, on the customer's raw feature vector at its latest event
   time: ``observe`` (model learning; lifecycle messages), ``assign`` (nearest
   segment with hysteresis) and, on a move, a ``segment_change`` plus the
   trigger engine's ``campaign_trigger`` messages;
4. every ``refine.every_events`` accepted events, ``Lens.refine`` on a
   deterministic sample of current customers;
5. when the watermark crosses a multiple of ``inactivity.check_interval_hours``,
   a bounded re-scoring of the customers scored longest ago (cause
   ``inactivity``).

Shared mode (``Segmenter(config, shared=True)``, for scale-out): the lenses
never learn here; :meth:`Segmenter.take_vectors` hands the sampled raw vectors
to one :class:`~segmenter.shared.ModelTrainer` (anywhere), whose :meth:`~segmenter.shared.ModelTrainer.view` every
process loads with :meth:`Segmenter.load_shared_model`. The same view assigns
the same vector to the same segment id and name in every process.

The watermark is the minimum over the event sources (input partitions, the
``source`` argument of :meth:`Segmenter.process`) of their latest event time,
minus the lateness; with one source (the default ``None``) it is the latest
event time minus the lateness, as before.

Customers whose segment a lens merged or retired are moved at once (cause
``model``). Every order that decides an output depends only on the state, never
on row numbers or on Python's string hashing, so a restored core (from
:meth:`Segmenter.snapshot`, or from :meth:`Segmenter.model_state` plus the
latest :meth:`Segmenter.take_dirty` records) continues with identical outputs.
"""

from __future__ import annotations

import logging
import math
import operator
import pickle
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from segmenter import kernel
from segmenter.batching import UNSET, EventColumns, LensArrays
from segmenter.config import SegmenterConfig
from segmenter.errors import EventError, StateError
from segmenter.events import CustomerEvent
from segmenter.features import BASE_EPOCH, FEATURE_NAMES, FeatureStore
from segmenter.lenses.lens import Assignment, Lens
from segmenter.outputs import CampaignTrigger, OutputMessage, SegmentChange, SegmentLifecycle, SegmentRef
from segmenter.shared import decode_view, encode_vectors, unpickle_versioned
from segmenter.triggers.engine import TriggerEngine

if TYPE_CHECKING:
    from segmenter.triggers.rules import RuleSet

__all__ = ["BatchResult", "CustomerView", "SegmentSize", "Segmenter", "SegmenterStats"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1
_RECORD_VERSION = 1
_RELEASE_EVERY_S = 60
"""Held (quiet-hours) triggers are released when the watermark moved at least this much."""
_DEAD_ACTIONS = frozenset({"merged", "retired", "split"})
_FLUSH_AT = frozenset({kernel.DONE, kernel.LEARN, kernel.REFINE, kernel.NONFINITE})
"""Stops of the compiled loop before which the lenses get their buffered samples (see ``LensArrays.flush``)."""


def _iso(t_rel: int) -> str:
    return datetime.fromtimestamp(t_rel + BASE_EPOCH, UTC).isoformat()


@dataclass(frozen=True)
class BatchResult:
    """What :meth:`Segmenter.process_batch` returns."""

    outputs: list[OutputMessage]
    """Output messages in order (``emitted_at`` unset)."""
    errors: list[tuple[int, EventError]]
    """Rejected events by index into the batch (``late``, or ``schema`` for a time out of range), in order."""


@dataclass(frozen=True)
class SegmentSize:
    """One segment's id, name and current number of customers."""

    id: str
    name: str
    size: int


@dataclass(frozen=True)
class SegmenterStats:
    """Counters and segment sizes (see :meth:`Segmenter.stats`)."""

    events: int
    """Accepted events (not late, not duplicates; erasure requests included)."""
    late: int
    duplicates: int
    erasures: int
    customers: int
    changes: dict[str, int]
    """Segment changes per cause."""
    triggers: dict[str, int]
    """Campaign triggers emitted per campaign."""
    suppressed: dict[str, dict[str, int]]
    """Triggers suppressed per campaign and control (from the trigger engine)."""
    segments: dict[str, list[SegmentSize]]
    """Per lens, the segments that currently hold customers (by id)."""
    watermark: str | None


@dataclass(frozen=True)
class CustomerView:
    """One customer's segments and the features each lens clustered."""

    customer_id: str
    segments: dict[str, SegmentRef | None]
    features: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The ``replay --snapshot`` line for this customer."""
        return {
            "customer_id": self.customer_id,
            "segments": {k: (None if v is None else v.model_dump()) for k, v in self.segments.items()},
            "features": self.features,
        }


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

    def __init__(self, config: SegmenterConfig, rules: RuleSet | None = None, *, shared: bool = False,
                 vector_every: int = 1) -> None:
        self.config = config
        self._shared = shared
        self._vector_every = max(1, vector_every)
        self._lenses = [Lens(lc, config.seed) for lc in config.lenses]
        self._names = [lc.name for lc in config.lenses]
        self._idx = [[FEATURE_NAMES.index(f) for f in lc.features] for lc in config.lenses]
        # itemgetter of >= 2 indices returns a tuple; of one index, a bare value (wrapped below)
        self._pick: list[Callable[[list[float]], Any]] = [_picker(ix) for ix in self._idx]
        self._fnames = [tuple(lc.features) for lc in config.lenses]
        self._store = FeatureStore(config.features, len(self._lenses))
        self._lateness = round(config.features.lateness_hours * 3600)
        self._interval = max(1, round(config.inactivity.check_interval_hours * 3600))
        self._per_step = config.inactivity.max_customers_per_step
        self._refine_every = config.refine.every_events
        # event-time clock (int seconds relative to BASE_EPOCH)
        self._max_t: int | None = None
        self._watermark: int | None = None
        # per-source (input partition) maximum event time; the watermark is min over sources - lateness
        self._source_max: dict[int | None, int] = {}
        self._dirty_sources: set[int | None] = set()
        # shared mode: sampled raw vectors for the trainer (customer hash, one raw vector per lens)
        self._vec_keys: list[int] = []
        self._vec_rows: list[list[list[float]]] = [[] for _ in config.lenses]
        self._vec_seen = 0
        self._next_check: int | None = None
        self._released_at: int | None = None
        # counters (part of the model state)
        self._events = 0
        self._refine_round = 0
        self._late = 0
        self._duplicates = 0
        self._erasures = 0
        self._changes: Counter[str] = Counter()
        self._triggers: Counter[str] = Counter()
        # erased since the last take_dirty (ordered dict used as an ordered set)
        self._erased: dict[str, None] = {}
        self._engine: TriggerEngine | None = None
        self._arrays = LensArrays(self._lenses, self._idx)
        self.set_rules(rules)

    # ------------------------------------------------------------------ rules
    def set_rules(self, rules: RuleSet | None) -> None:
        """Replace the campaign rules (``None``: no triggers); per-customer trigger state is kept when possible."""
        if rules is None:
            self._engine = None
            return
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
        return None if self._watermark is None else float(self._watermark + BASE_EPOCH)

    # -------------------------------------------------------------- the flow
    def process(self, event: CustomerEvent, source: int | None = None) -> list[OutputMessage]:
        """Apply one event and return the output messages it causes (``emitted_at`` unset).

        A batch of one (:meth:`process_batch`); use that for speed.

        Parameters
        ----------
        event
            The validated event.
        source
            Where the event came from (the input partition). The watermark is the
            minimum over the sources' latest event times, minus the allowed
            lateness, so one partition running ahead of another does not make
            the other's events late. ``None`` (one source) is the offline case.

        Raises
        ------
        EventError
            ``late``: the event is older than the watermark (counted, not applied);
            ``schema``: its time is outside the supported range.
        """
        result = self.process_batch([event], [source])
        if result.errors:
            raise result.errors[0][1]
        return result.outputs

    def process_batch(
        self, events: Sequence[CustomerEvent], sources: Sequence[int | None] | None = None
    ) -> BatchResult:
        """Apply events in order; same outputs as :meth:`process` on each, in one compiled pass.

        The compiled loop (:mod:`segmenter.kernel`) applies the features and
        scores every lens; it stops for what needs Python (a new customer, a
        move, a model update, the watermark's work) and is resumed where it
        stopped, so the result never depends on how events are cut into batches.

        Parameters
        ----------
        events
            Validated events.
        sources
            Per event, its source (see :meth:`process`); default ``None`` for all.

        Returns
        -------
        BatchResult
            The output messages in order, and the rejected events (late, or a
            time out of range) by index; rejected events change nothing.

        Raises
        ------
        ValueError
            A feature vector is not finite (cannot happen with the store's
            clipping; a bug). Any exception leaves the batch half applied:
            discard the core and restore it (the consumer does).
        """
        n = len(events)
        srcs: Sequence[int | None] = sources if sources is not None else [None] * n
        if len(srcs) != n:
            raise ValueError(f"{n} events but {len(srcs)} sources")
        result = BatchResult([], [])
        if not n:
            return result
        keys = list(self._source_max)
        cols = EventColumns(events, srcs, self._store, keys)
        errors = dict(cols.errors)
        out = result.outputs
        arrays = self._arrays
        pos = np.zeros(2, np.int64)
        io = np.zeros(6, np.int64)
        dist = np.zeros(1, np.float64)
        state = np.zeros(len(kernel.STATE_FIELDS), np.int64)
        smax = np.array([self._source_max.get(k, UNSET) for k in keys], np.int64)
        sdirty = np.zeros(len(keys), np.uint8)
        prm = np.array([self._lateness, self._refine_every, self._shared, self._vector_every,
                        self._engine is not None, _RELEASE_EVERY_S, self._store.dedup_size], np.int64)
        fp = self._store.kernel_rates()
        store = self._store
        arrays.sync(counters=True)
        while True:
            self._push_clock(state)
            arrays.sync(counters=False)
            kernel.run(
                pos, io, dist,
                cols.rows, cols.newrows, cols.newfirst, cols.kinds, cols.times, cols.amounts, cols.hashes, cols.srcs,
                store.f, store.t, store.h, store.hpos, store.dirty, store.seg, store.dwell,
                state, smax, sdirty, prm, fp,
                arrays.idx, arrays.dims, arrays.heavy, arrays.inv, arrays.off, arrays.centers, arrays.nlive,
                arrays.live, arrays.min_dwell, arrays.keep, arrays.ready,
                arrays.nobs, arrays.warmup, arrays.learn_every, arrays.batch_size, arrays.bfill,
                arrays.sbuf, arrays.sn, arrays.scount,
            )  # fmt: skip
            self._pull_clock(state, keys, smax, sdirty)
            reason, i, step = int(io[0]), int(io[1]), int(io[2])
            if reason in _FLUSH_AT:
                for li, msgs in arrays.flush():
                    out.extend(msgs)
                    self._after_lifecycle(li, msgs, out, skip=cols.row(i) if i < n else None)
            pos[0], pos[1] = i, step
            if reason == kernel.DONE:
                break
            if reason == kernel.WATERMARK:  # stops after its event: i may be n
                self._on_watermark(out)
                continue
            ev = events[i]
            if reason == kernel.MOVE:
                self._kernel_move(row=cols.row(i), li=int(io[3]), segment=int(io[4]), nearest=int(io[5]),
                                  distance=float(dist[0]), event=ev, out=out)
            elif reason == kernel.NEW_ROW:
                cols.set_new_row(i, store.new_row(ev.customer_id))
            elif reason == kernel.LATE:
                self._late += 1
                errors[i] = self._late_error(ev)
                pos[0], pos[1] = i + 1, 0
            elif reason == kernel.ERASE:
                self._events += 1
                out.extend(self._erase(ev.customer_id, ev.epoch))
                cols.forget(i)
                pos[0], pos[1] = i + 1, 0
            elif reason == kernel.REFINE:
                self._refine(out)
            elif reason == kernel.SHARED_SAMPLE:
                self._sample_vectors(cols.row(i))
            elif reason == kernel.NONFINITE:
                li = (step - 1) // 2
                vals = store.vector(cols.row(i), store.last_time(cols.row(i)))
                values = [float(v) for v in self._pick[li](vals)]
                raise ValueError(f"lens {self._lenses[li].name!r}: non-finite feature value in {values!r}")
        self._push_clock(state)
        result.errors.extend(sorted(errors.items()))
        return result

    def _push_clock(self, state: np.ndarray[Any, np.dtype[np.int64]]) -> None:
        max_t, wm, nxt, rel = self._max_t, self._watermark, self._next_check, self._released_at
        state[:] = (self._events, self._duplicates, self._vec_seen, max_t is not None, max_t or 0, wm is not None,
                    wm or 0, nxt is not None, nxt or 0, rel is not None, rel or 0)

    def _pull_clock(self, state: np.ndarray[Any, np.dtype[np.int64]], keys: list[int | None],
                    smax: np.ndarray[Any, np.dtype[np.int64]], sdirty: np.ndarray[Any, np.dtype[np.uint8]]) -> None:
        (self._events, self._duplicates, self._vec_seen, has_max, max_t, has_wm, wm, has_next, nxt, has_rel,
         rel) = state.tolist()  # fmt: skip
        self._max_t = max_t if has_max else None
        self._watermark = wm if has_wm else None
        self._next_check = nxt if has_next else None
        self._released_at = rel if has_rel else None
        for s in np.flatnonzero(sdirty).tolist():
            self._source_max[keys[s]] = int(smax[s])
            self._dirty_sources.add(keys[s])
        sdirty[:] = 0

    def _late_error(self, event: CustomerEvent) -> EventError:
        wm = self._watermark
        return EventError(
            "late",
            f"event time {event.ts.isoformat()} is before the watermark {_iso(wm or 0)} "
            f"(latest event time minus {self.config.features.lateness_hours:g} h)",
            field="ts",
        )

    def _sample_vectors(self, row: int) -> None:
        """Shared mode: keep this event's raw vectors (one per lens) for the trainer."""
        store = self._store
        vals = store.vector(row, store.last_time(row))
        self._vec_keys.append(int(store.crc[row]))
        for li in range(len(self._lenses)):
            self._vec_rows[li].append([float(v) for v in self._pick[li](vals)])

    def _kernel_move(self, *, row: int, li: int, segment: int, nearest: int, distance: float,
                     event: CustomerEvent, out: list[OutputMessage]) -> None:
        """A move the compiled loop decided (``-1``: none): the ``segment_change`` and its triggers."""
        store = self._store
        vals = store.vector(row, store.last_time(row))
        cur = store.segment(row, li)
        a = Assignment(
            None if segment < 0 else segment,
            None if nearest < 0 else nearest,
            None if math.isnan(distance) else distance,
            True,
        )
        self._move(
            row=row,
            li=li,
            lens=self._lenses[li],
            raw=np.array(self._pick[li](vals), dtype=np.float64),
            vals=vals,
            a=a,
            current=cur if cur >= 0 else None,
            cause="event",
            event=event,
            event_ts=event.ts.isoformat(),
            out=out,
        )

    def erase(self, customer_id: str, at: float | None = None) -> list[OutputMessage]:
        """Forget a customer (Kafka tombstone); final ``segment_change`` per lens where it had a segment.

        ``at`` (epoch seconds) stamps ``event_ts``; default the latest event time seen.
        """
        return self._erase(customer_id, at)

    def advance_to(self, epoch: float, full: bool = False) -> list[OutputMessage]:
        """Move the watermark to ``epoch`` (never backwards) and run the inactivity re-scoring it causes.

        With ``full=True`` every customer not yet scored at ``epoch`` is re-scored
        at ``epoch`` (unbounded work; for ``replay --until``).
        """
        t = self._store.to_seconds(epoch)
        out: list[OutputMessage] = []
        if self._watermark is None or t > self._watermark:
            self._watermark = t
            self._on_watermark(out)
        if full and self._watermark is not None:
            self._sweep(self._watermark, len(self._store), out, before=self._watermark)
        return out

    # ---------------------------------------------------------------- scoring
    def _assign(
        self,
        *,
        row: int,
        li: int,
        lens: Lens,
        raw: np.ndarray[Any, np.dtype[np.float64]],
        vals: list[float],
        cause: str,
        event_ts: str,
        out: list[OutputMessage],
    ) -> None:
        """Assign one customer in one lens (no model update) and emit the move, if any.

        A customer whose segment is no longer live is assigned afresh (the move rule applies no hysteresis
        against a dead segment).
        """
        store = self._store
        cur = store.segment(row, li)
        current = cur if cur >= 0 else None
        dwell = store.dwell_of(row, li)
        a = lens.assign(raw, current, dwell)
        if a.segment == current:
            store.set_segment(row, li, cur, dwell + 1)
        else:
            self._move(
                row=row,
                li=li,
                lens=lens,
                raw=raw,
                vals=vals,
                a=a,
                current=current,
                cause=cause,
                event=None,
                event_ts=event_ts,
                out=out,
            )

    def _move(
        self,
        *,
        row: int,
        li: int,
        lens: Lens,
        raw: np.ndarray[Any, np.dtype[np.float64]],
        vals: list[float],
        a: Assignment,
        current: int | None,
        cause: str,
        event: CustomerEvent | None,
        event_ts: str,
        out: list[OutputMessage],
    ) -> None:
        """Record a move, tell the lens, emit the ``segment_change`` and its campaign triggers."""
        store = self._store
        new = a.segment
        if current is not None and not lens.is_live(current):
            cause = "model"
        store.set_segment(row, li, -1 if new is None else new, 0)
        lens.membership(current, new)
        store.dirty[row] = True
        names = self._fnames[li]
        cid = store.id_of(row)
        change = SegmentChange(
            customer_id=cid,
            lens=lens.name,
            from_segment=None if current is None else lens.ref(current),
            to_segment=None if new is None else lens.ref(new),
            cause=cause,
            cause_event_id=event.event_id if cause == "event" and event is not None else None,
            event_ts=event_ts,
            model_version=lens.model_version,
            distance=None if a.distance is None else round(float(a.distance), 6),
            features={n: round(float(v), 4) for n, v in zip(names, raw.tolist(), strict=True)},
            explanation=lens.explain(raw, current, new),
        )
        self._changes[cause] += 1
        out.append(change)
        if self._engine is not None:
            trig = self._engine.evaluate(change, dict(zip(FEATURE_NAMES, vals, strict=True)), event)
            self._count_triggers(trig)
            out.extend(trig)

    def _count_triggers(self, triggers: Iterable[CampaignTrigger]) -> None:
        for tr in triggers:
            self._triggers[tr.campaign] += 1
            row = self._store.row_of(tr.customer_id)
            if row is not None:
                self._store.dirty[row] = True

    def _after_lifecycle(
        self, li: int, msgs: Iterable[SegmentLifecycle], out: list[OutputMessage], skip: int | None
    ) -> None:
        """Move the customers out of segments that the lens merged, split or retired (cause ``model``)."""
        lens = self._lenses[li]
        dead: list[int] = []
        for msg in msgs:
            if msg.action not in _DEAD_ACTIONS:
                continue
            for sid in [msg.segment.id, *msg.related]:
                n = _segment_number(sid)
                if n is not None and n not in dead and not lens.is_live(n):
                    dead.append(n)
        if not dead or not lens.ready:
            return
        store = self._store
        ts = _iso(self._max_t if self._max_t is not None else 0)
        for n in sorted(dead):
            for row in store.rows_in_segment(li, n):
                if row == skip:
                    continue
                vals = store.vector(row, store.scored_time(row))
                raw = np.array(self._pick[li](vals), dtype=np.float64)
                self._assign(row=row, li=li, lens=lens, raw=raw, vals=vals, cause="model", event_ts=ts, out=out)

    def _refine(self, out: list[OutputMessage]) -> None:
        """Refine every ready lens against all current customers' features at the watermark (one vectorised pass)."""
        self._refine_round += 1
        store = self._store
        at = self._watermark if self._watermark is not None else -(2**31)
        ready = [li for li, lens in enumerate(self._lenses) if lens.ready]
        if not ready:
            return
        cols = sorted({i for li in ready for i in self._idx[li]})
        rows, mat = store.vectors_at(at, cols)
        n = len(rows)
        if not n:
            return
        for li in ready:
            lens = self._lenses[li]
            msgs = lens.refine(mat[:, [cols.index(i) for i in self._idx[li]]])
            if msgs:
                out.extend(msgs)
                self._after_lifecycle(li, msgs, out, skip=None)
        logger.debug("refinement %d on %d customers", self._refine_round, n)

    def _on_watermark(self, out: list[OutputMessage]) -> None:
        wm = self._watermark
        assert wm is not None
        if self._engine is not None and (self._released_at is None or wm - self._released_at >= _RELEASE_EVERY_S):
            self._released_at = wm
            released = self._engine.release(float(wm + BASE_EPOCH))
            self._count_triggers(released)
            out.extend(released)
        if self._next_check is None:
            self._next_check = (wm // self._interval + 1) * self._interval
            return
        if wm < self._next_check:
            return
        n = (wm - self._next_check) // self._interval + 1
        self._next_check += n * self._interval
        if self._per_step:
            # at the watermark itself (not the crossed boundary): the trigger engine needs
            # every later change at or after the watermark it was released to
            self._sweep(wm, self._per_step * n, out, before=wm - self._interval + 1)

    def _sweep(self, t_sweep: int, budget: int, out: list[OutputMessage], before: int) -> None:
        """Re-score up to ``budget`` customers last scored before ``before``, at ``t_sweep`` (cause ``inactivity``)."""
        ready = [(li, lens) for li, lens in enumerate(self._lenses) if lens.ready]
        store = self._store
        rows = store.stalest(before, budget)
        for row in rows:
            t = max(t_sweep, store.last_time(row))
            store.set_scored(row, t)
            store.dirty[row] = True
            if not ready:
                continue
            vals = store.vector(row, t)
            ts = _iso(t)
            for li, lens in ready:
                raw = np.array(self._pick[li](vals), dtype=np.float64)
                self._assign(row=row, li=li, lens=lens, raw=raw, vals=vals, cause="inactivity", event_ts=ts, out=out)
        if rows:
            logger.debug("inactivity step at %s re-scored %d customers", _iso(t_sweep), len(rows))

    def _erase(self, customer_id: str, at: float | None) -> list[OutputMessage]:
        store = self._store
        if self._engine is not None:
            self._engine.erase(customer_id)
        row = store.row_of(customer_id)
        if row is None:
            return []
        if at is not None:
            ts = datetime.fromtimestamp(at, UTC).isoformat()
        else:
            ts = _iso(self._max_t if self._max_t is not None else 0)
        out: list[OutputMessage] = []
        for li, lens in enumerate(self._lenses):
            cur = store.segment(row, li)
            if cur < 0:
                continue
            out.append(
                SegmentChange(
                    customer_id=customer_id,
                    lens=lens.name,
                    from_segment=lens.ref(cur),
                    to_segment=None,
                    cause="erasure",
                    cause_event_id=None,
                    event_ts=ts,
                    model_version=lens.model_version,
                    distance=None,
                    features={},
                    explanation=None,
                )
            )
            lens.membership(cur, None)
            self._changes["erasure"] += 1
        store.remove(customer_id)
        self._erased[customer_id] = None
        self._erasures += 1
        return out

    # ------------------------------------------------------------ Kafka state
    def take_dirty(self) -> dict[str, bytes | None]:
        """Customer records changed since the last call, by customer id (sorted); ``None``: erased."""
        store = self._store
        out: dict[str, bytes | None] = {cid: None for cid in self._erased}
        self._erased = {}
        for row in store.take_dirty_rows():
            cid = store.id_of(row)
            out[cid] = self._record(cid, row)
        return dict(sorted(out.items()))

    def _record(self, customer_id: str, row: int) -> bytes:
        rec = self._store.record(row, self._names)
        rec["v"] = _RECORD_VERSION
        rec["e"] = None if self._engine is None else self._engine.customer_state(customer_id)
        return orjson.dumps(rec)

    def load_customer(self, customer_id: str, record: bytes) -> None:
        """Restore one customer from a :meth:`take_dirty` record (replacing what is held).

        Raises
        ------
        StateError
            The record is corrupt or of another version.
        """
        try:
            rec = orjson.loads(record)
        except orjson.JSONDecodeError as exc:
            raise StateError(f"customer {customer_id!r}: record is not JSON: {exc}") from None
        if not isinstance(rec, dict) or rec.get("v") != _RECORD_VERSION:
            version = rec.get("v") if isinstance(rec, dict) else None
            raise StateError(f"customer {customer_id!r}: unsupported record version {version!r}")
        self._store.load_record(customer_id, rec, self._names)
        self._erased.pop(customer_id, None)
        if self._engine is not None:
            self._engine.erase(customer_id)
            if rec.get("e") is not None:
                self._engine.load_customer_state(customer_id, rec["e"])

    def drop_customers(self, keep: Callable[[str], bool]) -> int:
        """Forget (without output) every customer for which ``keep(customer_id)`` is false; returns how many."""
        gone = [cid for cid in self._store.customer_ids() if not keep(cid)]
        for cid in gone:
            self._store.remove(cid)
            if self._engine is not None:
                self._engine.erase(cid)
        return len(gone)

    # ------------------------------------------------------- per-source clock
    def take_dirty_clocks(self) -> dict[int, float]:
        """Sources (input partitions) whose latest event time moved since the last call: ``{source: epoch}``.

        The Kafka edge writes them next to the partition's customer records, so
        whoever owns a partition next restores its clock (:meth:`load_clock`).
        The ``None`` source (offline use) is not reported.
        """
        out = {s: float(self._source_max[s] + BASE_EPOCH) for s in sorted(
            s for s in self._dirty_sources if s is not None and s in self._source_max)}
        self._dirty_sources.clear()
        return out

    def load_clock(self, source: int, epoch: float) -> None:
        """Restore one source's latest event time (keeps the later of what is held and ``epoch``)."""
        t = self._store.to_seconds(epoch)
        cur = self._source_max.get(source)
        if cur is None or t > cur:
            self._source_max[source] = t
        if self._max_t is None or t > self._max_t:
            self._max_t = t
        self._recompute_watermark()

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        """Forget the clock of every source for which ``keep(source)`` is false (its partition moved away).

        The watermark becomes the minimum over the remaining sources (it can move
        either way; it is never above any remaining source's own watermark).
        """
        for src in [s for s in self._source_max if not keep(s)]:
            del self._source_max[src]
            self._dirty_sources.discard(src)
        self._recompute_watermark()

    def _recompute_watermark(self) -> None:
        """Watermark = min over sources - lateness; the inactivity step it may cause waits for the next event."""
        if self._source_max:
            self._watermark = min(self._source_max.values()) - self._lateness

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
        if not self._vec_keys:
            return None
        blob = encode_vectors(self._names, self._vec_keys, self._vec_rows)
        self._vec_keys = []
        self._vec_rows = [[] for _ in self._lenses]
        return blob

    def discard_vectors(self) -> None:
        """Drop sampled vectors not yet taken (their batch was aborted)."""
        self._vec_keys = []
        self._vec_rows = [[] for _ in self._lenses]

    def load_shared_model(self, view: bytes) -> list[OutputMessage]:
        """Shared mode: assign with a trainer's model view (:meth:`~segmenter.shared.ModelTrainer.view`) from now on.

        Customers in segments the new view no longer has live (merged, split,
        retired) are re-assigned at once (cause ``model``), as the learning core
        does after a lifecycle event. Returns those changes.

        Raises
        ------
        StateError
            The view is corrupt or for other lenses.
        """
        lenses = decode_view(view, self._names, self._fnames)
        out: list[OutputMessage] = []
        for li, lens in enumerate(self._lenses):
            before = set(lens.registry.live()) if lens.ready else set()
            lens.load_state(lenses[lens.name])
            dead = sorted(n for n in before if not lens.is_live(n))
            if not dead or not lens.ready:
                continue
            store = self._store
            ts = _iso(self._max_t if self._max_t is not None else 0)
            for n in dead:
                for row in store.rows_in_segment(li, n):
                    vals = store.vector(row, store.scored_time(row))
                    raw = np.array(self._pick[li](vals), dtype=np.float64)
                    self._assign(row=row, li=li, lens=lens, raw=raw, vals=vals, cause="model", event_ts=ts, out=out)
        return out

    def model_state(self) -> bytes:
        """Lenses (scalers, models, registries), event-time clock and counters, as bytes."""
        state = {
            "version": STATE_VERSION,
            "lenses": {lens.name: lens.state() for lens in self._lenses},
            "features": self._fnames,
            "clock": (self._max_t, self._watermark, self._next_check, self._released_at, dict(self._source_max)),
            "triggers": None if self._engine is None else self._engine.global_state(),
            "counters": {
                "events": self._events,
                "refine_round": self._refine_round,
                "late": self._late,
                "duplicates": self._duplicates,
                "erasures": self._erasures,
                "changes": dict(self._changes),
                "triggers": dict(self._triggers),
            },
        }
        return pickle.dumps(state, protocol=5)

    def load_model_state(self, data: bytes) -> None:
        """Restore :meth:`model_state` output (customers are untouched).

        Raises
        ------
        StateError
            Wrong version, corrupt data or lenses that differ from the config.
        """
        state = unpickle_versioned(data, "model state", "version", STATE_VERSION)  # our own state topic / file
        if state["features"] != self._fnames or list(state["lenses"]) != self._names:
            raise StateError(
                f"model state lenses {list(state['lenses'])} / features {state['features']} differ from the config's"
            )
        for lens in self._lenses:
            lens.load_state(state["lenses"][lens.name])
        if self._engine is not None and state.get("triggers") is not None:
            # per-customer trigger state already loaded (load_customer may come first) is kept
            self._engine.load_global_state(state["triggers"])
        clock = state["clock"]
        self._max_t, self._watermark, self._next_check, self._released_at = clock[:4]
        if len(clock) > 4:
            self._source_max = dict(clock[4])
        elif self._max_t is not None:
            self._source_max = {None: self._max_t}
        self._dirty_sources.clear()
        c = state["counters"]
        self._events = c["events"]
        self._refine_round = c["refine_round"]
        self._late = c["late"]
        self._duplicates = c["duplicates"]
        self._erasures = c["erasures"]
        self._changes = Counter(c["changes"])
        self._triggers = Counter(c["triggers"])

    def snapshot(self) -> bytes:
        """Everything: :meth:`model_state` plus every customer (features, segments, trigger state)."""
        cols = self._store.columns(self._names)
        engine = None if self._engine is None else self._engine.state()
        return pickle.dumps(
            {"version": STATE_VERSION, "model": self.model_state(), "customers": cols, "triggers": engine}, protocol=5
        )

    @classmethod
    def from_snapshot(cls, config: SegmenterConfig, data: bytes, rules: RuleSet | None = None) -> Segmenter:
        """Rebuild a core from :meth:`snapshot` output.

        Raises
        ------
        StateError
            Wrong version, corrupt data or a snapshot of a different lens setup.
        """
        snap = unpickle_versioned(data, "snapshot", "version", STATE_VERSION)  # our own snapshot file
        seg = cls(config, rules)
        seg.load_model_state(snap["model"])
        seg._store.load_columns(snap["customers"], seg._names)
        if seg._engine is not None and snap["triggers"] is not None:
            seg._engine.load_state(snap["triggers"])
        return seg

    # ----------------------------------------------------------------- views
    def stats(self) -> SegmenterStats:
        """Counters, segment sizes per lens and the watermark."""
        segments: dict[str, list[SegmentSize]] = {}
        for li, lens in enumerate(self._lenses):
            sizes = []
            for n, count in sorted(self._store.segment_counts(li).items()):
                ref = lens.ref(n)
                sizes.append(SegmentSize(ref.id, ref.name, count))
            segments[lens.name] = sizes
        suppressed: dict[str, dict[str, int]] = {}
        if self._engine is not None:
            suppressed = {k: dict(v) for k, v in self._engine.suppressed().items()}
        return SegmenterStats(
            events=self._events,
            late=self._late,
            duplicates=self._duplicates,
            erasures=self._erasures,
            customers=len(self._store),
            changes=dict(sorted(self._changes.items())),
            triggers=dict(sorted(self._triggers.items())),
            suppressed=suppressed,
            segments=segments,
            watermark=None if self._watermark is None else _iso(self._watermark),
        )

    def customer_view(self, customer_id: str) -> CustomerView | None:
        """The customer's segment per lens and the features each lens last clustered (at its last scoring)."""
        row = self._store.row_of(customer_id)
        if row is None:
            return None
        return self._view(customer_id, row)

    def _view(self, customer_id: str, row: int) -> CustomerView:
        store = self._store
        vals = store.vector(row, store.scored_time(row))
        segments: dict[str, SegmentRef | None] = {}
        features: dict[str, dict[str, float]] = {}
        for li, lens in enumerate(self._lenses):
            n = store.segment(row, li)
            segments[lens.name] = lens.ref(n) if n >= 0 else None
            features[lens.name] = {f: round(vals[i], 6) for f, i in zip(self._fnames[li], self._idx[li], strict=True)}
        return CustomerView(customer_id, segments, features)

    def customer_views(self) -> Iterable[CustomerView]:
        """Every customer's view, ordered by customer id."""
        store = self._store
        for cid in sorted(store.customer_ids()):
            row = store.row_of(cid)
            assert row is not None
            yield self._view(cid, row)

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


def _segment_number(segment_id: str) -> int | None:
    _, _, n = segment_id.rpartition("-")
    return int(n) if n.isdigit() else None
