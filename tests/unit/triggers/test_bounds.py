"""Rules files are bounded: size, nesting, YAML aliases, condition and pattern length, format widths, payload size.

Time limits here are only "does not hang" guards (pytest-timeout), never speed assertions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmenter.documents import MAX_DEPTH, find_too_deep, read_document
from segmenter.errors import ConfigError
from segmenter.triggers.expressions import (
    MAX_FORMAT_WIDTH,
    MAX_PAYLOAD_DEPTH,
    ExpressionError,
    FeaturePredicate,
    compile_payload,
    compile_template,
    parse_predicate,
    split_condition,
)
from segmenter.triggers.rules import load_rules, rules_from_dict
from tests.unit.triggers.helpers import rule
from tests.unit.triggers.hostile_rules import HOSTILE, RULE_TOML, RULE_YAML, alias_bomb


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_rules_file_is_one_config_error_naming_file_rule_and_field(tmp_path: Path, case: str) -> None:
    name, content, words = HOSTILE[case]
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert "\n" not in message


def test_the_alias_bomb_is_the_small_file_of_the_report() -> None:
    assert len(alias_bomb().encode()) < 700
    assert alias_bomb().count("*a") == 81


def test_anchors_without_aliases_and_nesting_at_the_limits_are_accepted(tmp_path: Path) -> None:
    levels = MAX_PAYLOAD_DEPTH - 1  # the payload table is level 1, its list "a" level 2
    content = RULE_YAML + "    payload: &p {a: " + "[" * levels + "]" * levels + "}\n"
    assert load_rules(write(tmp_path, "r.yaml", content)).rules[0].payload.keys() == {"a"}
    toml = RULE_TOML + "payload = { a = " + "[" * levels + "]" * levels + " }\n"
    assert load_rules(write(tmp_path, "r.toml", toml)).rules[0].payload.keys() == {"a"}
    with pytest.raises(ConfigError, match="nested deeper than 16 levels"):
        load_rules(write(tmp_path, "r.toml", toml.replace("[]", "[[]]")))
    document = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert read_document(write(tmp_path, "d.yaml", document), "config file") is not None
    with pytest.raises(ConfigError, match=r"d\.yaml: field 'a(\[0\])+': nested deeper than 32 levels"):
        read_document(write(tmp_path, "d.yaml", document.replace("[]", "[[]]")), "config file")


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not UTF-8 at byte 0"):
        load_rules(write(tmp_path, "r.toml", b"\xff" + RULE_TOML.encode()))


def test_config_files_are_bounded_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", "a: &x [1, 2]\nb: *x\n")
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        read_document(path, "config file")


def test_find_too_deep_names_the_first_location_past_the_limit() -> None:
    data: dict[str, Any] = {"a": [{"b": [[1]]}]}
    assert find_too_deep(data, max_depth=5) is None
    assert find_too_deep(data, max_depth=4) == ("a", 0, "b", 0)
    deep: list[Any] = []
    for _ in range(100_000):  # far past the recursion limit: measured iteratively
        deep = [deep]
    assert find_too_deep({"x": deep}) == ("x", *([0] * (MAX_DEPTH - 1)))


@pytest.mark.timeout(20)
def test_a_deep_payload_given_as_data_is_refused_without_recursion() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(ConfigError, match=r"rule 'vip', field 'payload(\.a)+': nested deeper than 16 levels"):
        rules_from_dict({"rules": [rule(payload={"a": deep})]})


@pytest.mark.parametrize("spec", ["", ">200", "0200", "<200.200", ".200f", "9>20", ",.2f", "_"])
def test_format_widths_up_to_the_limit_are_accepted(spec: str) -> None:
    field = "features.spend" if spec and spec[-1] in "f,_" else "customer_id"
    compile_template(f"{{{field}:{spec}}}" if spec else f"{{{field}}}", known_features={"spend"})


@pytest.mark.parametrize("spec", [f">{MAX_FORMAT_WIDTH + 1}", ".201f", "0>300000000", "<" + "9" * 5000, "00000201"])
def test_format_widths_above_the_limit_are_refused_before_formatting(spec: str) -> None:
    with pytest.raises(ExpressionError, match=f"the limit is {MAX_FORMAT_WIDTH}"):
        compile_template(f"{{features.spend:{spec}}}", known_features={"spend"})


def test_a_payload_that_may_render_too_long_is_refused_and_a_usual_one_is_not() -> None:
    usual = {"template": "winback", "last_order": "{features.aov:.0f}", "segment": "{segment.name}", "n": 3}
    assert set(compile_payload(usual, {"aov"})) == set(usual)
    with pytest.raises(ExpressionError, match=r"^payload: may render to [\d,]+ characters"):
        compile_payload({"x": ["{customer_id:>200}"] * 200}, set())


@pytest.mark.timeout(20)
def test_splitting_a_condition_is_linear_in_a_run_of_spaces() -> None:
    rest = "> " + " " * 262_144 + "5 x"
    assert split_condition("spend " + rest) == ("spend", rest)


@pytest.mark.timeout(20)
def test_a_64_kib_condition_is_refused_quickly_and_one_at_the_limit_parses() -> None:
    with pytest.raises(ExpressionError, match="the limit is 1000"):
        parse_predicate("spend >" + " " * 65536 + "5", {"spend"})
    at_limit = "spend >" + " " * (1000 - 8) + "5"
    assert len(at_limit) == 1000
    predicate = parse_predicate(at_limit, {"spend"})
    assert isinstance(predicate, FeaturePredicate) and predicate.test_features({"spend": 6.0})


# --------------------------------------------------------------------------- fuzzing: only ConfigError

LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from(["*", "value-3", "{customer_id:>9999}", "spend > 5", "7d", "21:00", "Europe", "x" * 300]),
)  # fmt: skip
VALUES = st.recursive(
    LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
RULE_FIELDS = ["name", "campaign", "channel", "on", "when", "payload", "cooldown", "reentry", "quiet_hours",
               "priority", "causes", "enabled", "no_event", "ignore_quiet_hours"]  # fmt: skip
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.timeout(120)
@FUZZ
@given(
    st.dictionaries(st.sampled_from(RULE_FIELDS), VALUES, max_size=6),
    st.dictionaries(st.sampled_from(["version", "timezone", "cap", "quiet_hours", "extra"]), VALUES, max_size=2),
)
def test_fuzz_rules_data_is_valid_or_a_config_error(fields: dict[str, Any], top: dict[str, Any]) -> None:
    try:
        rules_from_dict({"rules": [rule(**fields)], **top})
    except ConfigError as exc:
        assert str(exc)


@pytest.mark.timeout(120)
@FUZZ
@given(st.text(max_size=200), st.sampled_from([".toml", ".yaml"]))
def test_fuzz_rules_text_is_valid_or_a_config_error(tmp_path_factory: pytest.TempPathFactory, text: str,
                                                    suffix: str) -> None:  # fmt: skip
    path = tmp_path_factory.mktemp("fuzz") / f"r{suffix}"
    path.write_text((RULE_YAML if suffix == ".yaml" else RULE_TOML) + text, encoding="utf-8", errors="replace")
    try:
        load_rules(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
    except yaml.YAMLError as exc:  # pragma: no cover - would be a bug: report it as such
        raise AssertionError(f"YAML error escaped: {exc}") from exc


def test_problem_lines_quoting_huge_texts_are_clipped(tmp_path: Path) -> None:
    cooldown = write(tmp_path, "c.toml", RULE_TOML + f'cooldown = "{"1" * 200_000}x"\n')
    template = write(tmp_path, "t.toml", RULE_TOML + f'payload = {{ a = "{"y" * 100_000}{{" }}\n')
    for path, field in ((cooldown, "cooldown"), (template, "payload.a")):
        with pytest.raises(ConfigError) as info:
            load_rules(path)
        (line,) = str(info.value).splitlines()
        assert len(line) < 600 and f"field '{field}'" in line and "more characters)" in line
