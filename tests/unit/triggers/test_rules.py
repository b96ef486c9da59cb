"""The rules file: loading, validation errors (rule + field + problem), description."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from segmenter.config import load_config
from segmenter.errors import ConfigError
from segmenter.triggers.rules import describe_rules, load_rules, rules_from_dict

from .helpers import rule

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "rules.example.toml"


@dataclass(frozen=True)
class FakeLens:
    name: str
    features: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FakeConfig:
    lenses: list[FakeLens]


CONFIG = FakeConfig(
    lenses=[
        FakeLens("value", ["recency_days", "frequency", "spend", "aov"]),
        FakeLens("engagement", ["sessions", "product_views", "cart_abandonment", "conversion", "email_engagement"]),
        FakeLens("custom", ["ltv_score"]),
    ]
)


def _error(data: dict[str, Any], config: Any = None) -> str:
    with pytest.raises(ConfigError) as info:
        rules_from_dict(data, config, source="rules.toml")
    return str(info.value)


# --------------------------------------------------------------------------- the example file


def test_example_file_loads_against_the_default_config_and_describes_every_rule() -> None:
    rules = load_rules(EXAMPLE, load_config())
    names = {r.name for r in rules.rules}
    assert {"welcome", "winback-high-value", "cart-abandonment-nudge", "vip-upgrade"} <= names
    assert len(rules.rules) >= 5
    lines = describe_rules(rules)
    assert lines[0].startswith("cap: at most 2 trigger(s) per customer")
    rule_lines = [line for line in lines if line.startswith("rule '")]
    assert len(rule_lines) == len(rules.rules)
    # priority order, and the plain words carry the settings
    priorities = [next(r.priority for r in rules.rules if f"rule '{r.name}'" in line) for line in rule_lines]
    assert priorities == sorted(priorities, reverse=True)
    cart = next(line for line in rule_lines if "cart-abandonment-nudge" in line)
    assert "quiet hours 21:00-08:00 Europe/Berlin (dropped)" in cart
    assert "fires again only 3d after it last fired" in cart
    assert "welcome" in next(line for line in rule_lines if "at most once per customer" in line)


def test_example_file_against_a_config_without_its_lens_fails_naming_the_rule() -> None:
    with pytest.raises(ConfigError) as info:
        load_rules(EXAMPLE, FakeConfig(lenses=[FakeLens("value", ["spend"])]))
    msg = str(info.value)
    assert "rule 'cart-abandonment-nudge', field 'on.lens': unknown lens 'engagement'" in msg
    assert str(EXAMPLE) in msg


def test_yaml_file_loads_like_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
timezone: Europe/Berlin
quiet_hours: {start: "21:00", end: "08:00", action: drop}
cap: {max: 3, period: 7d}
rules:
  - name: winback
    campaign: winback
    channel: email
    on: {lens: value, move: {from: ["value-3", "*high spend*"], to: "*lapsed*"}}
    when: ["recency_days between 30 and 120", "aov >= 50"]
    causes: [inactivity]
    cooldown: 30d
    payload: {days: "{features.recency_days:.0f}", nested: {list: ["{segment.id}", 3]}}
""",
        encoding="utf-8",
    )
    rules = load_rules(path, CONFIG)
    (r,) = rules.rules
    assert r.on.move is not None and r.on.move.from_ == ("value-3", "*high spend*")
    assert r.cooldown == 30 * 86_400
    assert rules.cap is not None and rules.cap.period == 7 * 86_400
    assert "quiet hours 21:00-08:00 Europe/Berlin (dropped)" in describe_rules(rules)[1]


