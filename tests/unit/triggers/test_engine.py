"""The engine: payload templating, idempotent trigger ids, state round trips, release order."""

from __future__ import annotations

import doctest
import gc
import json
import tracemalloc
from datetime import datetime

import orjson
import pytest

import segmenter.triggers.controls
import segmenter.triggers.engine
import segmenter.triggers.expressions
import segmenter.triggers.rules
from segmenter.errors import StateError
from segmenter.outputs import CampaignTrigger, SegmentChange, encode
from segmenter.triggers.engine import TriggerEngine, make_trigger_id

from .helpers import DAY, FEATURES, HIGH, HIGH2, LOW, MID, T0, change, event, iso, rule, ruleset

BERLIN_HOLD = {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin", "action": "hold"}


@pytest.mark.parametrize(
    "module",
    [segmenter.triggers.controls, segmenter.triggers.engine, segmenter.triggers.expressions, segmenter.triggers.rules],
)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- payload


def test_payload_templating() -> None:
    payload = {
        "subject": "{segment.name}: you spent {features.spend:,.2f} (orders of {features.aov:.0f})",
        "spend": "{features.spend}",
        "came_from": "{from_segment.id}/{from_segment.name}",
        "who": ["{customer_id}", "{campaign}", "{rule}", "{channel}", "{lens}", "{cause}"],
        "event": {"type": "{event.type}", "category": "{event.category}", "id": "{event.id}"},
        "fixed": {"percent": 15, "flag": True, "ratio": 0.5},
        "literal": "{{not a placeholder}}",
        "when": "{event_ts}",
    }
    engine = TriggerEngine(ruleset(rule(payload=payload)))
    feats = {**FEATURES, "spend": 1234.5}
    (t,) = engine.evaluate(change(T0, HIGH, None), feats, event(T0, "purchase", category="shoes"))
    assert t.payload == {
        "subject": "high spend · frequent: you spent 1,234.50 (orders of 96)",
        "spend": 1234.5,  # one bare placeholder keeps the number
        "came_from": "/",  # no previous segment
        "who": ["c1", "vip-invite", "vip", "email", "value", "event"],
        "event": {"type": "purchase", "category": "shoes", "id": f"ev-{T0:.0f}"},
        "fixed": {"percent": 15, "flag": True, "ratio": 0.5},
        "literal": "{not a placeholder}",
        "when": iso(T0),
    }
    json.loads(encode(t))  # the whole message is valid JSON


def test_payload_with_a_missing_feature_suppresses_the_trigger() -> None:
    engine = TriggerEngine(ruleset(rule(payload={"x": "{features.email_engagement:.1f}"})))
    assert engine.evaluate(change(T0, HIGH, LOW, features={}), {"spend": 1.0}, None) == []
    assert engine.suppressed() == {"vip-invite": {"missing_feature": 1}}
    assert engine.customer_state("c1") is None  # nothing delivered, nothing remembered


# --------------------------------------------------------------------------- ids


def test_trigger_id_is_a_stable_hash_of_the_documented_parts() -> None:
    # a golden value: ids must not change between processes or releases
    assert make_trigger_id("c1", "winback", "e9") == "34c62c96a6d1ff129b94027c59407309"
    by_event = make_trigger_id("c1", "winback", "e9")
    assert by_event != make_trigger_id("c1", "winback", "e8")
    assert by_event != make_trigger_id("c2", "winback", "e9")
    assert by_event != make_trigger_id("c1", "vip", "e9")
    by_time = make_trigger_id("c1", "winback", (1.0, "value", "value-2"))
    assert by_time == "83f901b69bc08681aae4fb8df72bb400"  # golden too: the time-keyed form
    assert by_time != make_trigger_id("c1", "winback", (1.000001, "value", "value-2"))
    assert by_time != make_trigger_id("c1", "winback", (1.0, "engagement", "value-2"))
    assert by_time != make_trigger_id("c1", "winback", (1.0, "value", "value-3"))
    # no ambiguity from separators inside the parts
    assert make_trigger_id("a", "b c", "d") != make_trigger_id("a b", "c", "d")


def _script() -> list[tuple[SegmentChange, bool]]:
    """A little history of two customers (change, with an event?)."""
    return [
        (change(T0, HIGH, LOW), True),
        (change(T0, HIGH, None, customer="c2", cause="inactivity"), False),
        (change(T0 + DAY, MID, HIGH), True),
        (change(T0 + 2 * DAY, HIGH2, MID), True),
        (change(T0 + 3 * DAY, MID, HIGH, customer="c2", cause="inactivity"), False),
        (change(T0 + 40 * DAY, HIGH, MID, customer="c2", cause="inactivity"), False),
    ]


def _run(engine: TriggerEngine, script: list[tuple[SegmentChange, bool]]) -> list[CampaignTrigger]:
    out: list[CampaignTrigger] = []
    for ch, with_event in script:
        ev = event(T0, "purchase") if with_event else None
        out += engine.evaluate(ch, FEATURES, ev)
        out += engine.release(datetime.fromisoformat(ch.event_ts).timestamp())  # later changes are not earlier
    return out


def _rules() -> list[dict[str, object]]:
    return [
        rule(name="vip", cooldown="1d", reentry={"mode": "always"}),
        rule(name="back", campaign="welcome-back", on={"lens": "value", "move": {"from": "typical", "to": "*"}}),
    ]


def test_replaying_the_same_input_gives_the_same_ids() -> None:
    first = _run(TriggerEngine(ruleset(*_rules())), _script())
    second = _run(TriggerEngine(ruleset(*reversed(_rules()))), _script())  # rule order in the file does not matter
    assert [t.trigger_id for t in first] == [t.trigger_id for t in second]
    assert [(t.customer_id, t.rule) for t in first] == [
        ("c1", "vip"),
        ("c2", "vip"),
        ("c1", "back"),
        ("c1", "vip"),
        ("c2", "back"),
        ("c2", "vip"),
    ]  # equal priorities: by rule name
    assert len({t.trigger_id for t in first}) == len(first)
    inactivity = [t for t in first if t.customer_id == "c2"]
    assert all(t.cause_event_id is None for t in inactivity)
    assert inactivity[0].trigger_id == make_trigger_id("c2", "vip-invite", (T0, "value", "value-3"))


# --------------------------------------------------------------------------- state


def _split(script: list[tuple[SegmentChange, bool]], n: int) -> tuple[list[tuple[SegmentChange, bool]], ...]:
    return script[:n], script[n:]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_customer_state_round_trip_gives_identical_later_outputs(cut: int) -> None:
    rules = ruleset(*_rules(), cap={"max": 2, "period": "30d"})
    head, tail = _split(_script(), cut)
    straight = TriggerEngine(rules)
    _run(straight, head)
    expected = _run(straight, tail)

    before = TriggerEngine(rules)
    _run(before, head)
    restored = TriggerEngine(rules)
    for cid in ("c1", "c2"):
        state = before.customer_state(cid)
        if state is not None:
            restored.load_customer_state(cid, orjson.loads(orjson.dumps(state)))  # through JSON
            assert len(orjson.dumps(state)) < 1024
    assert _run(restored, tail) == expected


def test_whole_state_round_trip_keeps_held_triggers_and_counters() -> None:
    rules = ruleset(rule(quiet_hours=BERLIN_HOLD, reentry={"mode": "always"}, cooldown="1h"))
    night = T0 + 10 * 3600  # 23:00 Berlin
    engine = TriggerEngine(rules)
    engine.evaluate(change(night, HIGH, LOW), FEATURES, None)
    engine.evaluate(change(night + 60, HIGH, LOW, customer="c0"), FEATURES, None)
    engine.evaluate(change(night + 120, HIGH2, HIGH), FEATURES, None)  # inside the held trigger's cooldown
    state = engine.state()
    assert list(state["customers"]) == ["c0", "c1"]
    assert state["suppressed"] == {"vip-invite": {"cooldown": 1}}
    restored = TriggerEngine(rules)
    restored.load_state(json.loads(json.dumps(state)))
    assert restored.state() == state
    released = restored.release(night + DAY)
    assert released == engine.release(night + DAY)
    assert [t.customer_id for t in released] == ["c0", "c1"]  # same release time: ordered by customer
    assert restored.pending() == 0


def test_global_state_leaves_customers_out_and_in_place() -> None:
    """The engine-wide part travels with model snapshots; customers travel in their own records."""
    rules = ruleset(rule(quiet_hours=BERLIN_HOLD, reentry={"mode": "always"}, cooldown="1h"))
    night = T0 + 10 * 3600
    engine = TriggerEngine(rules)
    engine.evaluate(change(night, HIGH, LOW), FEATURES, None)
    engine.evaluate(change(night + 120, HIGH2, HIGH), FEATURES, None)
    global_state = engine.global_state()
    assert "customers" not in global_state
    assert global_state["suppressed"] == {"vip-invite": {"cooldown": 1}}
    restored = TriggerEngine(rules)
    restored.load_customer_state("c1", engine.customer_state("c1") or {})
    restored.load_global_state(json.loads(json.dumps(global_state)))  # after a customer: keeps it
    assert restored.state() == engine.state()
    assert restored.release(night + DAY) == engine.release(night + DAY)


def test_per_customer_state_carries_held_triggers() -> None:
    rules = ruleset(rule(quiet_hours=BERLIN_HOLD))
    night = T0 + 10 * 3600
    engine = TriggerEngine(rules)
    engine.evaluate(change(night, HIGH, LOW), FEATURES, None)
    state = engine.customer_state("c1")
    assert state is not None and len(state["h"]) == 1
    other = TriggerEngine(rules)  # e.g. the process that takes over the partition
    other.load_customer_state("c1", state)
    other.load_customer_state("c1", state)  # loading twice does not duplicate
    (t,) = other.release(night + DAY)
    assert t.customer_id == "c1" and other.release(night + 2 * DAY) == []


def test_erase_forgets_the_customer_and_held_triggers() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours=BERLIN_HOLD, reentry={"mode": "once"})))
    night = T0 + 10 * 3600
    engine.evaluate(change(night, HIGH, LOW), FEATURES, None)
    assert engine.customer_state("c1") is not None
    engine.erase("c1")
    assert engine.customer_state("c1") is None
    assert engine.release(night + DAY) == []
    assert len(engine.evaluate(change(night + DAY / 2, HIGH, LOW), FEATURES, None)) == 1  # 'once' starts over


