r"""The campaign rules file: model, loader, compiler and a plain-words description.

A rules file is TOML (or YAML with the same structure)::

    version = 1
    timezone = "Europe/Berlin"          # default zone of quiet hours

    [cap]                               # per customer, across campaigns
    max = 3
    period = "7d"                       # rolling window

    [quiet_hours]                       # default for every rule
    start = "21:00"
    end = "08:00"
    action = "hold"                     # or "drop"

    [[rules]]
    name = "winback-high-value"
    campaign = "winback"
    channel = "email"
    priority = 50                       # higher wins when the cap allows fewer
    on = { lens = "value", enter = "*lapsed*" }   # or exit = ..., or move = { from = ..., to = ... }
    causes = ["event", "inactivity"]    # default; "model" may be added
    when = ["aov >= 60", "recency_days between 45 and 180"]
    cooldown = "30d"                    # per customer, per campaign
    reentry = { mode = "after_exit" }   # after_exit | after_period (+ period) | once | always
    payload = { template = "winback", last_order = "{features.aov:.0f}", segment = "{segment.name}" }

Segments are named by id (``value-3``, stable) or by a name glob
(``*high spend*``, case-insensitive, against the current name); a list means
any of them. See ``config/rules.example.toml`` for a commented example.

Every problem raises :class:`~segmenter.errors.ConfigError` whose lines read
``FILE: rule 'NAME', field 'FIELD': PROBLEM`` (or ``FILE: field 'FIELD': ...``
for file-level settings); all problems found are reported at once.

Examples
--------
>>> rs = rules_from_dict({"rules": [{"name": "vip", "campaign": "vip-invite", "channel": "email",
...                       "on": {"lens": "value", "enter": "*high spend*"}, "when": ["spend > 500"]}]})
>>> print(describe_rules(rs)[0].replace(", ", ",\n").replace("; ", ";\n"))
rule 'vip' (priority 0): when a customer enters a value segment named like '*high spend*' (cause: event or inactivity),
if spend > 500,
send campaign 'vip-invite' by email;
no cooldown;
fires again only after leaving those segments;
no quiet hours
>>> rules_from_dict({"rules": [{"name": "vip", "campaign": "c", "channel": "email",  # doctest: +ELLIPSIS
...                   "on": {"lens": "value", "enter": "*"}, "when": ["spnd > 5"]}]}, source="r.toml")
Traceback (most recent call last):
...
segmenter.errors.ConfigError: r.toml: rule 'vip', field 'when[0]': unknown feature 'spnd' in 'spnd > 5'; known ...
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from segmenter.documents import read_document
from segmenter.errors import ConfigError
from segmenter.features import FEATURE_NAMES
from segmenter.outputs import SegmentChange, SegmentRef
from segmenter.triggers.controls import QuietAction, QuietHours, format_duration, parse_clock, parse_duration
from segmenter.triggers.expressions import (
    EventPredicate,
    ExpressionError,
    FeaturePredicate,
    PayloadTemplate,
    SegmentPattern,
    compile_payload,
    parse_predicate,
    parse_segment_pattern,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Cap",
    "CompiledRule",
    "LensLike",
    "Move",
    "On",
    "QuietHoursSettings",
    "Reentry",
    "Rule",
    "RuleSet",
    "RulesConfigLike",
    "compile_rules",
    "describe_rules",
    "load_rules",
    "rules_from_dict",
]

Cause = Literal["event", "inactivity", "model"]
ReentryMode = Literal["after_exit", "after_period", "once", "always"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CAMPAIGN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


# --------------------------------------------------------------------------- field types


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"bad name {value!r}: use 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )
    return value


def _check_campaign(value: str) -> str:
    if not _CAMPAIGN.match(value):
        raise ValueError(
            f"bad campaign or channel {value!r}: use 1-128 letters, digits, '-', '_', '.', ':' or '/', "
            "starting with a letter or digit"
        )
    return value


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe" is a directory, a name too long
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'") from None
    return value


def _to_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


Name = Annotated[str, AfterValidator(_check_name)]
CampaignName = Annotated[str, AfterValidator(_check_campaign)]
ZoneName = Annotated[str, AfterValidator(_check_zone)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; written as ``"30m"``, ``"12h"``, ``"7d"``, ``"1d12h"`` or a number of seconds."""
Clock = Annotated[time, BeforeValidator(parse_clock), PlainSerializer(lambda t: f"{t:%H:%M}", return_type=str)]
Segments = Annotated[tuple[str, ...], BeforeValidator(_to_list), Field(min_length=1)]
"""One segment pattern or a list of them."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Cap(_Model):
    """At most ``max`` triggers per customer, across campaigns, in any rolling ``period``."""

    max: Annotated[int, Field(ge=1)]
    period: Duration | None = None


class QuietHoursSettings(_Model):
    """Quiet hours: a daily wall-clock window in an IANA time zone.

    At file level they are the default of every rule; in a rule, any subset of
    fields overrides the default.
    """

    start: Clock | None = None
    end: Clock | None = None
    timezone: ZoneName | None = None
    action: QuietAction | None = None


class Move(_Model):
    """``move = { from = ..., to = ... }``."""

    from_: Annotated[Segments, Field(alias="from")]
    to: Segments


class On(_Model):
    """What change a rule reacts to: exactly one of ``enter``, ``exit``, ``move`` on ``lens``.

    - ``enter``: the customer's new segment matches (and the old one is another segment);
    - ``exit``: the old segment matches and the new one does not (leaving the group);
    - ``move``: the old segment matches ``from`` and the new one matches ``to``.
    """

    lens: Annotated[str, Field(min_length=1, max_length=128)]
    enter: Segments | None = None
    exit: Segments | None = None
    move: Move | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> On:
        given = [k for k in ("enter", "exit", "move") if getattr(self, k) is not None]
        if len(given) != 1:
            got = ", ".join(given) if given else "none"
            raise ValueError(f"set exactly one of enter, exit, move (got {got})")
        return self

    @property
    def kind(self) -> Literal["enter", "exit", "move"]:
        """Which of ``enter``, ``exit``, ``move`` is set."""
        if self.enter is not None:
            return "enter"
        if self.exit is not None:
            return "exit"
        return "move"


class Reentry(_Model):
    """When a rule may fire again for the same customer.

    - ``after_exit`` (default): only after the customer left the rule's
      segments (for exit rules: came back into them) since it last fired;
    - ``after_period``: only once ``period`` has passed since it last fired;
    - ``once``: never again (until the customer is erased);
    - ``always``: no re-entry control (cooldown and cap still apply).
    """

    mode: ReentryMode = "after_exit"
    period: Duration | None = None


class Rule(_Model):
    """One campaign rule (see the module docstring for the file format)."""

    name: Name
    description: Annotated[str, Field(max_length=500)] = ""
    enabled: bool = True
    on: On
    causes: Annotated[tuple[Cause, ...], Field(min_length=1)] = ("event", "inactivity")
    when: tuple[str, ...] = ()
    no_event: Literal["fail", "pass"] = "fail"
    campaign: CampaignName
    channel: CampaignName
    priority: int = 0
    cooldown: Duration = 0.0
    reentry: Reentry = Reentry()
    quiet_hours: QuietHoursSettings | None = None
    ignore_quiet_hours: bool = False
    payload: dict[str, Any] = Field(default_factory=dict)


class LensLike(Protocol):
    """What the rules need of a lens config: its name and feature names."""

    @property
    def name(self) -> str: ...

    @property
    def features(self) -> Sequence[str]: ...


class RulesConfigLike(Protocol):
    """What the rules need of the segmenter config (``SegmenterConfig`` fits)."""

    @property
    def lenses(self) -> Sequence[LensLike]: ...


class RuleSet(_Model):
    """A whole rules file, validated. Build it with :func:`load_rules` or :func:`rules_from_dict`.

    Validation context (``model_validate(data, context=...)``): ``config`` (an
    object with ``lenses``, each with ``name`` and ``features``) enables the
    lens and per-lens feature checks; ``source`` names the file in errors.
    """

    version: Literal[1] = 1
    timezone: ZoneName | None = None
    cap: Cap | None = None
    quiet_hours: QuietHoursSettings | None = None
    rules: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _semantics(self, info: ValidationInfo) -> RuleSet:
        context = info.context if isinstance(info.context, Mapping) else {}
        source = str(context.get("source", "<rules>"))
        config = context.get("config")
        problems: list[str] = []
        _check_ruleset(self, config, problems.append)
        if problems:
            raise ConfigError("\n".join(_clip(f"{source}: {p}") for p in problems))
        return self


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True)
class SegmentSet:
    """Any of several segment patterns."""

    patterns: tuple[SegmentPattern, ...]

    def matches(self, ref: SegmentRef | None) -> bool:
        """Whether the segment matches one of the patterns (``None`` never does)."""
        return ref is not None and any(p.matches_ref(ref.id, ref.name) for p in self.patterns)

    def describe(self) -> str:
        """``value-3 or named like '*lapsed*'``."""
        ids = [p.text for p in self.patterns if p.is_id]
        names = [repr(p.text) for p in self.patterns if not p.is_id]
        parts = []
        if ids:
            parts.append(" or ".join(ids))
        if names:
            parts.append("named like " + " or ".join(names))
        return " or ".join(parts)


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready for evaluation (built by :func:`compile_rules`)."""

    rule: Rule
    source: SegmentSet | None
    """``from`` of a move, the left segments of an exit; ``None`` for enter."""
    target: SegmentSet | None
    """``to`` of a move, the entered segments of an enter; ``None`` for exit."""
    feature_predicates: tuple[FeaturePredicate, ...]
    event_predicates: tuple[EventPredicate, ...]
    payload: PayloadTemplate
    quiet: QuietHours | None
    reentry_period: float

    @property
    def name(self) -> str:
        """The rule's name."""
        return self.rule.name

    def segment_of(self, change: SegmentChange) -> SegmentRef | None:
        """The segment the trigger is about if ``change`` matches ``on`` and ``causes``, else ``None``.

        Erasure changes never match.
        """
        rule = self.rule
        if change.cause == "erasure" or change.cause not in rule.causes or change.lens != rule.on.lens:
            return None
        kind = rule.on.kind
        if kind == "exit":
            assert self.source is not None
            if self.source.matches(change.from_segment) and not self.source.matches(change.to_segment):
                return change.from_segment
            return None
        assert self.target is not None
        if not self.target.matches(change.to_segment):
            return None
        if kind == "move":
            assert self.source is not None
            if not self.source.matches(change.from_segment):
                return None
        return change.to_segment

    def rearms(self, to_segment: SegmentRef | None) -> bool:
        """Whether being in ``to_segment`` means the rule's condition no longer holds.

        Enter and move rules re-arm once the customer is outside their target
        segments; exit rules once the customer is back in their source segments.
        """
        if self.rule.on.kind == "exit":
            assert self.source is not None
            return self.source.matches(to_segment)
        assert self.target is not None
        return not self.target.matches(to_segment)


