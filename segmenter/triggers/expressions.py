"""The small languages inside a rules file: segment patterns, predicates and payload templates.

Everything here is parsed once, when the rules are loaded, into frozen objects
that the :class:`~segmenter.triggers.engine.TriggerEngine` evaluates cheaply.
Parse errors raise :class:`ExpressionError` (a ``ValueError``) with a sentence
saying what is wrong; the rules loader adds the file, the rule and the field.

Everything is bounded, so a rules file cannot make loading or rendering slow
or huge: conditions are at most :data:`MAX_CONDITION_CHARS` characters and
parse in linear time, segment patterns at most :data:`MAX_PATTERN_CHARS`,
format widths and precisions at most :data:`MAX_FORMAT_WIDTH`, payloads nest
at most :data:`MAX_PAYLOAD_DEPTH` levels and render to at most
:data:`MAX_PAYLOAD_CHARS` characters.

Examples
--------
>>> p = parse_predicate("recency_days between 30 and 90", known_features={"recency_days"})
>>> p.test_features({"recency_days": 45.0}), p.test_features({"recency_days": 12.0})
(True, False)
>>> s = parse_segment_pattern("*high spend*", lens="value")
>>> s.is_id, s.matches_ref("value-7", "High Spend · frequent")
(False, True)
>>> t = compile_template("You spent {features.spend:.0f}", known_features={"spend"})
>>> t.render({"features.spend": 212.4})
'You spent 212'
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from segmenter.events import CustomerEvent, EventType

__all__ = [
    "EVENT_FIELDS",
    "MAX_CONDITION_CHARS",
    "MAX_FORMAT_WIDTH",
    "MAX_PATTERN_CHARS",
    "MAX_PAYLOAD_CHARS",
    "MAX_PAYLOAD_DEPTH",
    "STRING_PLACEHOLDERS",
    "EventPredicate",
    "ExpressionError",
    "FeaturePredicate",
    "MissingFeatureError",
    "PayloadTemplate",
    "Predicate",
    "SegmentPattern",
    "Template",
    "compile_payload",
    "compile_template",
    "parse_predicate",
    "parse_segment_pattern",
]


MAX_CONDITION_CHARS = 1000
"""Longest accepted condition of a rule's ``when`` list."""
MAX_PATTERN_CHARS = 256
"""Longest accepted segment pattern."""
MAX_FORMAT_WIDTH = 200
"""Largest accepted width or precision in a payload template's format spec (``{customer_id:>20}``)."""
MAX_PAYLOAD_DEPTH = 16
"""Deepest accepted nesting of tables and lists in a rule's payload (the payload itself is level 1)."""
MAX_PAYLOAD_CHARS = 64 * 1024
"""Most characters a rule's payload may render to (estimated from its templates at load time)."""

_STRING_CHARS = 256
"""Upper estimate of a rendered string placeholder (ids are at most 128 characters, categories 256)."""
_NUMBER_CHARS = 330
"""Upper estimate of a rendered number without precision (``f"{1e308:f}"`` has 316 characters)."""


class ExpressionError(ValueError):
    """A pattern, predicate or template in a rules file cannot be parsed."""


class MissingFeatureError(LookupError):
    """A feature needed by a predicate or a payload template has no finite value."""

    def __init__(self, feature: str) -> None:
        super().__init__(feature)
        self.feature = feature


# --------------------------------------------------------------------------- segments

_GLOB_CHARS = frozenset("*?[")
_ID_LIKE = re.compile(r"^(?P<lens>[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*)-(?P<n>\d+)$")


@dataclass(frozen=True)
class SegmentPattern:
    """One way of naming segments: an exact segment id, or a glob over segment names.

    Name globs (``*``, ``?``, ``[abc]``, ``[!abc]``) match case-insensitively
    against the segment's current *name*; a plain text without glob characters
    matches that exact name. Ids (``value-3``) match exactly and are stable
    across renames, names are not.
    """

    text: str
    is_id: bool
    regex: re.Pattern[str] | None

    def matches_ref(self, segment_id: str, name: str) -> bool:
        """Whether the segment with this id and name matches."""
        if self.is_id:
            return segment_id == self.text
        assert self.regex is not None
        return self.regex.fullmatch(name) is not None


