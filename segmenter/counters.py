"""What the core counts as it goes: one :class:`CoreCounters` per core, shared by its collaborators.

The facade (:class:`~segmenter.pipeline.Segmenter`) makes it; the move emitter
(:mod:`segmenter.emission`), the erasure handler (:mod:`segmenter.erasing`) and
the watermark's work (:mod:`segmenter.timed_work`) add to it; the compiled loop
(:mod:`segmenter.kernel`) carries ``events``, ``duplicates`` and ``isolated`` in
its state array between its stops. The model state holds all but ``moved``
(:class:`~segmenter.model_state.Counters`, the frozen, validated form).

Examples
--------
>>> c = CoreCounters()
>>> c.changes["event"] += 2
>>> c.late += 1
>>> saved = c.saved()
>>> (saved.late, saved.changes)
(1, {'event': 2})
>>> fresh = CoreCounters()
>>> fresh.load(saved)
>>> fresh.changes["event"]
2
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from segmenter.model_state import Counters

__all__ = ["CoreCounters"]


@dataclass
class CoreCounters:
    """The core's running counts (mutable; see the module).

    The fields of :class:`~segmenter.model_state.Counters` (the saved, frozen form; :meth:`saved` and
    :meth:`load` copy every one of them by name), plus ``moved``.
    """

    events: int = 0
    """Events applied or consumed (erasures included; duplicates, late and dropped ones not)."""
    refine_round: int = 0
    late: int = 0
    isolated: int = 0
    duplicates: int = 0
    erasures: int = 0
    after_erasure: int = 0
    """Events of an erased customer at or before its erasure, dropped without output."""
    moved: int = 0
    """Events of known customers from another input partition than before (this process only: not saved)."""
    changes: Counter[str] = field(default_factory=Counter)
    """Segment changes per cause."""
    triggers: Counter[str] = field(default_factory=Counter)
    """Campaign triggers emitted per campaign."""

    def saved(self) -> Counters:
        """The counters the model state holds (a copy)."""
        values: dict[str, Any] = {}
        for f in fields(Counters):
            value = getattr(self, f.name)
            values[f.name] = dict(value) if isinstance(value, Counter) else value
        return Counters(**values)

    def load(self, saved: Counters) -> None:
        """Take the saved counters (``moved`` is this process's own and kept)."""
        for f in fields(Counters):
            value = getattr(saved, f.name)
            setattr(self, f.name, Counter(value) if isinstance(value, dict) else value)