def _lens_features(config: object | None, lens: str) -> tuple[set[str], list[str]]:
    """(allowed feature names for ``lens``, configured lens names)."""
    allowed = set(FEATURE_NAMES)
    names: list[str] = []
    if config is not None:
        for lc in getattr(config, "lenses", ()):
            names.append(str(lc.name))
            if lc.name == lens:
                allowed.update(str(f) for f in lc.features)
    return allowed, names


def _quiet_of(rule: Rule, rs: RuleSet, report: Callable[[str, str], None]) -> QuietHours | None:
    """Resolve a rule's effective quiet hours (file default, then rule override)."""
    if rule.ignore_quiet_hours:
        if rule.quiet_hours is not None:
            report("quiet_hours", "conflicts with ignore_quiet_hours = true; remove one of them")
        return None
    base = rs.quiet_hours or QuietHoursSettings()
    over = rule.quiet_hours or QuietHoursSettings()
    if rs.quiet_hours is None and rule.quiet_hours is None:
        return None
    start = over.start if over.start is not None else base.start
    end = over.end if over.end is not None else base.end
    zone = over.timezone or base.timezone or rs.timezone
    action: QuietAction = over.action or base.action or "hold"
    field = "quiet_hours"
    note = "" if rule.quiet_hours is not None else " (the rule uses the file's [quiet_hours])"
    ok = True
    if start is None or end is None:
        missing = " and ".join(k for k, v in (("start", start), ("end", end)) if v is None)
        first = missing.split(" ")[0]
        report(f"{field}.{first}", f"quiet hours need a start and an end; {missing} missing (e.g. '21:00'){note}")
        ok = False
    elif start == end:
        report(f"{field}.end", f"quiet hours start and end are both {start:%H:%M}; the window would be empty{note}")
        ok = False
    if zone is None:
        what = "to hold triggers until they end" if action == "hold" else "to know when they are"
        report(
            f"{field}.timezone",
            f"quiet hours with action '{action}' need a time zone {what}: set quiet_hours.timezone or the "
            f"top-level timezone to an IANA name such as 'Europe/Berlin'{note}",
        )
        ok = False
    if not ok or start is None or end is None or zone is None:
        return None
    return QuietHours(start=start, end=end, zone=ZoneInfo(zone), action=action)


