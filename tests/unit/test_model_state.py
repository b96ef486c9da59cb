"""segmenter.model_state: what the model-state records hold, what they refuse, and that a refusal changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from segmenter import codec
from segmenter.errors import StateError
from segmenter.model_state import (
    STATE_VERSION,
    Counters,
    decode_model_parts,
    decode_model_state,
    encode_model_parts,
)
from segmenter.pipeline import Segmenter
from tests.unit.test_pipeline import CFG, EVENTS, RULES, run


@pytest.fixture(scope="module")
def trained() -> Segmenter:
    seg = Segmenter(CFG, RULES)
    run(seg, EVENTS)
    return seg


def _tree(seg: Segmenter) -> dict[str, Any]:
    tree: dict[str, Any] = codec.decode(seg.model_state(), "model-state", STATE_VERSION)
    return tree


def _names(seg: Segmenter) -> tuple[list[str], list[tuple[str, ...]]]:
    return [lens.name for lens in seg.lenses], [tuple(lens.feature_names) for lens in seg.lenses]


def test_decoded_counters_are_the_cores_and_the_parts_decode_to_the_same(trained: Segmenter) -> None:
    names, features = _names(trained)
    lenses, core = decode_model_state(trained.model_state(), names, features)
    stats = trained.stats()
    c = core.counters
    assert (c.events, c.late, c.duplicates, c.erasures, c.isolated) == (
        stats.events, stats.late, stats.duplicates, stats.erasures, stats.isolated)  # fmt: skip
    assert c.changes == stats.changes and sum(c.changes.values()) > 0
    assert list(lenses) == names
    plenses, pcore = decode_model_parts(trained.model_parts(), names, features)
    assert pcore.counters == c and pcore.clock == core.clock and pcore.triggers == core.triggers
    assert codec.encode("x", 1, plenses) == codec.encode("x", 1, lenses)
    # encoding the decoded values again gives the same bytes: nothing is lost or reordered
    assert encode_model_parts(lenses, core) == trained.model_parts()


def test_the_counters_keep_their_record_order() -> None:
    # the record's bytes depend on this order (outputs and checkpoints are compared byte for byte)
    assert list(Counters().state()) == [
        "events", "refine_round", "late", "isolated", "duplicates", "erasures", "after_erasure", "changes",
        "triggers"]  # fmt: skip


def test_counters_absent_from_older_states_read_as_zero_and_others_are_required(trained: Segmenter) -> None:
    counters = dict(_tree(trained)["counters"])
    del counters["isolated"], counters["after_erasure"]
    older = Counters.from_state(counters)
    assert older.isolated == 0 and older.after_erasure == 0 and older.events == trained.stats().events
    del counters["late"]
    with pytest.raises(StateError, match="counter late"):
        Counters.from_state(counters)


@pytest.mark.parametrize(
    ("where", "bad", "message"),
    [
        ("features", [["nope"], ["nope"]], "features"),
        ("counters", {"events": -1}, "counter events"),
        ("clock", [None, None, None, None], "clock"),
        ("erasures", {"keys": [2, 1]}, "erasure marker"),
    ],
)
def test_a_refused_model_state_leaves_the_core_as_it_was(
    trained: Segmenter, where: str, bad: Any, message: str
) -> None:
    tree = _tree(trained)
    tree[where] = {**tree[where], **bad} if where == "counters" else bad
    record = codec.encode("model-state", STATE_VERSION, tree)
    target = Segmenter(CFG, RULES)
    run(target, EVENTS[:200])
    before = (target.model_state(), target.snapshot())
    with pytest.raises(StateError, match=message):
        target.load_model_state(record)
    assert (target.model_state(), target.snapshot()) == before


def test_a_refused_lens_state_leaves_the_clock_and_counters_as_they_were(trained: Segmenter) -> None:
    tree = _tree(trained)
    name = trained.lenses[-1].name
    tree["lenses"] = {**tree["lenses"], name: {"version": -1}}
    target = Segmenter(CFG, RULES)
    run(target, EVENTS[:200])
    before = target.model_state()
    with pytest.raises(StateError):
        target.load_model_state(codec.encode("model-state", STATE_VERSION, tree))
    assert target.model_state() == before
