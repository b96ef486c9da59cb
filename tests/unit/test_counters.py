"""segmenter/counters.py: the core's running counts, saved with the model state except ``moved``."""

from __future__ import annotations

from dataclasses import fields

from segmenter.counters import CoreCounters
from segmenter.model_state import Counters


def test_every_saved_counter_round_trips_and_moved_stays_with_the_process() -> None:
    counts = CoreCounters(events=7, refine_round=2, late=3, isolated=1, duplicates=4, erasures=5, after_erasure=6,
                          moved=9)  # fmt: skip
    counts.changes.update({"event": 11, "inactivity": 2})
    counts.triggers["win_back"] += 3
    saved = Counters.from_state(counts.saved().state())  # through the model state's own validation
    other = CoreCounters(moved=1)
    other.load(saved)
    assert {f.name: getattr(other, f.name) for f in fields(Counters)} == {
        f.name: getattr(counts, f.name) for f in fields(Counters)
    }
    assert other.moved == 1, "moved counts this process's events only"
    kept = counts.saved()
    counts.changes["event"] += 1
    assert other.changes["event"] == 11, "loaded counts are a copy"
    assert kept.changes["event"] == 11 and type(kept.changes) is dict, "the saved form is a copy, plain dicts"


def test_the_saved_form_names_every_counter_but_moved() -> None:
    assert {f.name for f in fields(CoreCounters)} - {f.name for f in fields(Counters)} == {"moved"}