class _Problems:
    """Reports one rule's problems (``field``, ``problem``) and remembers whether there was any."""

    def __init__(self, report: Callable[[str, str], None]) -> None:
        self._report = report
        self.ok = True

    def __call__(self, field: str, problem: str) -> None:
        self.ok = False
        self._report(field, problem)


def _compile_rule(
    rule: Rule, rs: RuleSet, config: object | None, report: Callable[[str, str], None]
) -> CompiledRule | None:
    bad = _Problems(report)
    lens = rule.on.lens
    allowed, lens_names = _lens_features(config, lens)
    if config is not None and lens not in lens_names:
        bad("on.lens", f"unknown lens {lens!r}; configured lenses: {', '.join(lens_names) or '(none)'}")
    source, target = _transition(rule.on, lens_names, bad)
    fpreds, epreds = _predicates(rule.when, allowed, bad)
    if rule.no_event == "pass" and not epreds:
        logger.debug("rule %s: no_event = 'pass' has no effect without event conditions", rule.name)
    payload: PayloadTemplate = {}
    try:
        payload = compile_payload(rule.payload, allowed)
    except ExpressionError as exc:
        field, _, problem = str(exc).partition(": ")
        bad(field, problem)
    _check_reentry(rule, bad)
    quiet = _quiet_of(rule, rs, bad)
    if not bad.ok:
        return None
    return CompiledRule(
        rule=rule,
        source=source,
        target=target,
        feature_predicates=tuple(fpreds),
        event_predicates=tuple(epreds),
        payload=payload,
        quiet=quiet,
        reentry_period=rule.reentry.period or 0.0,
    )