def _check_brackets(text: str) -> None:
    i = 0
    while i < len(text):
        if text[i] == "[":
            j = i + 1
            if j < len(text) and text[j] == "!":
                j += 1
            if j < len(text) and text[j] == "]":  # a leading ']' is literal inside a set
                j += 1
            close = text.find("]", j)
            if close < 0:
                raise ExpressionError(f"unclosed '[' at position {i} in name pattern {text!r}")
            if close == i + 1 or (close == i + 2 and text[i + 1] == "!"):
                raise ExpressionError(f"empty character set at position {i} in name pattern {text!r}")
            i = close + 1
        else:
            i += 1


def parse_segment_pattern(text: str, lens: str, lens_names: Sequence[str] = ()) -> SegmentPattern:
    """Parse a segment reference of a rule on ``lens``.

    A text of the form ``f"{lens}-{n}"`` is a segment id. A text that looks like
    an id of another lens (``engagement-2`` in a rule on ``value``) is an error,
    as are empty patterns and unclosed ``[``. Everything else is a name glob.

    Raises
    ------
    ExpressionError
        On an empty or malformed pattern, or an id of another lens.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError(
            "empty segment pattern; write a segment id such as 'value-3' or a name glob such as '*high spend*'"
        )
    if len(text) > MAX_PATTERN_CHARS:
        raise ExpressionError(f"segment pattern of {len(text)} characters; the limit is {MAX_PATTERN_CHARS}")
    if text != text.strip():
        raise ExpressionError(f"segment pattern {text!r} has leading or trailing spaces")
    has_glob = any(c in _GLOB_CHARS for c in text)
    if not has_glob:
        m = _ID_LIKE.match(text)
        if m is not None:
            if m.group("lens") == lens:
                return SegmentPattern(text=text, is_id=True, regex=None)
            owner = m.group("lens")
            where = f"lens {owner!r}" if owner in lens_names else f"a lens named {owner!r}"
            raise ExpressionError(
                f"{text!r} looks like a segment id of {where}, but the rule is on lens {lens!r}; "
                f"ids of this lens look like '{lens}-3'"
            )
    if has_glob:
        _check_brackets(text)
    regex = re.compile(fnmatch.translate(text), re.IGNORECASE | re.DOTALL)
    return SegmentPattern(text=text, is_id=False, regex=regex)


# --------------------------------------------------------------------------- predicates

EVENT_FIELDS: tuple[str, ...] = ("type", "category", "channel")
"""Event fields that rule predicates may test."""

_OPS = ("<=", ">=", "==", "!=", "<", ">")
_LHS = re.compile(r"(?P<lhs>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)(?P<rest>.*)", re.DOTALL)
"""Applied to the stripped condition: a lazy ``.*?`` followed by ``\\s*$`` would be quadratic in a run of spaces."""
_CMP = re.compile(r"^(?P<op><=|>=|==|!=|<|>)\s*(?P<value>.+)$", re.DOTALL)
_NUM_CMP = re.compile(r"^(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[^\s<>=!]+)$")
_BETWEEN = re.compile(r"^between\s+(?P<lo>\S+)\s+and\s+(?P<hi>\S+)$", re.IGNORECASE)
_IN = re.compile(r"^(?P<op>not\s+in|in)\s*\[(?P<values>.*)\]$", re.IGNORECASE | re.DOTALL)

FeatureOp = Literal["<", "<=", ">", ">=", "==", "!=", "between"]
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
"""The comparison of each feature operator but ``between``."""
EventOp = Literal["==", "!=", "in", "not in"]


@dataclass(frozen=True)
class FeaturePredicate:
    """A comparison of one customer feature with a number (``between`` is inclusive)."""

    text: str
    feature: str
    op: FeatureOp
    value: float
    high: float = math.nan

    def test_features(self, features: Mapping[str, float]) -> bool:
        """Evaluate on the customer's features.

        Raises
        ------
        MissingFeatureError
            If the feature is absent or not finite.
        """
        x = features.get(self.feature)
        if x is None or not math.isfinite(x):
            raise MissingFeatureError(self.feature)
        if self.op == "between":
            return self.value <= x <= self.high
        return _COMPARE[self.op](x, self.value)


@dataclass(frozen=True)
class EventPredicate:
    """A test of one event field (``type``, ``category``, ``channel``) against strings.

    An event without the field (no ``category``) fails ``==`` and ``in`` and
    passes ``!=`` and ``not in``.
    """

    text: str
    field: str
    op: EventOp
    values: tuple[str, ...]

    def test_event(self, event: CustomerEvent) -> bool:
        """Evaluate on the event that caused the change."""
        raw = getattr(event, self.field)
        value = None if raw is None else str(raw.value if isinstance(raw, EventType) else raw)
        hit = value is not None and value in self.values
        return hit if self.op in ("==", "in") else not hit


Predicate = FeaturePredicate | EventPredicate


def _number(token: str, text: str) -> float:
    try:
        value = float(token)
    except ValueError:
        raise ExpressionError(f"{token!r} is not a number in {text!r}") from None
    if not math.isfinite(value):
        raise ExpressionError(f"{token!r} is not a finite number in {text!r}")
    return value


def _unquote(token: str) -> str:
    token = token.strip()
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "'\"":
        return token[1:-1]
    return token


def _event_values(field: str, values: Sequence[str], text: str) -> tuple[str, ...]:
    out = tuple(_unquote(v) for v in values)
    if not out or any(not v for v in out):
        raise ExpressionError(f"empty value in {text!r}")
    if field == "type":
        allowed = {t.value for t in EventType}
        for v in out:
            if v not in allowed:
                raise ExpressionError(f"unknown event type {v!r} in {text!r}; known: {', '.join(sorted(allowed))}")
    return out


def split_condition(text: str) -> tuple[str, str] | None:
    """``(name, rest)`` of a condition, both stripped, or ``None`` if it does not start with a name.

    Linear in the length of ``text``.

    Examples
    --------
    >>> split_condition("  features.spend >  200 "), split_condition("> 3")
    (('features.spend', '>  200'), None)
    """
    m = _LHS.fullmatch(text.strip())
    if m is None:
        return None
    return m.group("lhs"), m.group("rest").strip()


def parse_predicate(text: str, known_features: Mapping[str, object] | Sequence[str] | set[str]) -> Predicate:
    """Parse one condition of a rule's ``when`` list.

    Feature conditions: ``spend > 200``, ``features.recency_days <= 30``,
    ``conversion between 0.1 and 0.5`` (operators ``<``, ``<=``, ``>``, ``>=``,
    ``==``, ``!=``, ``between``). Event conditions: ``event.type == purchase``,
    ``event.category != 'gift cards'``, ``event.channel in [web, app]``,
    ``event.type not in [refund]`` (fields ``type``, ``category``, ``channel``).

    Raises
    ------
    ExpressionError
        On a syntax error, an unknown feature or event field, or a bad number.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("empty condition")
    if len(text) > MAX_CONDITION_CHARS:
        raise ExpressionError(f"condition of {len(text)} characters; the limit is {MAX_CONDITION_CHARS}")
    split = split_condition(text)
    if split is None:
        raise ExpressionError(f"cannot parse {text!r}; write e.g. 'spend > 200' or 'event.type == purchase'")
    lhs, rest = split
    namespace, _, name = lhs.rpartition(".")
    if namespace == "event":
        return _event_predicate(text, name, rest)
    if namespace not in ("", "features"):
        raise ExpressionError(f"unknown name {lhs!r} in {text!r}; use a feature name or event.<field>")
    if name not in known_features:
        hint = f"; for the event's {name} write event.{name}" if name in EVENT_FIELDS else ""
        raise ExpressionError(
            f"unknown feature {name!r} in {text!r}{hint}; known features: {', '.join(sorted(known_features))}"
        )
    return _feature_predicate(text, name, rest)