def test_unquoted_yaml_time_gets_a_helpful_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.yml"
    path.write_text("timezone: UTC\nquiet_hours: {start: 21:00, end: '08:00'}\nrules: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"field 'quiet_hours.start': .*quoted strings"):
        load_rules(path)


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("rules.json", "{}", "unknown rules file format '.json'"),
        ("rules.toml", "rules = [", "not valid TOML"),
        ("rules.yaml", "rules: [", "not valid YAML"),
        ("rules.yaml", "- a\n- b\n", "must be a table/mapping"),
    ],
)
def test_file_level_errors(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=fragment):
        load_rules(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.toml")


def test_empty_rules_file_is_valid_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text("version = 1\n", encoding="utf-8")
    assert describe_rules(load_rules(path)) == ["no rules"]


# --------------------------------------------------------------------------- validation: rule + field + problem

BAD_RULES: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown lens", rule(on={"lens": "valeu", "enter": "*"}), "on.lens", "unknown lens 'valeu'"),
    ("bad predicate", rule(when=["spend >> 200"]), "when[0]", "cannot parse"),
    ("predicate without value", rule(when=["spend >"]), "when[0]", "cannot parse"),
    ("not a number", rule(when=["spend > lots"]), "when[0]", "'lots' is not a number"),
    ("empty range", rule(when=["spend between 9 and 1"]), "when[0]", "empty range"),
    ("unknown feature", rule(when=["spend > 1", "spnd > 200"]), "when[1]", "unknown feature 'spnd'"),
    ("event field without prefix", rule(when=["type == purchase"]), "when[0]", "write event.type"),
    ("unknown event field", rule(when=["event.amount == 3"]), "when[0]", "unknown event field 'amount'"),
    ("unknown event type", rule(when=["event.type == purchse"]), "when[0]", "unknown event type 'purchse'"),
    ("event ordering", rule(when=["event.type > purchase"]), "when[0]", "event fields take =="),
    ("feature of another lens", rule(when=["ltv_score > 1"]), "when[0]", "unknown feature 'ltv_score'"),
    ("bad name pattern", rule(on={"lens": "value", "enter": "[high spend"}), "on.enter", "unclosed '['"),
    ("empty pattern", rule(on={"lens": "value", "enter": ["*", ""]}), "on.enter[1]", "empty segment pattern"),
    ("id of another lens", rule(on={"lens": "value", "enter": "engagement-2"}), "on.enter", "lens 'engagement'"),
    (
        "move pattern",
        rule(on={"lens": "value", "move": {"from": "*", "to": "custom-1"}}),
        "on.move.to",
        "ids of this lens look like 'value-3'",
    ),
    ("two kinds", rule(on={"lens": "value", "enter": "*", "exit": "*"}), "on", "exactly one of enter, exit, move"),
    ("no kind", rule(on={"lens": "value"}), "on", "exactly one of enter, exit, move"),
    ("hold without zone", rule(quiet_hours={"start": "21:00", "end": "08:00"}), "quiet_hours.timezone", "'hold'"),
    (
        "drop without zone",
        rule(quiet_hours={"start": "21:00", "end": "08:00", "action": "drop"}),
        "quiet_hours.timezone",
        "need a time zone",
    ),
    (
        "empty quiet window",
        rule(quiet_hours={"start": "08:00", "end": "08:00", "timezone": "UTC"}),
        "quiet_hours.end",
        "window would be empty",
    ),
    ("quiet without end", rule(quiet_hours={"start": "21:00", "timezone": "UTC"}), "quiet_hours.end", "end missing"),
    (
        "bad time",
        rule(quiet_hours={"start": "25:00", "end": "08:00", "timezone": "UTC"}),
        "quiet_hours.start",
        "not a time of day",
    ),
    (
        "bad zone",
        rule(quiet_hours={"start": "21:00", "end": "08:00", "timezone": "Mars/Olympus"}),
        "quiet_hours.timezone",
        "unknown time zone 'Mars/Olympus'",
    ),
    (
        "quiet and ignore",
        rule(ignore_quiet_hours=True, quiet_hours={"action": "drop"}),
        "quiet_hours",
        "conflicts with ignore_quiet_hours",
    ),
    ("negative cooldown", rule(cooldown="-1d"), "cooldown", "must not be negative"),
    ("negative cooldown seconds", rule(cooldown=-5), "cooldown", "must not be negative"),
    ("bad duration", rule(cooldown="7 days"), "cooldown", "not a duration"),
    (
        "period without mode",
        rule(reentry={"mode": "after_exit", "period": "3d"}),
        "reentry.period",
        "only applies to mode 'after_period'",
    ),
    ("mode without period", rule(reentry={"mode": "after_period"}), "reentry.period", "needs a period"),
    ("unknown mode", rule(reentry={"mode": "sometimes"}), "reentry.mode", "'after_exit'"),
    ("unknown placeholder", rule(payload={"subject": "Hi {customer}"}), "payload.subject", "unknown placeholder"),
    (
        "unknown feature placeholder",
        rule(payload={"a": {"b": ["{features.spnd}"]}}),
        "payload.a.b[0]",
        "no feature 'spnd'",
    ),
    ("bad format spec", rule(payload={"spend": "{features.spend:.0q}"}), "payload.spend", "bad format spec"),
    ("conversion", rule(payload={"s": "{segment.name!r}"}), "payload.s", "not supported"),
    ("stray brace", rule(payload={"s": "50% {off"}), "payload.s", "bad template"),
    ("unknown cause", rule(causes=["erasure"]), "causes[0]", "'event', 'inactivity' or 'model'"),
    ("typo in field", rule(cooldwn="3d"), "cooldwn", "unknown field"),
    (
        "campaign cooldowns differ",
        rule(campaign="c", cooldown="1d"),
        "cooldown",
        "1d conflicts with 0s in rule 'ok' of the same campaign 'c'",
    ),
    ("bad rule name", rule(name="VIP rule!"), "name", "bad name"),
    ("missing campaign", {k: v for k, v in rule().items() if k != "campaign"}, "campaign", "field required"),
]