def _transition(
    on: On, lens_names: Sequence[str], bad: Callable[[str, str], None]
) -> tuple[SegmentSet | None, SegmentSet | None]:
    """The rule's ``(from, to)`` segment sets (``None``: any) of its ``on`` table (enter, exit or move)."""

    def segs(field: str, texts: tuple[str, ...] | None) -> SegmentSet | None:
        if texts is None:
            return None
        out = []
        for i, text in enumerate(texts):
            try:
                out.append(parse_segment_pattern(text, on.lens, lens_names))
            except ExpressionError as exc:
                bad(f"{field}[{i}]" if len(texts) > 1 else field, f"bad segment pattern: {exc}")
        return SegmentSet(tuple(out))

    if on.kind == "enter":
        return None, segs("on.enter", on.enter)
    if on.kind == "exit":
        return segs("on.exit", on.exit), None
    assert on.move is not None
    return segs("on.move.from", on.move.from_), segs("on.move.to", on.move.to)


def _predicates(
    when: Sequence[str], allowed: set[str], bad: Callable[[str, str], None]
) -> tuple[list[FeaturePredicate], list[EventPredicate]]:
    """The rule's ``when`` conditions, parsed: feature conditions and event conditions."""
    fpreds: list[FeaturePredicate] = []
    epreds: list[EventPredicate] = []
    for i, text in enumerate(when):
        try:
            pred = parse_predicate(text, allowed)
        except ExpressionError as exc:
            bad(f"when[{i}]", str(exc))
            continue
        if isinstance(pred, FeaturePredicate):
            fpreds.append(pred)
        else:
            epreds.append(pred)
    return fpreds, epreds


