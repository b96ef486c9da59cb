"""Property: no sequence of changes makes a rule fire inside its cooldown or above the cap.

Changes come in any event-time order that respects the watermark contract
(every change is at or after the last watermark given to ``release``), rules
mix priorities, shared campaigns, re-entry modes and quiet hours (held or
dropped). Delivery time is the change's time, or the end of the quiet hours for
a held trigger.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from segmenter.outputs import CampaignTrigger, SegmentRef
from segmenter.triggers.controls import QuietHours, parse_clock, parse_duration
from segmenter.triggers.engine import TriggerEngine

from .helpers import FEATURES, HIGH, HIGH2, LOW, MID, T0, change, ruleset

SEGMENTS = (LOW, MID, HIGH, HIGH2)
HOUR = 3600.0
ONS = (
    {"lens": "value", "enter": "*high spend*"},
    {"lens": "value", "enter": "*"},
    {"lens": "value", "exit": "*high spend*"},
    {"lens": "value", "move": {"from": ["typical", "value-1"], "to": "*high spend*"}},
)
QUIET = (
    None,
    {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin", "action": "hold"},
    {"start": "21:00", "end": "08:00", "timezone": "Europe/Berlin", "action": "drop"},
    {"start": "00:00", "end": "06:00", "timezone": "America/New_York", "action": "hold"},
)


@st.composite
def rule_dicts(draw: st.DrawFn, index: int, cooldowns: dict[str, str]) -> dict[str, Any]:
    mode = draw(st.sampled_from(["after_exit", "after_period", "once", "always"]))
    reentry: dict[str, Any] = {"mode": mode}
    if mode == "after_period":
        reentry["period"] = draw(st.sampled_from(["2h", "1d"]))
    quiet = draw(st.sampled_from(QUIET))
    campaign = draw(st.sampled_from(["a", "b"]))
    out: dict[str, Any] = {
        "name": f"r{index}",
        "campaign": campaign,
        "channel": "email",
        "priority": draw(st.integers(0, 2)),
        "on": draw(st.sampled_from(ONS)),
        "causes": ["event", "inactivity"],
        "cooldown": cooldowns[campaign],  # one cooldown per campaign (validation insists)
        "reentry": reentry,
    }
    if quiet is None:
        out["ignore_quiet_hours"] = True
    else:
        out["quiet_hours"] = quiet
    return out


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any] | None, list[tuple[str, int, float]], int]:
    n_rules = draw(st.integers(1, 3))
    cooldowns = {c: draw(st.sampled_from(["0s", "1h", "1d", "3d"])) for c in ("a", "b")}
    rules = [draw(rule_dicts(i, cooldowns)) for i in range(n_rules)]
    cap = draw(
        st.one_of(
            st.none(), st.fixed_dictionaries({"max": st.integers(1, 3), "period": st.sampled_from(["6h", "1d", "3d"])})
        )
    )
    changes = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["c1", "c2"]),
                st.integers(0, len(SEGMENTS) - 1),
                st.floats(0, 4 * 24 * HOUR, allow_nan=False).map(lambda x: round(x, 0)),
            ),
            min_size=1,
            max_size=40,
        )
    )
    cut = draw(st.integers(0, len(changes)))
    return rules, cap, changes, cut


def _quiet(rule: dict[str, Any]) -> QuietHours | None:
    q = rule.get("quiet_hours")
    if q is None:
        return None
    return QuietHours(parse_clock(q["start"]), parse_clock(q["end"]), ZoneInfo(q["timezone"]), q["action"])


def _run(
    rules: list[dict[str, Any]], cap: dict[str, Any] | None, changes: list[tuple[str, int, float]], cut: int
) -> list[CampaignTrigger]:
    rs = ruleset(*rules, **({"cap": cap} if cap else {}))
    engine = TriggerEngine(rs)
    current: dict[str, SegmentRef | None] = {"c1": None, "c2": None}
    # a watermark that never passes a change still to come, as the pipeline guarantees
    suffix_min = [math.inf] * (len(changes) + 1)
    for i in range(len(changes) - 1, -1, -1):
        suffix_min[i] = min(suffix_min[i + 1], T0 + changes[i][2])
    out: list[CampaignTrigger] = []
    for i, (cid, seg, offset) in enumerate(changes):
        if i == cut:  # hand over the whole state, through JSON, to a fresh engine
            state = json.loads(json.dumps(engine.state()))
            engine = TriggerEngine(rs)
            engine.load_state(state)
        to = SEGMENTS[seg]
        frm = current[cid]
        current[cid] = to
        if frm == to:
            continue
        cause = "event" if i % 3 else "inactivity"
        out += engine.evaluate(
            change(T0 + offset, to, frm, customer=cid, cause=cause, event_id=f"e{i}"), FEATURES, None
        )
        out += engine.release(suffix_min[i + 1] if i + 1 < len(changes) else T0 + offset)
    out += engine.release(math.inf)
    return out


def _delivered_at(trigger: CampaignTrigger, quiet: QuietHours | None) -> float:
    at = datetime.fromisoformat(trigger.event_ts).timestamp()
    if quiet is not None and quiet.action == "hold":
        return quiet.ends_at(at)
    return at


@given(scenarios())
def test_no_rule_fires_inside_its_cooldown_or_above_the_cap(
    scenario: tuple[list[dict[str, Any]], dict[str, Any] | None, list[tuple[str, int, float]], int],
) -> None:
    rules, cap, changes, cut = scenario
    by_name = {r["name"]: r for r in rules}
    out = _run(rules, cap, changes, cut)
    assert out == _run(rules, cap, changes, len(changes) + 1)  # handing over the state changes nothing

    deliveries = [(t, _delivered_at(t, _quiet(by_name[t.rule]))) for t in out]
    for i, (t, at) in enumerate(deliveries):
        cooldown = parse_duration(by_name[t.rule]["cooldown"])
        for j, (other, other_at) in enumerate(deliveries):
            if i != j and other.customer_id == t.customer_id and other.campaign == t.campaign:
                assert abs(at - other_at) >= cooldown, (t.rule, at, other.rule, other_at)
    if cap is not None:
        period = parse_duration(cap["period"])
        for cid in ("c1", "c2"):
            times = sorted(at for t, at in deliveries if t.customer_id == cid)
            for start in times:
                assert sum(1 for x in times if start <= x < start + period) <= cap["max"], (cid, times)
