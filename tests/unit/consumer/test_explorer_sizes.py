"""The explorer's per-commit sample reads segment sizes without fitting the lenses' rules."""

from __future__ import annotations

from typing import Any

import pytest

import segmenter.lenses.surrogate as surrogate_module
from consumer.explorer import Explorer, lens_sizes
from segmenter import explorer as segmenter_explorer
from segmenter.explorer import SizeHistory
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import small_config


def test_sample_reads_the_sizes_profiles_give_without_fitting_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    fits: list[Any] = []
    fit_rule = surrogate_module.fit_rule  # patched where the lens's rules call it

    def counted(*args: Any, **kwargs: Any) -> Any:
        fits.append(args)
        return fit_rule(*args, **kwargs)

    monkeypatch.setattr(surrogate_module, "fit_rule", counted)
    seg = Segmenter(small_config())
    history = SizeHistory(max_points=60, step_s=6 * 3600)
    explorer = Explorer(history=history)
    events = to_events(make_events(120, 40, seed=5))
    pending_seen = 0
    for start in range(0, len(events), 100):
        seg.process_batch(events[start : start + 100], [0] * len(events[start : start + 100]))
        pending = [lens for lens in seg.lenses if lens._rules is not None and lens._rules.pending]
        before = len(fits)
        explorer.sample(seg)
        assert len(fits) == before  # the sample fitted nothing
        pending_seen += len(pending)
        assert [bool(lens._rules and lens._rules.pending) for lens in pending] == [True] * len(pending)
    assert pending_seen > 0  # the stream refined with rules left to fit
    sizes = lens_sizes(seg.lenses)
    assert history.points()[-1]["sizes"] == sizes
    assert sizes == segmenter_explorer.lens_sizes(seg.lenses)  # what the profiles say (this fits the rules)
    assert all(sizes.values())


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _core_and_builds(monkeypatch: pytest.MonkeyPatch) -> tuple[Segmenter, list[float | None]]:
    builds: list[float | None] = []
    live_document = segmenter_explorer.live_document

    def counted(lenses: Any, history: Any, watermark: float | None, source: str) -> Any:
        builds.append(watermark)
        return live_document(lenses, history, watermark, source)

    monkeypatch.setattr("consumer.explorer.live_document", counted)
    seg = Segmenter(small_config())
    events = to_events(make_events(40, 5, seed=2))
    seg.process_batch(events, [0] * len(events))
    return seg, builds


def test_the_document_is_built_once_then_only_when_a_reader_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seg, builds = _core_and_builds(monkeypatch)
    clock = _Clock()
    explorer = Explorer(clock=clock)
    builds.clear()  # the empty document of the constructor
    explorer.refresh(seg)
    explorer.refresh(seg)
    explorer.answer(seg)
    assert len(builds) == 1  # the first refresh; nobody asked since
    first = explorer.document()  # fresh: served as it is, nothing wanted
    explorer.answer(seg)
    assert len(builds) == 1 and b'"lenses"' in first
    clock.now += 10  # stale, and the loop last answered 10 s ago: no wait, the stale one now, built next
    assert explorer.document() == first
    explorer.answer(seg)
    assert len(builds) == 2
    explorer.answer(seg)
    assert len(builds) == 2


def test_a_reader_of_a_stale_document_waits_for_the_loops_next_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading  # noqa: PLC0415

    seg, builds = _core_and_builds(monkeypatch)
    clock = _Clock()
    explorer = Explorer(clock=clock, wait_s=30.0)
    builds.clear()  # the empty document of the constructor
    explorer.refresh(seg)
    clock.now += 5
    explorer.answer(seg)  # a loop is stepping
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(explorer.document()))
    reader.start()
    while not explorer._wanted:  # the reader marked it wanted and waits
        reader.join(0.01)
    events = to_events(make_events(40, 9, seed=3))
    seg.process_batch(events, [0] * len(events))
    explorer.answer(seg)
    reader.join(30)
    assert len(builds) == 2 and got and got[0] == explorer.document()
    assert builds[-1] == seg.watermark != builds[0]  # the reader got the build made after it asked
