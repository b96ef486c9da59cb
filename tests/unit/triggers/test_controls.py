"""Delivery controls: cooldown, cap with priority, re-entry, quiet hours (across DST), matching."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from segmenter.triggers.controls import (
    QuietHours,
    cap_blocks,
    cooldown_blocks,
    format_duration,
    parse_clock,
    parse_duration,
)
from segmenter.triggers.engine import TriggerEngine

from .helpers import DAY, FEATURES, HIGH, HIGH2, LAPSED, LOW, MID, T0, change, event, rule, ruleset

HOUR = 3_600.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- small pieces


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("1d12h", 129600), (90, 90), ("0s", 0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["-1d", -1, "7 days", "d", "", True, None, float("inf")])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration_round_trips() -> None:
    for text in ("30m", "12h", "7d", "14d", "1d12h", "45s", "180d"):
        assert format_duration(parse_duration(text)) == text


def test_parse_clock() -> None:
    assert parse_clock("7:05").hour == 7
    with pytest.raises(ValueError, match="quoted"):
        parse_clock(1260)


def test_cooldown_blocks_on_both_sides() -> None:
    history = [(100.0, "a")]
    assert cooldown_blocks(history, "a", 150.0, 60.0)
    assert cooldown_blocks(history, "a", 50.0, 60.0)  # an earlier, out-of-order delivery
    assert not cooldown_blocks(history, "a", 160.0, 60.0)  # exactly the cooldown later is allowed
    assert not cooldown_blocks(history, "b", 150.0, 60.0)


def test_cap_blocks_any_window() -> None:
    assert not cap_blocks([0.0], 5.0, limit=2, period=10.0)
    assert cap_blocks([0.0, 5.0], 9.0, limit=2, period=10.0)
    assert not cap_blocks([0.0, 5.0], 10.0, limit=2, period=10.0)  # [0, 10) holds two, [5, 15) holds two
    assert cap_blocks([5.0, 20.0], 12.0, limit=2, period=10.0) is False
    assert cap_blocks([5.0, 14.0], 12.0, limit=2, period=10.0)  # window [5, 15) would hold three
    assert cap_blocks([13.0, 14.0], 12.0, limit=2, period=10.0)  # later deliveries count too


# --------------------------------------------------------------------------- cooldown


def test_cooldown_per_customer_per_campaign() -> None:
    rs = ruleset(rule(cooldown="7d", reentry={"mode": "always"}))
    engine = TriggerEngine(rs)
    assert len(engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)) == 1
    assert engine.evaluate(change(T0 + DAY, HIGH2, HIGH), FEATURES, None) == []
    assert len(engine.evaluate(change(T0 + DAY, HIGH, LOW, customer="c2"), FEATURES, None)) == 1  # other customer
    assert engine.evaluate(change(T0 + 7 * DAY - 1, HIGH, HIGH2), FEATURES, None) == []
    assert len(engine.evaluate(change(T0 + 7 * DAY, HIGH2, HIGH), FEATURES, None)) == 1  # exactly 7 days later
    assert engine.suppressed() == {"vip-invite": {"cooldown": 2}}


def test_cooldown_is_shared_by_rules_of_one_campaign() -> None:
    rs = ruleset(
        rule(name="a", cooldown="1d", reentry={"mode": "always"}),
        rule(name="b", on={"lens": "value", "enter": "*lapsed*"}, cooldown="1d"),
    )
    engine = TriggerEngine(rs)
    assert [t.rule for t in engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)] == ["a"]
    # LAPSED ('lapsed · high spend') matches both; b is stopped by a's delivery of the same campaign
    assert engine.evaluate(change(T0 + HOUR, LAPSED, HIGH), FEATURES, None) == []
    assert engine.suppressed()["vip-invite"] == {"cooldown": 2}
    # a day later a may fire again, and its delivery keeps b out once more
    assert [t.rule for t in engine.evaluate(change(T0 + DAY, LAPSED, MID), FEATURES, None)] == ["a"]


# --------------------------------------------------------------------------- cap and priority


def _capped_engine(max_: int = 1) -> TriggerEngine:
    return TriggerEngine(
        ruleset(
            rule(name="low-prio", campaign="newsletter", priority=1, reentry={"mode": "always"}),
            rule(name="b-high", campaign="vip-b", priority=9, reentry={"mode": "always"}),
            rule(name="a-high", campaign="vip-a", priority=9, reentry={"mode": "always"}),
            cap={"max": max_, "period": "7d"},
        )
    )


def test_cap_highest_priority_wins_ties_by_name() -> None:
    engine = _capped_engine(max_=1)
    assert [t.rule for t in engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)] == ["a-high"]
    assert engine.suppressed() == {"newsletter": {"cap": 1}, "vip-b": {"cap": 1}}


def test_cap_counts_across_changes_and_lenses_within_the_period() -> None:
    engine = _capped_engine(max_=2)
    assert [t.rule for t in engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)] == ["a-high", "b-high"]
    assert engine.evaluate(change(T0 + 6 * DAY, HIGH2, HIGH), FEATURES, None) == []
    fired = engine.evaluate(change(T0 + 7 * DAY, HIGH, HIGH2), FEATURES, None)
    assert [t.rule for t in fired] == ["a-high", "b-high"]
    assert engine.suppressed()["newsletter"] == {"cap": 3}


# --------------------------------------------------------------------------- re-entry


def test_reentry_after_exit() -> None:
    engine = TriggerEngine(ruleset(rule()))  # default mode after_exit
    assert len(engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)) == 1
    # moving between two matching segments is not a new entry
    assert engine.evaluate(change(T0 + DAY, HIGH2, HIGH), FEATURES, None) == []
    assert engine.suppressed() == {"vip-invite": {"reentry": 1}}
    # leaving and coming back fires again
    assert engine.evaluate(change(T0 + 2 * DAY, MID, HIGH2), FEATURES, None) == []
    assert len(engine.evaluate(change(T0 + 2 * DAY + 1, HIGH, MID), FEATURES, None)) == 1


def test_reentry_after_period() -> None:
    engine = TriggerEngine(ruleset(rule(reentry={"mode": "after_period", "period": "30d"})))
    assert len(engine.evaluate(change(T0, HIGH, LOW), FEATURES, None)) == 1
    assert engine.evaluate(change(T0 + DAY, MID, HIGH), FEATURES, None) == []
    assert engine.evaluate(change(T0 + 2 * DAY, HIGH, MID), FEATURES, None) == []  # left and came back: too soon
    assert engine.evaluate(change(T0 + 29 * DAY, HIGH2, HIGH), FEATURES, None) == []
    assert len(engine.evaluate(change(T0 + 30 * DAY, HIGH, HIGH2), FEATURES, None)) == 1  # within, but 30 days on
    assert engine.suppressed() == {"vip-invite": {"reentry": 2}}


def test_reentry_once_and_always() -> None:
    once = TriggerEngine(ruleset(rule(reentry={"mode": "once"})))
    always = TriggerEngine(ruleset(rule(reentry={"mode": "always"})))
    moves = [(LOW, HIGH), (HIGH, HIGH2), (HIGH2, MID), (MID, HIGH)]
    counts = {"once": 0, "always": 0}
    for i, (frm, to) in enumerate(moves):
        counts["once"] += len(once.evaluate(change(T0 + i * DAY, to, frm), FEATURES, None))
        counts["always"] += len(always.evaluate(change(T0 + i * DAY, to, frm), FEATURES, None))
    assert counts == {"once": 1, "always": 3}


def test_exit_and_move_rules() -> None:
    rs = ruleset(
        rule(name="left-high", campaign="x", on={"lens": "value", "exit": "*high spend*"}),
        rule(
            name="lapsing",
            campaign="y",
            on={"lens": "value", "move": {"from": ["value-3", "value-4"], "to": "*lapsed*"}},
        ),
    )
    engine = TriggerEngine(rs)
    assert engine.evaluate(change(T0, HIGH2, HIGH), FEATURES, None) == []  # still in high spend
    fired = engine.evaluate(change(T0 + DAY, LAPSED, HIGH2), FEATURES, None)
    # LAPSED's name contains "high spend" too: not an exit from the high-spend group
    assert [(t.rule, t.segment.id) for t in fired] == [("lapsing", "value-5")]
    fired = engine.evaluate(change(T0 + 2 * DAY, MID, LAPSED), FEATURES, None)
    assert [(t.rule, t.segment.id) for t in fired] == [("left-high", "value-5")]  # exit names the segment left


def test_causes_filter_and_erasure_never_fires() -> None:
    engine = TriggerEngine(ruleset(rule(reentry={"mode": "always"})))
    assert engine.evaluate(change(T0, HIGH, LOW, cause="model"), FEATURES, None) == []
    assert len(engine.evaluate(change(T0, HIGH, LOW, cause="inactivity"), FEATURES, None)) == 1
    assert engine.customer_state("c1") is not None
    assert engine.evaluate(change(T0 + 1, None, HIGH, cause="erasure"), FEATURES, None) == []
    assert engine.customer_state("c1") is None
    model = TriggerEngine(ruleset(rule(causes=["model"])))
    assert len(model.evaluate(change(T0, HIGH, LOW, cause="model"), FEATURES, None)) == 1


# --------------------------------------------------------------------------- predicates


def test_feature_and_event_predicates() -> None:
    rs = ruleset(
        rule(
            when=[
                "spend between 500 and 1000",
                "recency_days < 30",
                "event.type in [purchase, refund]",
                "event.category != gift cards",
            ],
            reentry={"mode": "always"},
        )
    )
    engine = TriggerEngine(rs)
    ev = event(T0, "purchase", category="shoes")
    assert len(engine.evaluate(change(T0, HIGH, LOW), FEATURES, ev)) == 1
    assert engine.evaluate(change(T0, HIGH, LOW), {**FEATURES, "spend": 1000.5}, ev) == []
    assert engine.evaluate(change(T0, HIGH, LOW), {**FEATURES, "recency_days": 30.0}, ev) == []
    assert engine.evaluate(change(T0, HIGH, LOW), FEATURES, event(T0, "page_view")) == []
    assert engine.evaluate(change(T0, HIGH, LOW), FEATURES, event(T0, "purchase", category="gift cards")) == []
    assert len(engine.evaluate(change(T0, HIGH, LOW), FEATURES, event(T0, "refund"))) == 1  # no category: != passes


def test_event_predicates_without_an_event_fail_unless_the_rule_says_pass() -> None:
    fail = TriggerEngine(ruleset(rule(when=["event.type == purchase"])))
    passes = TriggerEngine(ruleset(rule(when=["event.type == purchase"], no_event="pass")))
    inactivity = change(T0, HIGH, LOW, cause="inactivity")
    assert fail.evaluate(inactivity, FEATURES, None) == []
    assert len(passes.evaluate(inactivity, FEATURES, None)) == 1


def test_features_fall_back_to_the_change_and_missing_ones_are_counted() -> None:
    engine = TriggerEngine(ruleset(rule(when=["conversion > 0.1"], reentry={"mode": "always"})))
    assert engine.evaluate(change(T0, HIGH, LOW), {"spend": 1.0}, None) == []
    assert engine.suppressed() == {"vip-invite": {"missing_feature": 1}}
    with_change = change(T0, HIGH, LOW, features={"conversion": 0.5})
    assert len(engine.evaluate(with_change, {"conversion": float("nan")}, None)) == 1  # NaN ignored, change's used


# --------------------------------------------------------------------------- quiet hours, across DST

BERLIN = {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin"}


def test_quiet_hours_hold_until_they_end_across_spring_forward() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours={**BERLIN, "action": "hold"})))
    at = utc(2026, 3, 28, 22, 0)  # 23:00 CET, the night clocks go forward (02:00 -> 03:00)
    assert engine.evaluate(change(at, HIGH, LOW), FEATURES, None) == []
    assert engine.pending() == 1
    release = utc(2026, 3, 29, 6, 0)  # 08:00 CEST; a fixed +01:00 offset would say 07:00Z
    assert engine.release(release - 1) == []
    (t,) = engine.release(release)
    assert (t.rule, t.event_ts) == ("vip", "2026-03-28T22:00:00+00:00")  # event_ts stays the change's time
    assert engine.pending() == 0
    assert engine.release(release + DAY) == []


def test_quiet_hours_hold_across_fall_back() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours={**BERLIN, "action": "hold"})))
    at = utc(2026, 10, 24, 21, 0)  # 23:00 CEST, the night clocks go back (03:00 -> 02:00)
    assert engine.evaluate(change(at, HIGH, LOW), FEATURES, None) == []
    assert engine.release(utc(2026, 10, 25, 6, 59)) == []  # 07:59 CET
    assert len(engine.release(utc(2026, 10, 25, 7, 0))) == 1  # 08:00 CET, 11 hours after 23:00 CEST


def test_quiet_hours_drop_across_spring_forward() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours={**BERLIN, "action": "drop"}, reentry={"mode": "always"})))
    assert engine.evaluate(change(utc(2026, 3, 29, 5, 30), HIGH, LOW), FEATURES, None) == []  # 07:30 CEST: quiet
    assert len(engine.evaluate(change(utc(2026, 3, 29, 6, 0), HIGH, LOW), FEATURES, None)) == 1  # 08:00 CEST
    # the day before (CET), 06:30Z is 07:30 local: quiet; 07:00Z is 08:00: not
    assert engine.evaluate(change(utc(2026, 3, 28, 6, 30), HIGH, LOW), FEATURES, None) == []
    assert len(engine.evaluate(change(utc(2026, 3, 28, 7, 0), HIGH, LOW), FEATURES, None)) == 1
    assert engine.suppressed() == {"vip-invite": {"quiet_hours": 2}}
    assert engine.pending() == 0


def test_quiet_window_inside_one_day_and_a_gap_end() -> None:
    # 00:30-02:30 Berlin: on 2026-03-29 02:30 does not exist; the window ends at 03:30 CEST = 01:30Z
    q = QuietHours(start=parse_clock("00:30"), end=parse_clock("02:30"), zone=ZoneInfo("Europe/Berlin"), action="hold")
    assert q.is_quiet(utc(2026, 3, 28, 23, 45))  # 00:45 CET
    assert q.ends_at(utc(2026, 3, 28, 23, 45)) == utc(2026, 3, 29, 1, 30)
    assert not q.is_quiet(utc(2026, 3, 29, 1, 30))
    assert q.ends_at(utc(2026, 3, 29, 12, 0)) == utc(2026, 3, 29, 12, 0)  # not quiet: now


def test_held_triggers_count_for_cooldown_and_cap_at_release_time() -> None:
    rs = ruleset(
        rule(name="night", campaign="a", quiet_hours={**BERLIN, "action": "hold"}),
        rule(name="any", campaign="b", priority=-1, ignore_quiet_hours=True, reentry={"mode": "always"}),
        cap={"max": 1, "period": "1d"},
    )
    engine = TriggerEngine(rs)
    at = utc(2026, 1, 10, 22, 0)  # 23:00 CET: 'night' is held until 07:00Z, 'any' would be delivered now
    assert engine.evaluate(change(at, HIGH, LOW), FEATURES, None) == []
    assert engine.suppressed() == {"b": {"cap": 1}}
    assert len(engine.release(utc(2026, 1, 11, 7, 0))) == 1


def test_held_trigger_is_cancelled_when_the_customer_leaves_before_release() -> None:
    engine = TriggerEngine(ruleset(rule(quiet_hours={**BERLIN, "action": "hold"}, reentry={"mode": "once"})))
    at = utc(2026, 1, 10, 22, 0)
    engine.evaluate(change(at, HIGH, LOW), FEATURES, None)
    engine.evaluate(change(at + HOUR, HIGH2, HIGH), FEATURES, None)  # still in the group: keeps the hold
    assert engine.pending() == 1
    engine.evaluate(change(at + 2 * HOUR, MID, HIGH2), FEATURES, None)  # left: cancelled
    assert engine.pending() == 0
    assert engine.release(utc(2026, 1, 12)) == []
    assert engine.suppressed() == {"vip-invite": {"reentry": 1, "superseded": 1}}
    # a cancelled 'once' trigger does not use up the rule
    assert len(engine.evaluate(change(utc(2026, 1, 12, 12), HIGH, MID), FEATURES, None)) == 1