def _event_predicate(text: str, name: str, rest: str) -> EventPredicate:
    """``event.<name> <rest>``: ``==``, ``!=``, ``in [...]`` or ``not in [...]``."""
    if name not in EVENT_FIELDS:
        raise ExpressionError(f"unknown event field {name!r} in {text!r}; known: {', '.join(EVENT_FIELDS)}")
    if (mi := _IN.match(rest)) is not None:
        op: EventOp = "in" if mi.group("op").lower() == "in" else "not in"
        values = [v for v in mi.group("values").split(",")]
        if len(values) == 1 and not values[0].strip():
            raise ExpressionError(f"empty list in {text!r}")
        return EventPredicate(text=text, field=name, op=op, values=_event_values(name, values, text))
    if (mc := _CMP.match(rest)) is not None and mc.group("op") in ("==", "!="):
        eop: EventOp = "==" if mc.group("op") == "==" else "!="
        return EventPredicate(text=text, field=name, op=eop, values=_event_values(name, [mc.group("value")], text))
    raise ExpressionError(
        f"cannot parse {text!r}; event fields take ==, !=, in [...] or not in [...], e.g. 'event.type == purchase'"
    )


def _feature_predicate(text: str, name: str, rest: str) -> FeaturePredicate:
    """``<feature> <rest>``: a comparison with a number, or ``between <low> and <high>``."""
    if (mb := _BETWEEN.match(rest)) is not None:
        lo, hi = _number(mb.group("lo"), text), _number(mb.group("hi"), text)
        if lo > hi:
            raise ExpressionError(f"empty range in {text!r}: {lo:g} is above {hi:g}")
        return FeaturePredicate(text=text, feature=name, op="between", value=lo, high=hi)
    if (mc := _NUM_CMP.match(rest)) is not None:
        fop: FeatureOp = mc.group("op")  # type: ignore[assignment]  # the regex only admits these
        return FeaturePredicate(text=text, feature=name, op=fop, value=_number(mc.group("value").strip(), text))
    raise ExpressionError(
        f"cannot parse {text!r}; write '<feature> <op> <number>' with op one of {', '.join(_OPS)}, "
        f"or '<feature> between <low> and <high>'"
    )