def _check_reentry(rule: Rule, bad: Callable[[str, str], None]) -> None:
    """A period exactly where the re-entry mode takes one (``after_period``), and more than 0."""
    if rule.reentry.mode == "after_period":
        if rule.reentry.period is None:
            bad("reentry.period", "mode 'after_period' needs a period, e.g. period = '30d'")
        elif rule.reentry.period <= 0:
            bad("reentry.period", "must be more than 0 for mode 'after_period'")
    elif rule.reentry.period is not None:
        bad("reentry.period", f"a period only applies to mode 'after_period', not {rule.reentry.mode!r}")


def _check_ruleset(rs: RuleSet, config: object | None, problem: Callable[[str], None]) -> None:
    if rs.cap is not None and rs.cap.period is None:
        problem(f"field 'cap.period': a cap of {rs.cap.max} needs a period, e.g. period = '7d'")
    elif rs.cap is not None and rs.cap.period is not None and rs.cap.period <= 0:
        problem("field 'cap.period': must be more than 0")
    if rs.quiet_hours is not None:
        q = rs.quiet_hours
        if (q.start is None) != (q.end is None):
            problem("field 'quiet_hours': set both start and end (e.g. start = '21:00', end = '08:00')")
    seen: dict[str, int] = {}
    cooldowns: dict[str, Rule] = {}
    for i, rule in enumerate(rs.rules):
        if rule.name in seen:
            problem(f"rule '{rule.name}', field 'name': duplicate rule name (rules[{seen[rule.name]}] and rules[{i}])")
        seen.setdefault(rule.name, i)
        first = cooldowns.setdefault(rule.campaign, rule)
        if first.cooldown != rule.cooldown:
            problem(
                f"rule '{rule.name}', field 'cooldown': {format_duration(rule.cooldown)} conflicts with "
                f"{format_duration(first.cooldown)} in rule '{first.name}' of the same campaign "
                f"'{rule.campaign}'; the cooldown is per customer and campaign, so give its rules one value"
            )

        def report(field: str, msg: str, _name: str = rule.name) -> None:
            problem(f"rule '{_name}', field '{field}': {msg}")

        _compile_rule(rule, rs, config, report)


def compile_rules(rules: RuleSet) -> tuple[CompiledRule, ...]:
    """The enabled rules, compiled, ordered by descending priority then name.

    Raises
    ------
    ConfigError
        Never for a validated :class:`RuleSet` (validation compiles every rule).
    """
    problems: list[str] = []
    out: list[CompiledRule] = []
    for rule in rules.rules:
        if not rule.enabled:
            continue

        def report(field: str, msg: str, _name: str = rule.name) -> None:
            problems.append(f"rule '{_name}', field '{field}': {msg}")

        compiled = _compile_rule(rule, rules, None, report)
        if compiled is not None:
            out.append(compiled)
    if problems:
        raise ConfigError("\n".join(_clip(p) for p in problems))
    out.sort(key=lambda c: (-c.rule.priority, c.rule.name))
    return tuple(out)


# --------------------------------------------------------------------------- loading


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 without its yes/no/on/off booleans (``on:`` is a key of every rule)."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

_MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "": ("version", "timezone", "cap", "quiet_hours", "rules"),
    "rules": tuple(Rule.model_fields),
    "on": ("lens", "enter", "exit", "move"),
    "move": ("from", "to"),
    "cap": ("max", "period"),
    "quiet_hours": ("start", "end", "timezone", "action"),
    "reentry": ("mode", "period"),
}


MAX_PROBLEM_CHARS = 500
"""Longest line of a :class:`ConfigError`: a problem quotes the offending text, which a hostile file makes huge."""


def _clip(line: str) -> str:
    """``line``, cut to :data:`MAX_PROBLEM_CHARS` with a note of how much was left out.

    Examples
    --------
    >>> _clip("short"), len(_clip("x" * 2000)), _clip("x" * 2000)[-30:]
    ('short', 525, 'xxxxx… (1,500 more characters)')
    """
    if len(line) <= MAX_PROBLEM_CHARS:
        return line
    return f"{line[:MAX_PROBLEM_CHARS]}… ({len(line) - MAX_PROBLEM_CHARS:,} more characters)"


def _where(loc: tuple[int | str, ...], data: Any) -> tuple[str, str]:
    """(``rule 'NAME', `` or ``""``, dotted field) for a pydantic error location."""
    prefix = ""
    rest = loc
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        index = loc[1]
        name = None
        rules = data.get("rules") if isinstance(data, dict) else None
        if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
            raw = rules[index].get("name")
            name = raw if isinstance(raw, str) else None
        prefix = f"rule '{name}'" if name else f"rules[{index}] (no name)"
        rest = loc[2:]
    field = ""
    for part in rest:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += f".{part}" if field else part
    return prefix, field


def _format_errors(exc: ValidationError, data: Any, source: str) -> ConfigError:
    lines = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        prefix, field = _where(loc, data)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent = ""
            for part in reversed(loc[:-1]):
                if isinstance(part, str):
                    parent = part
                    break
            allowed = _MODEL_FIELDS.get(parent if parent in _MODEL_FIELDS else "", ())
            if prefix and parent not in _MODEL_FIELDS:
                allowed = _MODEL_FIELDS["rules"]
            msg = f"unknown field (check the spelling); allowed here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = "field required"
        where = ", ".join(p for p in (prefix, f"field '{field}'" if field else "") if p)
        lines.append(_clip(f"{source}: {where}: {msg}" if where else f"{source}: {msg}"))
    return ConfigError("\n".join(lines))


def _locate(loc: tuple[int | str, ...], data: Any) -> str:
    """``rule 'NAME', field 'payload.a'`` for a location in a rules document."""
    prefix, field = _where(loc, data)
    return ", ".join(p for p in (prefix, f"field '{field}'" if field else "") if p)


