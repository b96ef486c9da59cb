"""Hostile rules files (the reproductions of issue 14, finding 5), as (file name, content, words of the error)."""

from __future__ import annotations

from segmenter.documents import MAX_DOCUMENT_BYTES

RULE_TOML = '[[rules]]\nname = "vip"\ncampaign = "c"\nchannel = "email"\non = { lens = "value", enter = "*" }\n'
RULE_YAML = "rules:\n  - name: vip\n    campaign: c\n    channel: email\n    on: {lens: value, enter: '*'}\n"


def alias_bomb() -> str:
    """Ten levels of nine aliases each: about 600 bytes that expand to 9**10 strings."""
    lines = [RULE_YAML + "    payload:", '      a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"      a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def nested_toml(levels: int) -> str:
    return RULE_TOML + "payload = { a = " + "[" * levels + "]" * levels + " }\n"


def nested_yaml(levels: int) -> str:
    return RULE_YAML + "    payload: {a: " + "[" * levels + "]" * levels + "}\n"


def with_toml(line: str) -> str:
    return RULE_TOML + line + "\n"


HOSTILE: dict[str, tuple[str, str, list[str]]] = {
    "alias_bomb": ("r.yaml", alias_bomb(), ["r.yaml", "aliases are not allowed", "line 8"]),
    "deep_toml": ("r.toml", nested_toml(5000), ["r.toml", "nested deeper than 32 levels"]),
    "deep_yaml": ("r.yaml", nested_yaml(5000), ["r.yaml", "nested deeper than 32 levels", "line 6"]),
    "nested_toml_40": ("r.toml", nested_toml(40), ["r.toml", "rule 'vip'", "field 'payload.a[0][0]", "32"]),
    "nested_yaml_40": ("r.yaml", nested_yaml(40), ["r.yaml", "rule 'vip'", "field 'payload.a[0][0]", "32"]),
    "wide_template": (
        "r.toml",
        with_toml('payload = { note = "{customer_id:>300000000}" }'),
        ["r.toml", "rule 'vip'", "field 'payload.note'", "300000000", "limit is 200"],
    ),
    "wide_precision": (
        "r.toml",
        with_toml('payload = { spend = "{features.spend:.5000f}" }'),
        ["rule 'vip'", "field 'payload.spend'", "5000", "limit is 200"],
    ),
    "huge_payload": (
        "r.toml",
        with_toml("payload = { names = [" + ", ".join(['"{segment.name:>200}"'] * 300) + "] }"),
        ["rule 'vip'", "field 'payload'", "may render to", "limit is 65,536"],
    ),
    "long_condition": (
        "r.toml",
        with_toml('when = ["spend >' + " " * 65536 + '5 x"]'),
        ["rule 'vip'", "field 'when[0]'", "65546 characters", "limit is 1000"],
    ),
    "long_pattern": (
        "r.toml",
        RULE_TOML.replace('enter = "*"', 'enter = "*' + "a*" * 200 + '"'),
        ["rule 'vip'", "field 'on.enter'", "limit is 256"],
    ),
    "too_large": ("r.toml", RULE_TOML + "#" * MAX_DOCUMENT_BYTES + "\n", ["r.toml", "larger than 1024 KiB"]),
    "huge_integer_yaml": ("r.yaml", RULE_YAML + "    priority: " + "9" * 5000 + "\n", ["r.yaml", "not valid YAML"]),
    "huge_integer_toml": ("r.toml", with_toml("priority = " + "9" * 5000), ["r.toml", "not valid TOML"]),
    "directory_zone": ("r.toml", 'timezone = "Europe"\n' + RULE_TOML, ["r.toml", "timezone", "unknown time zone"]),
    "long_zone": ("r.toml", f'timezone = "{"x" * 5000}"\n' + RULE_TOML, ["r.toml", "unknown time zone"]),
}
"""Every hostile rules file: its name, its content, and words the one ConfigError must contain."""
