"""From decided moves to output messages, in order: segment changes and the campaign triggers they fire.

The compiled loop (:mod:`segmenter.kernel`) and the re-scorer
(:mod:`segmenter.rescoring`) decide moves and apply them to the store's lens
columns, buffering them in a :class:`~segmenter.moves.MoveBuffer`;
:class:`MoveEmitter` turns a buffer into its ``segment_change`` messages (one
:class:`~segmenter.change_blocks.SegmentChanges` block where no campaign rule
reads them), each followed by the triggers it fires when there are rules, and
counts them. A call's messages gather in a :class:`Spool`, which hands them to
the caller's :data:`OutputSink` a part at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from segmenter.features import BASE_EPOCH, FEATURE_NAMES
from segmenter.moves import M_EVENT, M_LAST, M_ROW, MOVE_CAPACITY, MoveBuffer

if TYPE_CHECKING:
    from segmenter.change_blocks import ChangeBuilder, Output
    from segmenter.counters import CoreCounters
    from segmenter.events import CustomerEvent
    from segmenter.features import FeatureStore
    from segmenter.outputs import CampaignTrigger, SegmentChange
    from segmenter.triggers.engine import TriggerEngine

__all__ = ["MoveEmitter", "OutputSink", "Spool"]

OutputSink = Callable[[list["Output"]], None]
"""Receives a call's output messages in order, a part at a time, as soon as they exist (``sink=`` of
:meth:`~segmenter.pipeline.Segmenter.process_batch`, :meth:`~segmenter.pipeline.Segmenter.advance_to` and
:meth:`~segmenter.pipeline.Segmenter.load_shared_model`).

A part holds at most one move buffer's messages (:data:`~segmenter.moves.MOVE_CAPACITY` moves, with their
campaign triggers) besides the lifecycle and trigger messages before them, so what a mass move holds at once
is bounded by that, not by the number of moves."""


class Spool(list["Output"]):
    """One call's output messages in order; with a sink, each :meth:`hand_over` gives it what is held."""

    def __init__(self, sink: OutputSink | None) -> None:
        super().__init__()
        self.sink = sink

    def hand_over(self) -> None:
        """Give the held messages to the sink and forget them (without a sink, keep them: the call returns them)."""
        if self.sink is not None and self:
            part = self[:]
            self.clear()
            self.sink(part)


class MoveEmitter:
    """Buffered moves to their messages, in order (see the module).

    Parameters
    ----------
    store
        The feature store (its ``dirty`` flags: a moved or triggered customer's record is written).
    builder
        Builds a buffer's block of segment changes.
    counters
        Counts the changes per cause and the triggers per campaign.
    engine
        The current trigger engine (``None``: no campaign rules); a callable, since the rules can be replaced.
    lateness
        The allowed lateness in seconds: no later change of a customer is older than its latest time minus it.
    """

    def __init__(self, store: FeatureStore, builder: ChangeBuilder, counters: CoreCounters,
                 engine: Callable[[], TriggerEngine | None], lateness: int) -> None:  # fmt: skip
        self._store = store
        self._builder = builder
        self._counters = counters
        self._engine = engine
        self._lateness = lateness

    def emit(self, buf: MoveBuffer, out: list[Output], *, cause: str,
             events: Sequence[CustomerEvent] | None = None, stamp: int | None = None) -> None:  # fmt: skip
        """The buffered moves' ``segment_change`` messages and campaign triggers, in order; clears ``buf``.

        The moves are already applied to the store's lens columns (:mod:`segmenter.moves`); here the lenses'
        membership counts follow. ``cause`` is every move's (``model`` where the old segment is no longer
        live); ``events`` are the batch the moves' event indices point into; ``stamp`` (relative seconds) is
        every move's ``event_ts`` (``None``: its own time, the event's ``ts`` for an event's move). Without
        campaign rules the messages go to ``out`` as one :class:`~segmenter.change_blocks.SegmentChanges`
        block (built into messages only where the caller wants messages,
        :func:`~segmenter.change_blocks.messages_of`).
        """
        n = len(buf)
        if not n:
            return
        block = self._builder.block(buf, cause, events, stamp)
        self._counters.changes.update(block.cause_counts())
        engine = self._engine()
        if engine is None:
            out.append(block)
        else:
            self._with_triggers(engine, block.messages(), buf, events, out)
        self._store.dirty[buf.ints[:n, M_ROW]] = True
        buf.clear()

    def emit_parts(self, buf: MoveBuffer, out: Spool, *, cause: str, stamp: int | None) -> None:
        """A re-scoring pass's moves (the :class:`~segmenter.rescoring.Rescorer`'s hand-over), a move buffer's
        worth at a time.

        Each part's block goes to ``out``'s sink before the next part's is built, so a mass move holds at
        most :data:`~segmenter.moves.MOVE_CAPACITY` moves' outputs at once; the outputs and their order are
        those of one :meth:`emit` of the whole buffer (a move's message depends on the moves before it
        only through the lens counts and trigger state, which are updated in the same order).
        """
        for part in buf.parts(MOVE_CAPACITY):
            self.emit(part, out, cause=cause, stamp=stamp)
            out.hand_over()

    def count_triggers(self, triggers: Iterable[CampaignTrigger]) -> None:
        """Count emitted triggers per campaign; their customers' records (trigger state) are dirty."""
        store = self._store
        for tr in triggers:
            self._counters.triggers[tr.campaign] += 1
            row = store.row_of(tr.customer_id)
            if row is not None:
                store.dirty[row] = True

    def _with_triggers(self, engine: TriggerEngine, changes: list[SegmentChange], buf: MoveBuffer,
                       events: Sequence[CustomerEvent] | None, out: list[Output]) -> None:  # fmt: skip
        """Each change followed by the campaign triggers it fires, in order."""
        n = len(changes)
        ints = buf.ints[:n]
        floors = (ints[:, M_LAST] - self._lateness + BASE_EPOCH).astype(np.float64).tolist()
        evs = ints[:, M_EVENT].tolist()
        for change, values, ev, floor in zip(changes, buf.values().tolist(), evs, floors, strict=True):
            out.append(change)
            event = events[ev] if events is not None and ev >= 0 else None
            # no later change of this customer is older than its latest time minus the lateness
            trig = engine.evaluate(change, dict(zip(FEATURE_NAMES, values, strict=True)), event, floor)
            self.count_triggers(trig)
            out.extend(trig)