def rules_from_dict(data: Any, config: RulesConfigLike | None = None, source: str = "<rules>") -> RuleSet:
    """Validate already parsed rules data (see :func:`load_rules`).

    Raises
    ------
    ConfigError
        Naming ``source``, the rule, the field and the problem, one line per problem.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the rules file must be a table/mapping at the top level")
    try:
        return RuleSet.model_validate(data, context={"config": config, "source": source})
    except ValidationError as exc:
        raise _format_errors(exc, data, source) from None


def load_rules(path: str | Path, config: RulesConfigLike | None = None) -> RuleSet:
    """Load and validate a TOML (``.toml``) or YAML (``.yaml``/``.yml``) rules file.

    Parameters
    ----------
    path
        The rules file.
    config
        Optional segmenter config (anything with ``lenses``, each with ``name``
        and ``features``); with it, lens names and per-lens features are checked.

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, is over 1 MiB, nests deeper than 32
        levels, uses a YAML alias, or a rule is invalid (including conditions,
        patterns, format widths and payload sizes over their limits, see
        :mod:`segmenter.triggers.expressions`).
    """
    p = Path(path)
    data = read_document(p, "rules file", _YamlLoader, _locate)
    if data is None:  # an empty YAML file
        data = {}
    rules = rules_from_dict(data, config, str(p))
    logger.debug("loaded %d rules from %s", len(rules.rules), p)
    return rules


# --------------------------------------------------------------------------- description


def _causes(causes: Sequence[str]) -> str:
    return " or ".join(causes)


def _describe_rule(c: CompiledRule, cap: Cap | None) -> str:
    r = c.rule
    what, scope = _describe_change(c)
    parts = [f"rule '{r.name}' (priority {r.priority}): when a customer {what} (cause: {_causes(r.causes)})"]
    if r.when:
        cond = f"if {' and '.join(r.when)}"
        if c.event_predicates:
            cond += (
                " (without an event, e.g. on inactivity, the event conditions are skipped)"
                if r.no_event == "pass"
                else " (never without an event)"
            )
        parts.append(cond)
    parts.append(f"send campaign '{r.campaign}' by {r.channel}")
    text = ", ".join(parts)
    extras = [f"cooldown {format_duration(r.cooldown)} per campaign" if r.cooldown > 0 else "no cooldown"]
    extras.append(_describe_reentry(c, scope))
    extras.append(_describe_quiet(c))
    if r.payload:
        extras.append(f"payload: {', '.join(r.payload)}")
    if not r.enabled:
        extras.append("DISABLED")
    return text + "; " + "; ".join(extras)


def _describe_change(c: CompiledRule) -> tuple[str, str]:
    """What the customer does for the rule to fire, and the segments a re-entry refers to."""
    on = c.rule.on
    if on.kind == "enter":
        assert c.target is not None
        article = "an" if on.lens[:1] in "aeiou" else "a"
        what = (
            f"enters {article} {on.lens} segment {c.target.describe()}"
            if c.target.describe() != "named like '*'"
            else f"enters any {on.lens} segment"
        )
        return what, "those segments"
    if on.kind == "exit":
        assert c.source is not None
        return f"leaves the {on.lens} segments {c.source.describe()}", "those segments"
    assert c.source is not None and c.target is not None
    what = f"moves in lens {on.lens} from a segment {c.source.describe()} to one {c.target.describe()}"
    return what, "the target segments"


def _describe_reentry(c: CompiledRule, scope: str) -> str:
    mode = c.rule.reentry.mode
    if mode == "after_exit":
        if c.rule.on.kind == "exit":
            return "fires again only after coming back into those segments and leaving again"
        return f"fires again only after leaving {scope}"
    if mode == "after_period":
        return f"fires again only {format_duration(c.reentry_period)} after it last fired"
    if mode == "once":
        return "fires at most once per customer"
    return "fires on every matching change"


def _describe_quiet(c: CompiledRule) -> str:
    if c.quiet is not None:
        how = "held until they end" if c.quiet.action == "hold" else "dropped"
        return f"quiet hours {c.quiet.describe()} ({how})"
    return "ignores quiet hours" if c.rule.ignore_quiet_hours else "no quiet hours"


def describe_rules(ruleset: RuleSet) -> list[str]:
    """One plain-words line per file-level setting and per rule (in priority order).

    Used by ``segmenter check-rules``.
    """
    lines: list[str] = []
    if ruleset.cap is not None and ruleset.cap.period is not None:
        lines.append(
            f"cap: at most {ruleset.cap.max} trigger(s) per customer across campaigns in any "
            f"{format_duration(ruleset.cap.period)}; when several rules fire on one change, higher priority "
            "wins (ties by rule name)"
        )
    if not ruleset.rules:
        lines.append("no rules")
    ordered = sorted(ruleset.rules, key=lambda r: (-r.priority, r.name))
    for rule in ordered:

        def report(field: str, msg: str, _name: str = rule.name) -> None:  # validated already: never called
            raise ConfigError(f"rule '{_name}', field '{field}': {msg}")

        compiled = _compile_rule(rule, ruleset, None, report)
        assert compiled is not None
        lines.append(_describe_rule(compiled, ruleset.cap))
    return lines