def test_history_is_pruned_below_the_watermark() -> None:
    engine = TriggerEngine(ruleset(rule(cooldown="1d", reentry={"mode": "after_period", "period": "2d"})))
    engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)
    engine.release(T0 + 3 * DAY)
    engine.evaluate(change(T0 + 3 * DAY, MID, HIGH), FEATURES, None)
    assert engine.customer_state("c1") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"v": 99},
        {"v": 1, "f": [[1.0]]},
        {"v": 1, "r": {"vip": "soon"}},
        {"v": 1, "f": [[float("nan"), "x"]]},
        {"v": 1, "h": [{"at": 1.0}]},
        {"v": 1, "h": [{"at": 1.0, "ts": 0.0, "rule": "vip", "prev": None, "msg": {"trigger_id": "x"}}]},
    ],
)
def test_malformed_customer_state_is_a_state_error(bad: dict[str, object]) -> None:
    with pytest.raises(StateError):
        TriggerEngine(ruleset(rule())).load_customer_state("c1", bad)


def test_malformed_engine_state_is_a_state_error() -> None:
    engine = TriggerEngine(ruleset(rule()))
    for bad in ({"v": 2}, {"v": 1, "customers": []}, {"v": 1, "suppressed": {"a": 3}}, {"v": 1, "watermark": "x"}):
        with pytest.raises(StateError):
            engine.load_state(bad)


def test_delivery_history_costs_under_a_hundred_bytes_per_customer() -> None:
    """Packed per customer (one bytes object), not a dataclass with a list of tuples and a dict (about 500 B)."""
    engine = TriggerEngine(ruleset(rule(reentry={"mode": "once"}, cooldown="30d"), cap={"max": 2, "period": "7d"}))
    n = 20_000
    changes = [change(T0 + i, HIGH, LOW, customer=f"c{i:07d}") for i in range(n)]
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    fired = sum(len(engine.evaluate(ch, FEATURES, None)) for ch in changes)
    gc.collect()
    used = (tracemalloc.get_traced_memory()[0] - base) / n  # the ids are the changes' (held by the test)
    tracemalloc.stop()
    assert fired == n
    assert used < 100, used
    assert engine.customer_state("c0000007") == {"v": 1, "f": [[T0 + 7, "vip-invite"]], "r": {"vip": T0 + 7}}
