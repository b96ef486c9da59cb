"""The inactivity sweep: one compiled pass in row order, its moves emitted oldest first; pending moves."""

from __future__ import annotations

import contextlib
import zlib
from datetime import datetime

from segmenter.config import SegmenterConfig
from segmenter.errors import EventError
from segmenter.features import BASE_EPOCH, NO_PENDING
from segmenter.outputs import SegmentChange
from segmenter.pipeline import Segmenter
from tests.unit.test_pipeline import CFG, EVENTS, small_config


def test_sweep_moves_come_out_oldest_first_then_crc_then_id_then_lens() -> None:
    seg = Segmenter(CFG)
    for e in EVENTS:
        with contextlib.suppress(EventError):
            seg.process(e)
    store = seg.store
    scored = {}
    for cid in store.customer_ids():
        row = store.row_of(cid)
        assert row is not None
        scored[cid] = store.scored_time(row)
    rows = {cid: store.row_of(cid) for cid in scored}
    lens_index = {lens.name: i for i, lens in enumerate(seg.lenses)}

    out = seg.advance_to(max(e.epoch for e in EVENTS) + 200 * 86_400)

    # the sweep's moves (a refinement tick, refine.every_days, may move customers of dead segments first)
    moves = [m for m in out if isinstance(m, SegmentChange) and m.cause == "inactivity"]
    assert len({m.customer_id for m in moves}) > 20
    got = [(m.customer_id, m.lens) for m in moves]
    want = sorted(got, key=lambda k: (scored[k[0]], zlib.crc32(k[0].encode()), k[0], lens_index[k[1]]))
    assert got == want
    # the stores' rows are in another order, so row order would not pass
    by_row = sorted(got, key=lambda k: (rows[k[0]], lens_index[k[1]]))
    assert by_row != want


def _held_config(pending_hours: float) -> SegmenterConfig:
    """A margin no move can meet (only first assignments, dead segments and pending moves move), no weekly ticks.

    The margin does not shrink (``margin_shrinks``): these tests hold the pending move's end itself.
    """
    data = small_config(refine__every_days=0.0).model_dump()
    for lens in data["lenses"]:
        lens.update(margin=0.99, pending_move_hours=pending_hours, margin_shrinks=False)  # the hold, all or nothing
    return SegmenterConfig.model_validate(data)


def _sweep_days(pending_hours: float, days: int) -> tuple[list[tuple[SegmentChange, int]], Segmenter]:
    """EVENTS, then the watermark a day further each time; each inactivity move with its pending start before."""
    seg = Segmenter(_held_config(pending_hours))
    for e in EVENTS:
        with contextlib.suppress(EventError):
            seg.process(e)
    store = seg.store
    lens_index = {lens.name: i for i, lens in enumerate(seg.lenses)}
    last = max(e.epoch for e in EVENTS)
    moves: list[tuple[SegmentChange, int]] = []
    for day in range(1, days + 1):
        pend = store.pend.copy()
        for m in seg.advance_to(last + day * 86_400):
            if isinstance(m, SegmentChange) and m.cause == "inactivity":
                row = store.row_of(m.customer_id)
                assert row is not None
                moves.append((m, int(pend[row, lens_index[m.lens]])))
    return moves, seg


def test_a_customer_held_by_the_margin_moves_once_its_nearest_was_elsewhere_for_the_hold() -> None:
    hold = 48 * 3600
    moves, seg = _sweep_days(48.0, 6)
    assert len({m.customer_id for m, _ in moves}) > 10
    for m, start in moves:
        assert start != NO_PENDING, m  # the stretch began at an earlier scoring
        assert datetime.fromisoformat(m.event_ts).timestamp() - (start + BASE_EPOCH) >= hold, m
    # whoever stays is where the margin held it, in a stretch not yet as long as the hold, or in its nearest
    held = seg.store.pend[seg.store.live]
    wm = seg.store.t[seg.store.live, 1].max()
    assert ((held == NO_PENDING) | (wm - held < hold + 86_400)).all()
    off, _ = _sweep_days(0.0, 6)  # the margin alone: nobody who holds a live segment moves
    assert not [m for m, _ in off if m.from_segment is not None and m.to_segment is not None]


def _event_moves(pending_hours: float) -> list[tuple[SegmentChange, int]]:
    """EVENTS one by one: each move an event caused out of a segment, with its pending start before it."""
    seg = Segmenter(_held_config(pending_hours))
    lens_index = {lens.name: i for i, lens in enumerate(seg.lenses)}
    moves: list[tuple[SegmentChange, int]] = []
    for e in EVENTS:
        row = seg.store.row_of(e.customer_id)
        pend = None if row is None else seg.store.pend[row].copy()
        with contextlib.suppress(EventError):
            for m in seg.process(e):
                if isinstance(m, SegmentChange) and m.cause == "event" and m.from_segment and pend is not None:
                    moves.append((m, int(pend[lens_index[m.lens]])))
    return moves


def test_the_event_loop_moves_a_held_customer_after_the_hold_too() -> None:
    moves = _event_moves(1.0)
    assert len(moves) > 10
    for m, start in moves:
        assert start != NO_PENDING, m
        assert datetime.fromisoformat(m.event_ts).timestamp() - (start + BASE_EPOCH) >= 3600, m
    assert len(_event_moves(0.0)) < len(moves) / 4  # the margin alone: only the rare decisive moves
