"""The start-up warm-up of the compiled core."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.warmup import WARM_UP_EVENTS, warm_up
from segmenter.config import default_config
from segmenter.events import CustomerEvent
from segmenter.pipeline import Segmenter


class _Recording:
    def __init__(self) -> None:
        self.batches: list[tuple[list[CustomerEvent], list[int | None]]] = []

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None]) -> object:
        self.batches.append((list(events), list(sources)))
        return None


def test_warm_up_runs_its_events_through_one_fresh_core_in_one_batch() -> None:
    cores: list[_Recording] = []

    def make() -> _Recording:
        cores.append(_Recording())
        return cores[-1]

    assert warm_up(make) >= 0
    assert len(cores) == 1 and len(cores[0].batches) == 1
    events, sources = cores[0].batches[0]
    assert [e.event_id for e in events] == ["warm-up-1", "warm-up-2"]
    assert len({e.customer_id for e in events}) == 1 and sources == [0] * len(WARM_UP_EVENTS)


def test_the_warm_up_events_are_valid_and_the_real_core_takes_them() -> None:
    core = Segmenter(default_config())
    warm_up(lambda: core)
    assert core.stats().events == len(WARM_UP_EVENTS)
