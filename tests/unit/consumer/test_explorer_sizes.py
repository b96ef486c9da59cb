"""The explorer's per-commit sample reads segment sizes without fitting the lenses' rules."""

from __future__ import annotations

from typing import Any

import pytest

import segmenter.lenses.lens as lens_module
from consumer.explorer import Explorer, lens_sizes
from segmenter import explorer as segmenter_explorer
from segmenter.explorer import SizeHistory
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import small_config


def test_sample_reads_the_sizes_profiles_give_without_fitting_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    fits: list[Any] = []
    fit_each = lens_module.fit_each  # type: ignore[attr-defined]  # patched where the lens calls it

    def counted(*args: Any, **kwargs: Any) -> Any:
        fits.append(args)
        return fit_each(*args, **kwargs)

    monkeypatch.setattr(lens_module, "fit_each", counted)
    seg = Segmenter(small_config())
    history = SizeHistory(max_points=60, step_s=6 * 3600)
    explorer = Explorer(history=history)
    events = to_events(make_events(120, 40, seed=5))
    pending_seen = 0
    for start in range(0, len(events), 100):
        seg.process_batch(events[start : start + 100], [0] * len(events[start : start + 100]))
        pending = [lens for lens in seg.lenses if lens._rule_rows is not None]
        before = len(fits)
        explorer.sample(seg)
        assert len(fits) == before  # the sample fitted nothing
        pending_seen += len(pending)
        assert [lens._rule_rows is not None for lens in pending] == [True] * len(pending)
    assert pending_seen > 0  # the stream refined with rules left to fit
    sizes = lens_sizes(seg.lenses)
    assert history.points()[-1]["sizes"] == sizes
    assert sizes == segmenter_explorer.lens_sizes(seg.lenses)  # what the profiles say (this fits the rules)
    assert all(sizes.values())
