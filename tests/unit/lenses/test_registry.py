"""Segment registry: matching, lifecycle, id stability and never-reused ids."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter.errors import StateError
from segmenter.lenses.registry import CONTINUITY_FACTOR, SegmentRegistry
from segmenter.lenses.scaling import ScalerSnapshot

SNAP = ScalerSnapshot(heavy=(False, False), mean=(0.0, 0.0), std=(1.0, 1.0))


def _reg(**kw: int) -> SegmentRegistry:
    return SegmentRegistry(
        match_threshold=1.0, retire_after=kw.get("retire_after", 1), max_segments=kw.get("max_segments", 10)
    )


def _acts(result) -> list[tuple[str, int, list[int]]]:
    return [(e.action, e.segment, e.related) for e in result.events]


def test_born_then_renumbered_centers_keep_ids() -> None:
    reg = _reg()
    assert _acts(reg.update(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]), SNAP)) == [
        ("born", 1, []),
        ("born", 2, []),
        ("born", 3, []),
    ]
    # DBSTREAM-style renumbering plus a little movement: same ids, no events.
    res = reg.update(np.array([[0.1, 5.0], [0.2, 0.1], [5.1, -0.1]]), SNAP)
    assert res.events == [] and res.mapping == {0: 3, 1: 1, 2: 2}
    assert reg.segments[1].center == [0.2, 0.1]


def test_split_merge_retire_and_no_reuse() -> None:
    reg = _reg(retire_after=2)
    reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)
    # segment 1 becomes two (0.8 apart: both within the threshold of the old center)
    res = reg.update(np.array([[-0.4, 0.0], [0.4, 0.0], [5.0, 0.0]]), SNAP)
    assert _acts(res) == [("born", 3, [1]), ("split", 1, [3])]
    # 1 and 3 collapse onto one center: 3 is merged into 1
    res = reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)
    assert _acts(res) == [("merged", 3, [1])]
    assert not reg.is_live(3) and reg.segments[3].merged_into == 1
    # segment 2 disappears: retired only after two refreshes in a row
    assert _acts(reg.update(np.array([[0.0, 0.0]]), SNAP)) == []
    assert reg.is_live(2)
    assert _acts(reg.update(np.array([[0.0, 0.0]]), SNAP)) == [("retired", 2, [])]
    # a cluster reappears where 2 was: a new number, never 2 or 3 again
    assert _acts(reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)) == [("born", 4, [])]
    assert reg.live() == [1, 4]


def test_far_jump_is_not_a_continuation_and_fragments_are_ignored() -> None:
    reg = _reg()
    reg.update(np.array([[0.0, 0.0]]), SNAP)
    res = reg.update(np.array([[0.1, 0.0], [0.3, 0.0], [9.0, 9.0]]), SNAP)  # 0.3: a fragment of 1
    assert _acts(res) == [("born", 2, [])]
    assert res.mapping == {0: 1, 2: 2}


def test_max_segments_bound() -> None:
    reg = _reg(max_segments=2)
    res = reg.update(np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]]), SNAP)
    assert [e.segment for e in res.events] == [1, 2] and len(reg.live()) == 2


def test_membership_sizes_and_state_round_trip() -> None:
    reg = _reg()
    reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)
    reg.membership(None, 1)
    reg.membership(None, 1)
    reg.membership(1, 2)
    reg.membership(2, 2)
    assert (reg.segments[1].size, reg.segments[2].size) == (1, 1)
    other = _reg()
    other.load_state(reg.state())
    assert other.state() == reg.state()
    assert other.update(np.array([[9.0, 9.0]]), SNAP).events[-1].segment == 3


def test_threshold_uses_the_snapshot_scale() -> None:
    reg = _reg()
    wide = ScalerSnapshot(heavy=(False, False), mean=(0.0, 0.0), std=(10.0, 10.0))
    reg.update(np.array([[0.0, 0.0]]), wide)
    # 0.5 scaled units with std 10 = 5 original units: still a match
    assert reg.update(np.array([[0.5, 0.0]]), wide).events == []
    assert reg.segments[1].center == [5.0, 0.0]


def test_continuity_keeps_a_drifting_center_and_refuses_a_jump() -> None:
    """A center with a stable model index keeps its segment while it drifts within
    CONTINUITY_FACTOR thresholds per refresh; without the hint, or beyond it, it does not."""
    snap = ScalerSnapshot(heavy=(False, False), mean=(0.0, 0.0), std=(1.0, 1.0))
    with_hint = SegmentRegistry(match_threshold=1.0, retire_after=1, max_segments=10)
    without = SegmentRegistry(match_threshold=1.0, retire_after=1, max_segments=10)
    for reg in (with_hint, without):
        reg.update(np.array([[0.0, 0.0], [10.0, 10.0]]), snap)
    drift = np.array([[2.0, 0.0], [10.0, 10.0]])  # 2 thresholds: farther than matching alone allows
    assert with_hint.update(drift, snap, {0: 1, 1: 2}).mapping == {0: 1, 1: 2}
    assert [e.action for e in with_hint.update(drift, snap, {0: 1, 1: 2}).events] == []
    assert without.update(drift, snap).mapping == {0: 3, 1: 2}
    jump = np.array([[2.0 + CONTINUITY_FACTOR + 0.5, 0.0], [10.0, 10.0]])
    result = with_hint.update(jump, snap, {0: 1, 1: 2})
    assert result.mapping == {0: 3, 1: 2}
    assert [(e.action, e.segment) for e in result.events] == [("retired", 1), ("born", 3)]


def test_summary_references_round_trip_and_old_states_load() -> None:
    reg = _reg()
    reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)
    seg = reg.segments[1]
    seg.anchor, seg.summary_pos = [0.5, 0.0], [0.75, 1.0]
    other = _reg()
    old = reg.state()
    old["segments"][0]["summary_ref"] = [0.25, 0.0]  # a key of states written when segments followed the summary
    other.load_state(old)
    back = other.segments[1]
    assert (back.anchor, back.summary_pos) == ([0.5, 0.0], [0.75, 1.0])
    assert "summary_ref" not in other.state()["segments"][0]
    assert (other.segments[2].anchor, other.segments[2].summary_pos) == (None, None)
    assert "anchor" not in reg.state()["segments"][1]  # unset vectors are not written: k-means states unchanged
    state = reg.state()
    state["segments"][0]["anchor"] = [float("nan"), 0.0]
    with pytest.raises(StateError, match="non-finite anchor"):
        other.load_state(state)


def test_stay_room_moves_matched_segments_keeps_unmatched_ones_and_bounds_births() -> None:
    reg = _reg(retire_after=1)
    reg.update(np.array([[0.0, 0.0], [5.0, 0.0]]), SNAP)
    # segment 2 lost its center, two far centers appear: no merge, no miss, one birth (the room)
    res = reg.update(np.array([[0.1, 0.0], [0.0, 9.0], [9.0, 9.0]]), SNAP, stay_room=1)
    assert _acts(res) == [("born", 3, [])] and res.mapping == {0: 1, 1: 3}
    assert reg.live() == [1, 2, 3] and reg.segments[2].misses == 0
    assert reg.segments[1].center == [0.1, 0.0]
    assert _acts(reg.update(np.array([[0.1, 0.0]]), SNAP, stay_room=0)) == []
    assert _acts(reg.update(np.array([[0.1, 0.0]]), SNAP)) == [("retired", 2, []), ("retired", 3, [])]
