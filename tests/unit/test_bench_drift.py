"""bench/quality.py's drift following: the label held when a drift starts counts from that start."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.quality import _batch_of, _drift, _followed_at_end, _Trace
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


def test_at_the_end_batch_k_means_on_the_features_is_the_reference() -> None:
    """Drifters whose features moved to the new persona's but whose label stayed: batch follows, ours does not."""
    lc = SimpleNamespace(name="value", features=["spend", "orders"], heavy_features=[])
    config: Any = SimpleNamespace(lenses=[lc])
    rows = [(f"p{i}", "p", (float(i % 3), 1.0), "a") for i in range(10)]
    rows += [(f"q{i}", "q", (50.0 + i % 3, 9.0), "b") for i in range(7)]
    rows += [(f"d{i}", "q", (50.0 + i, 9.0), "a") for i in range(3)]  # drifted to q, still labelled as p's
    views = [SimpleNamespace(customer_id=c, features={"value": dict(zip(lc.features, x, strict=True))})
             for c, _, x, _ in rows]  # fmt: skip
    truth = [persona for _, persona, _, _ in rows]
    joint: list[tuple[str | None, ...]] = [(label,) for *_, label in rows]
    sim: Any = SimpleNamespace(truth=[TruthEntry(c, persona, 0.0, "arrival") for c, persona, _, _ in rows]
                               + [TruthEntry(f"d{i}", "q", 5 * DAY, "drift") for i in range(3)])  # fmt: skip
    batch = [_batch_of(lc, views, [label for (label,) in joint]) for lc in config.lenses]
    got = _followed_at_end(sim, views, joint, truth, batch)
    assert got == {"drifted": 3, "ours": 0.0, "batch": 1.0}
    followed: list[tuple[str | None, ...]] = [(label if c[0] != "d" else "b",) for c, _, _, label in rows]
    assert _followed_at_end(sim, views, followed, truth, batch)["ours"] == 1.0
