"""``encode``'s direct path for ``segment_change`` writes the bytes pydantic's serialiser writes."""

from __future__ import annotations

import orjson
import pytest

from segmenter.outputs import (
    CampaignTrigger,
    Explanation,
    OutputMessage,
    SegmentChange,
    SegmentLifecycle,
    SegmentRef,
    encode,
    encode_lines,
    stamp,
)

NOW = "2026-01-01T00:00:00.123456+00:00"
REF = SegmentRef(id="value-3", name="high spend · frequent")
OTHER = SegmentRef(id="value-1", name="lapsing")
FULL = Explanation(
    top_features=[{"feature": "spend", "value": 12.5, "z": 1.25, "contribution": 0.5}],
    distance_to_old=1.5,
    distance_to_new=0.25,
    runner_up=OTHER,
    distance_to_runner_up=0.75,
)
EMPTY = Explanation(top_features=[], distance_to_old=None, distance_to_new=None, runner_up=None,
                    distance_to_runner_up=None)  # fmt: skip


def _change(**over: object) -> SegmentChange:
    fields: dict[str, object] = {
        "customer_id": "c-1", "lens": "value", "from_segment": OTHER, "to_segment": REF, "cause": "event",
        "cause_event_id": "e-1", "event_ts": "2026-01-01T00:00:00+00:00", "model_version": 2, "distance": 0.25,
        "features": {"spend": 12.5, "frequency": 3}, "explanation": FULL,
    }  # fmt: skip
    fields.update(over)
    return SegmentChange.model_validate(fields)


MESSAGES: list[OutputMessage] = [
    _change(),
    _change(from_segment=None, cause="inactivity", cause_event_id=None, explanation=EMPTY),
    _change(to_segment=None, distance=None, explanation=None, cause="erasure", features={}),
    _change(features={"spend": float("nan")}, distance=1e300),
    SegmentLifecycle(lens="value", action="born", segment=REF, related=[], model_version=1, profile={"size": 0}),
    CampaignTrigger(trigger_id="t", customer_id="c-1", campaign="win", channel="email", rule="r", lens="value",
                    segment=REF, cause_event_id=None, event_ts="2026-01-01T00:00:00+00:00", payload={"k": [1]}),
]  # fmt: skip


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.kind)
def test_encode_is_pydantic_bytes(message: OutputMessage) -> None:
    assert encode(message) == orjson.dumps(message.model_dump(mode="json"))


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.kind)
def test_encode_with_emitted_at_is_stamp_then_encode(message: OutputMessage) -> None:
    expected = orjson.dumps(stamp(message, NOW).model_dump(mode="json"))
    assert encode(message, NOW) == expected
    assert orjson.loads(encode(message, NOW))["emitted_at"] == NOW


def test_encode_leaves_the_message_unstamped() -> None:
    message = _change()
    encode(message, NOW)
    assert message.emitted_at is None


@pytest.mark.parametrize("message", [*MESSAGES, REF, FULL, EMPTY], ids=lambda m: type(m).__name__)
def test_trusted_builds_what_validation_builds(message: OutputMessage | SegmentRef | Explanation) -> None:
    given = {name: value for name, value in message.__dict__.items() if name in message.model_fields_set}
    built = type(message).trusted(**given)
    assert built == message
    assert list(built.__dict__) == list(message.__dict__)
    assert built.model_dump(mode="json") == message.model_dump(mode="json")
    if isinstance(built, SegmentChange | CampaignTrigger | SegmentLifecycle):
        assert isinstance(message, SegmentChange | CampaignTrigger | SegmentLifecycle)
        assert encode(built, NOW) == encode(message, NOW)


def test_trusted_fills_defaults() -> None:
    change = _change()
    given = {name: value for name, value in change.__dict__.items() if name not in ("kind", "emitted_at")}
    built = SegmentChange.trusted(**given)
    assert built.kind == "segment_change"
    assert built.emitted_at is None
    assert built == change


@pytest.mark.parametrize("emitted_at", [None, NOW])
def test_encode_lines_is_each_message_encoded_on_its_own_line(emitted_at: str | None) -> None:
    assert encode_lines(MESSAGES, emitted_at) == b"".join(encode(m, emitted_at) + b"\n" for m in MESSAGES)
    assert encode_lines([], emitted_at) == b""


@pytest.mark.parametrize("message", [m for m in MESSAGES if isinstance(m, SegmentChange)] + [FULL, EMPTY],
                         ids=lambda m: type(m).__name__)  # fmt: skip
def test_trusted_many_builds_what_validation_builds(message: SegmentChange | Explanation) -> None:
    complete = [dict(message.__dict__), dict(message.__dict__)]
    built = type(message).trusted_many(complete)
    assert built == [message, message]
    assert built[0] is not built[1]
    assert built[0].__dict__ is complete[0]
    for b in built:
        assert b.model_fields_set == message.model_fields_set
        assert list(b.__dict__) == list(message.__dict__)
        assert b.model_dump(mode="json") == message.model_dump(mode="json")
    assert built[0].model_fields_set is not built[1].model_fields_set  # a copy each: model_copy may add to it
    first = built[0]
    if isinstance(first, SegmentChange):
        assert first.emitted_at is None
        assert stamp(first, NOW) == first.model_copy(update={"emitted_at": NOW})
