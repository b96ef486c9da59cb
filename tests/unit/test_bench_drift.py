"""bench/quality.py's drift following: the label held when a drift starts counts from that start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.quality import _drift, _Trace
from producer.simulator import TruthEntry

DAY = 86_400.0


def _sim(*entries: TruthEntry) -> Any:
    return SimpleNamespace(truth=list(entries))


def _trace(labels: list[tuple[str, str]], timeline: dict[str, list[tuple[float, tuple[str | None, ...]]]]) -> _Trace:
    """A trace whose prequential votes map each joint label to a persona, and the drifters' timelines."""
    tr = _Trace()
    for label, persona in labels:
        tr.labels.append([label])
        tr.persona.append(persona)
    tr.timeline.update(timeline)
    return tr


def test_a_drifter_already_in_a_label_of_its_new_persona_follows_at_once() -> None:
    tr = _trace([("a", "p"), ("a", "p"), ("b", "q"), ("b", "q")],
                {"c1": [(0.0, ("b",))],  # in q's label since before the drift to q: delay 0, no move needed
                 "c2": [(0.0, ("a",)), (12 * DAY, ("b",))],  # moves to q's label 2 days after its drift
                 "c3": [(0.0, ("a",))]})  # never reaches q's label  # fmt: skip
    sim = _sim(TruthEntry("c1", "q", 5 * DAY, "drift"), TruthEntry("c2", "q", 10 * DAY, "drift"),
               TruthEntry("c3", "q", 10 * DAY, "drift"))  # fmt: skip
    got = _drift(sim, tr)
    assert (got["drifted"], got["followed"]) == (3, 2)
    assert got["delays_days"] == [0.0, 2.0]


def test_a_label_left_before_the_drift_does_not_count() -> None:
    tr = _trace([("a", "p"), ("b", "q"), ("b", "q")], {"c1": [(0.0, ("b",)), (1 * DAY, ("a",))]})
    got = _drift(_sim(TruthEntry("c1", "q", 5 * DAY, "drift")), tr)
    assert got["followed"] == 0
