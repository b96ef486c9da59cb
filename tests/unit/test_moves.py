"""Moves buffered by the event loop: the outputs do not depend on the buffer's size (its MOVE stops)."""

from __future__ import annotations

from segmenter.moves import MoveBuffer
from segmenter.outputs import encode
from segmenter.pipeline import Segmenter
from tests.unit.test_pipeline import CFG, EVENTS, RULES


def _outputs(seg: Segmenter, chunk: int) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(EVENTS), chunk):
        out.extend(encode(m) for m in seg.process_batch(EVENTS[start : start + chunk]).outputs)
    return out


def test_outputs_do_not_depend_on_the_move_buffer_size() -> None:
    roomy = Segmenter(CFG, RULES)
    tight = Segmenter(CFG, RULES)
    tight._moves = MoveBuffer(capacity=1)  # every move fills it: the loop stops (MOVE) after each
    want = _outputs(roomy, 500)
    assert sum(b'"segment_change"' in m for m in want) > 100
    assert _outputs(tight, 500) == want
