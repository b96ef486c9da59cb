"""The output message contract (docs/contracts.md, "Output messages").

The core builds these models; the edge (Kafka consumer, replay CLI) stamps
``emitted_at`` with its wall clock (the core has none) and serialises them with
:func:`encode`. Every message carries ``kind``; the Kafka edge also sets a
``kind`` header and keys the record by :func:`message_key`.

Examples
--------
>>> ref = SegmentRef(id="value-3", name="high spend · frequent")
>>> msg = SegmentLifecycle(lens="value", action="born", segment=ref, related=[], model_version=1, profile={})
>>> encode(stamp(msg, "2026-01-01T00:00:00+00:00"))[:40]
b'{"kind":"segment_lifecycle","lens":"valu'
>>> encode(msg, "2026-01-01T00:00:00+00:00") == encode(stamp(msg, "2026-01-01T00:00:00+00:00"))
True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Self

import orjson
from pydantic import BaseModel, ConfigDict

from segmenter.unvalidated import adopt, build

Cause = Literal["event", "inactivity", "model", "erasure"]
LifecycleAction = Literal["born", "merged", "split", "retired", "renamed"]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    _template: ClassVar[dict[str, Any]] = {}
    """Every field in declaration order, with its default (``None`` where it has none)."""
    _required: ClassVar[frozenset[str]] = frozenset()
    """The fields without a default."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._template = {
            name: None if info.is_required() else info.get_default(call_default_factory=True)
            for name, info in cls.model_fields.items()
        }
        cls._required = frozenset(name for name, info in cls.model_fields.items() if info.is_required())

    @classmethod
    def trusted(cls, **fields: Any) -> Self:
        """Build a message from values that already have their fields' types, without validation.

        The core's hot path (one ``segment_change`` per move): every field
        without a default must be given, each as the type it is declared with
        (``float`` where a float is declared, nested messages as messages).
        Anything from outside the core goes through the validating constructor.
        """
        return build(cls, fields, cls._template, fields)

    @classmethod
    def trusted_many(cls, complete: Iterable[dict[str, Any]]) -> list[Self]:
        """Many messages at once, as :meth:`trusted` given their fields without a default, from complete dicts.

        Each dict holds every field in declaration order (defaults written out, each value typed as
        :meth:`trusted` requires) and becomes its message's ``__dict__`` (not copied: hand over new dicts).
        """
        return adopt(cls, cls._required, complete)


class SegmentRef(_Message):
    """A segment as named in messages: its stable id and its current name."""

    id: str
    name: str


class Explanation(_Message):
    """Why a customer moved.

    ``top_features`` lists the features that pulled the customer towards the
    new segment most, as ``{"feature", "value", "z", "contribution"}`` objects.
    """

    top_features: list[dict[str, Any]]
    distance_to_old: float | None
    distance_to_new: float | None
    runner_up: SegmentRef | None
    distance_to_runner_up: float | None


class SegmentChange(_Message):
    """A customer entered, left or moved between segments of one lens."""

    kind: Literal["segment_change"] = "segment_change"
    customer_id: str
    lens: str
    from_segment: SegmentRef | None
    to_segment: SegmentRef | None
    cause: Cause
    cause_event_id: str | None
    event_ts: str
    emitted_at: str | None = None
    model_version: int
    distance: float | None
    features: dict[str, float]
    explanation: Explanation | None


class CampaignTrigger(_Message):
    """A campaign rule fired on a segment change; ``trigger_id`` is an idempotency key."""

    kind: Literal["campaign_trigger"] = "campaign_trigger"
    trigger_id: str
    customer_id: str
    campaign: str
    channel: str
    rule: str
    lens: str
    segment: SegmentRef
    cause_event_id: str | None
    event_ts: str
    emitted_at: str | None = None
    payload: dict[str, Any]


class SegmentLifecycle(_Message):
    """A segment was born, merged, split, retired or renamed."""

    kind: Literal["segment_lifecycle"] = "segment_lifecycle"
    lens: str
    action: LifecycleAction
    segment: SegmentRef
    related: list[str]
    model_version: int
    profile: dict[str, Any]
    emitted_at: str | None = None


OutputMessage = SegmentChange | CampaignTrigger | SegmentLifecycle
KINDS = ("segment_change", "campaign_trigger", "segment_lifecycle")


def stamp(message: OutputMessage, emitted_at: str) -> OutputMessage:
    """Return a copy of ``message`` with ``emitted_at`` set (ISO-8601, UTC)."""
    return message.model_copy(update={"emitted_at": emitted_at})


def encode(message: OutputMessage, emitted_at: str | None = None) -> bytes:
    """Serialise a message to compact UTF-8 JSON, with ``emitted_at`` set if given (as :func:`stamp`).

    A ``segment_change`` (most of the output) is written from its validated
    fields directly, the bytes ``model_dump(mode="json")`` gives (its fields
    hold only strings, numbers, ``None``, lists and dicts of them, and nested
    messages, which orjson asks :func:`_fields` for); the other kinds go
    through pydantic's serialiser.
    """
    return _encode(message, emitted_at, 0)


def encode_lines(messages: Iterable[OutputMessage], emitted_at: str | None = None) -> bytes:
    """Every message as :func:`encode` writes it, each followed by a newline (JSON lines), as one ``bytes``."""
    newline, dumps, change, wire_of = orjson.OPT_APPEND_NEWLINE, orjson.dumps, SegmentChange, _change_wire
    if emitted_at is not None:
        return b"".join([_encode(m, emitted_at, newline) for m in messages])
    return b"".join([dumps(wire_of(m) if type(m) is change else m.model_dump(mode="json"), None, newline)
                     for m in messages])  # fmt: skip


def _encode(message: OutputMessage, emitted_at: str | None, option: int) -> bytes:
    wire = _change_wire(message) if type(message) is SegmentChange else message.model_dump(mode="json")
    if emitted_at is not None:
        wire["emitted_at"] = emitted_at
    return orjson.dumps(wire, None, option)


def _change_wire(change: SegmentChange) -> dict[str, Any]:
    """A validated change's fields in declaration order, its nested messages as their field dicts (read only).

    (Measured: faster than orjson's ``default`` hook for the nested messages, by about 2x.)
    """
    wire = change.__dict__.copy()
    if change.from_segment is not None:
        wire["from_segment"] = change.from_segment.__dict__
    if change.to_segment is not None:
        wire["to_segment"] = change.to_segment.__dict__
    explanation = change.explanation
    if explanation is not None:
        wire["explanation"] = why = explanation.__dict__.copy()
        if explanation.runner_up is not None:
            why["runner_up"] = explanation.runner_up.__dict__
    return wire


def message_key(message: OutputMessage) -> bytes:
    """The Kafka key: the customer id, or ``lens`` for lifecycle messages."""
    if isinstance(message, SegmentLifecycle):
        return message.lens.encode()
    return message.customer_id.encode()