@pytest.mark.parametrize(("case", "data", "field", "fragment"), BAD_RULES, ids=[c[0] for c in BAD_RULES])
def test_rule_errors_name_the_rule_the_field_and_the_problem(
    case: str, data: dict[str, Any], field: str, fragment: str
) -> None:
    msg = _error({"rules": [rule(name="ok", campaign="c"), data]}, CONFIG)
    line = next((ln for ln in msg.splitlines() if f"field '{field}'" in ln), None)
    assert line is not None, msg
    assert line.startswith(f"rules.toml: rule '{data.get('name', 'vip')}', field '{field}': ")
    assert fragment in line
    assert not any(ln.startswith("rules.toml: rule 'ok'") for ln in msg.splitlines())


@pytest.mark.parametrize(
    ("top", "field", "fragment"),
    [
        ({"cap": {"max": 3}}, "cap.period", "needs a period"),
        ({"cap": {"max": 0, "period": "7d"}}, "cap.max", "greater than or equal to 1"),
        ({"cap": {"max": 2, "period": "-7d"}}, "cap.period", "must not be negative"),
        ({"timezone": "Berlin"}, "timezone", "unknown time zone"),
        ({"version": 2}, "version", "1"),
        ({"rulez": []}, "rulez", "allowed here: version, timezone, cap, quiet_hours, rules"),
    ],
)
def test_file_setting_errors_name_the_field(top: dict[str, Any], field: str, fragment: str) -> None:
    msg = _error({"rules": [rule()], **top})
    assert msg.startswith(f"rules.toml: field '{field}': ")
    assert fragment in msg


def test_file_quiet_hours_without_zone_is_reported_on_each_rule_that_uses_them() -> None:
    rules = [rule(), rule(name="b", ignore_quiet_hours=True)]
    msg = _error({"quiet_hours": {"start": "22:00", "end": "07:00"}, "rules": rules})
    assert "rule 'vip', field 'quiet_hours.timezone': " in msg
    assert msg.endswith("(the rule uses the file's [quiet_hours])")
    assert "rule 'b'" not in msg


def test_file_timezone_completes_rule_quiet_hours() -> None:
    rs = rules_from_dict({"timezone": "Asia/Tokyo", "rules": [rule(quiet_hours={"start": "21:00", "end": "08:00"})]})
    assert "quiet hours 21:00-08:00 Asia/Tokyo (held until they end)" in describe_rules(rs)[0]


def test_all_problems_are_reported_at_once() -> None:
    msg = _error({"rules": [rule(name="a", when=["nope > 1"]), rule(name="b", cooldown="-1h"), rule(name="a")]}, CONFIG)
    lines = msg.splitlines()
    # pydantic-level errors (b's cooldown) come first; semantic ones appear once those are fixed
    assert lines == ["rules.toml: rule 'b', field 'cooldown': must not be negative, got '-1h'"]
    rules = [rule(name="a", when=["nope > 1"]), rule(name="b", on={"lens": "x", "enter": "*"}), rule(name="a")]
    msg = _error({"rules": rules}, CONFIG)
    assert "rule 'a', field 'when[0]': unknown feature 'nope'" in msg
    assert "rule 'b', field 'on.lens': unknown lens 'x'" in msg
    assert "rule 'a', field 'name': duplicate rule name (rules[0] and rules[2])" in msg
    assert len(msg.splitlines()) == 3


def test_lens_features_are_allowed_only_on_their_lens() -> None:
    ok = rule(on={"lens": "custom", "enter": "custom-1"}, when=["ltv_score > 3"], payload={"x": "{features.ltv_score}"})
    rs = rules_from_dict({"rules": [ok]}, CONFIG)
    assert rs.rules[0].when == ("ltv_score > 3",)


def test_without_config_lenses_are_not_checked_but_features_are() -> None:
    rs = rules_from_dict({"rules": [rule(on={"lens": "anything", "enter": "anything-2"})]})
    assert rs.rules[0].on.lens == "anything"
    with pytest.raises(ConfigError, match="unknown feature 'ltv_score'"):
        rules_from_dict({"rules": [rule(when=["ltv_score > 3"])]})


def test_unnamed_rule_is_located_by_index() -> None:
    data = rule()
    del data["name"]
    msg = _error({"rules": [data]})
    assert msg == "rules.toml: rules[0] (no name), field 'name': field required"
