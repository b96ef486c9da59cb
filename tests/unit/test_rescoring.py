"""The inactivity sweep: one compiled pass in row order, its moves emitted oldest first."""

from __future__ import annotations

import contextlib
import zlib

from segmenter.errors import EventError
from segmenter.outputs import SegmentChange
from segmenter.pipeline import Segmenter
from tests.unit.test_pipeline import CFG, EVENTS


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