# --------------------------------------------------------------------------- templates

STRING_PLACEHOLDERS: tuple[str, ...] = (
    "customer_id",
    "lens",
    "campaign",
    "rule",
    "channel",
    "cause",
    "event_ts",
    "segment.id",
    "segment.name",
    "from_segment.id",
    "from_segment.name",
    "to_segment.id",
    "to_segment.name",
    "event.id",
    "event.type",
    "event.category",
    "event.channel",
)
"""Placeholders other than ``features.<name>`` allowed in payload templates (``""`` when absent)."""

_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Template:
    """A payload string with ``{placeholder:format}`` fields.

    A string that is exactly one placeholder without a format spec
    (``"{features.spend}"``) renders to the raw value (a number stays a number);
    anything else renders to a string.
    """

    text: str
    parts: tuple[tuple[str, str | None, str], ...]
    """(literal text, placeholder or None, format spec)."""

    @property
    def whole(self) -> bool:
        """Whether the template is one bare placeholder (renders to the raw value)."""
        return len(self.parts) == 1 and self.parts[0][0] == "" and self.parts[0][1] is not None and not self.parts[0][2]

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders used, in order."""
        return tuple(p for _, p, _ in self.parts if p is not None)

    def render(self, values: Mapping[str, object]) -> object:
        """Fill in the placeholders.

        Raises
        ------
        MissingFeatureError
            If a ``features.<name>`` placeholder has no value in ``values``.
        """
        if self.whole:
            field = self.parts[0][1]
            assert field is not None
            return _lookup(values, field)
        out: list[str] = []
        for literal, field, spec in self.parts:
            out.append(literal)
            if field is not None:
                out.append(format(_lookup(values, field), spec))
        return "".join(out)


def _lookup(values: Mapping[str, object], field: str) -> object:
    if field in values:
        return values[field]
    if field.startswith("features."):
        raise MissingFeatureError(field.removeprefix("features."))
    return ""


def compile_template(text: str, known_features: Mapping[str, object] | Sequence[str] | set[str]) -> Template:
    """Parse a payload string; unknown placeholders and bad format specs are errors.

    Raises
    ------
    ExpressionError
        Naming the placeholder and what is allowed.
    """
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise ExpressionError(f"bad template {text!r}: {exc}; write literal braces as '{{{{' and '}}}}'") from None
    parts: list[tuple[str, str | None, str]] = []
    for literal, field, raw_spec, conversion in parsed:
        if field is None:
            parts.append((literal, None, ""))
            continue
        if conversion:
            raise ExpressionError(f"conversion '!{conversion}' is not supported in {{{field}!{conversion}}}")
        spec = raw_spec or ""
        if "{" in spec or "}" in spec:
            raise ExpressionError(f"nested placeholders are not supported in {{{field}:{spec}}}")
        _check_widths(field, spec)
        if field.startswith("features."):
            name = field.removeprefix("features.")
            if name not in known_features:
                raise ExpressionError(
                    f"unknown placeholder {{{field}}}: no feature {name!r}; "
                    f"known features: {', '.join(sorted(known_features))}"
                )
            sample: object = 1.5
        elif field in STRING_PLACEHOLDERS:
            sample = "x"
        else:
            allowed = ", ".join(["features.<name>", *STRING_PLACEHOLDERS])
            raise ExpressionError(f"unknown placeholder {{{field}}}; allowed: {allowed}")
        try:
            format(sample, spec)
        except (ValueError, TypeError) as exc:
            raise ExpressionError(f"bad format spec {spec!r} for {{{field}}}: {exc}") from None
        parts.append((literal, field, spec))
    return Template(text=text, parts=tuple(parts))


_DIGITS = re.compile(r"\d+")


def _check_widths(field: str, spec: str) -> None:
    """Refuse a width or precision above :data:`MAX_FORMAT_WIDTH` (checked before anything is formatted)."""
    for run in _DIGITS.findall(spec):
        digits = run.lstrip("0")
        if len(digits) > len(str(MAX_FORMAT_WIDTH)) or int(digits or "0") > MAX_FORMAT_WIDTH:
            raise ExpressionError(
                f"format spec {spec!r} of {{{field}}} asks for a width or precision of {run}; "
                f"the limit is {MAX_FORMAT_WIDTH}"
            )


def _spec_chars(spec: str) -> int:
    """The largest width or precision in a (checked) format spec, 0 if none."""
    return max((int(run) for run in _DIGITS.findall(spec)), default=0)


def max_rendered_chars(template: Template) -> int:
    """An upper estimate of how long ``template`` renders (literal text plus each placeholder's widest value).

    Examples
    --------
    >>> max_rendered_chars(compile_template("id {customer_id:>20}", known_features=()))
    279
    """
    total = 0
    for literal, field, spec in template.parts:
        total += len(literal)
        if field is not None:
            base = _NUMBER_CHARS if field.startswith("features.") else _STRING_CHARS
            total += base + _spec_chars(spec)
    return total


PayloadTemplate = dict[str, Any]
"""A payload with every string replaced by a :class:`Template` (nested dicts and lists kept)."""


def compile_payload(
    payload: Mapping[str, Any], known_features: Mapping[str, object] | Sequence[str] | set[str], path: str = "payload"
) -> PayloadTemplate:
    """Compile every string of a payload (recursively) into a :class:`Template`.

    Raises
    ------
    ExpressionError
        The message starts with the dotted path of the offending value; also
        when the payload nests deeper than :data:`MAX_PAYLOAD_DEPTH` or may
        render to more than :data:`MAX_PAYLOAD_CHARS` characters.
    """
    compiler = _PayloadCompiler(known_features)
    compiled = compiler.walk(dict(payload), path, 0)
    assert isinstance(compiled, dict)
    if compiler.size > MAX_PAYLOAD_CHARS:
        raise ExpressionError(
            f"{path}: may render to {compiler.size:,} characters per trigger; the limit is {MAX_PAYLOAD_CHARS:,} "
            "(fewer or narrower placeholders, shorter texts)"
        )
    return compiled


class _PayloadCompiler:
    """One :func:`compile_payload` walk; ``size`` bounds the characters the payload may render to."""

    def __init__(self, known_features: Mapping[str, object] | Sequence[str] | set[str]) -> None:
        self.known_features = known_features
        self.size = 0

    def walk(self, value: Any, where: str, depth: int) -> Any:
        self.size += 8  # separators, quotes, a number's digits
        if isinstance(value, Mapping | list | tuple):
            if depth >= MAX_PAYLOAD_DEPTH:
                raise ExpressionError(f"{where}: nested deeper than {MAX_PAYLOAD_DEPTH} levels")
            if isinstance(value, Mapping):
                return self._mapping(value, where, depth)
            return [self.walk(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        return self._scalar(value, where)

    def _mapping(self, value: Mapping[Any, Any], where: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ExpressionError(f"{where}: keys must be strings, got {key!r}")
            self.size += len(key)
            out[key] = self.walk(item, f"{where}.{key}", depth + 1)
        return out

    def _scalar(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            try:
                template = compile_template(value, self.known_features)
            except ExpressionError as exc:
                raise ExpressionError(f"{where}: {exc}") from None
            self.size += max_rendered_chars(template)
            return template
        if isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ExpressionError(f"{where}: not a finite number")
            return value
        raise ExpressionError(
            f"{where}: {type(value).__name__} values are not allowed (use strings, numbers, booleans, tables, lists)"
        )


def render_payload(payload: PayloadTemplate, values: Mapping[str, object]) -> dict[str, Any]:
    """Render a compiled payload.

    Raises
    ------
    MissingFeatureError
        If a feature placeholder has no value.
    """

    def walk(value: Any) -> Any:
        if isinstance(value, Template):
            return value.render(values)
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    out = walk(payload)
    assert isinstance(out, dict)
    return out
