"""CycleCollector frees the reference cycles kafka-python's timed-out polls leave, once it is due."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from consumer.cycles import CycleCollector


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _TimedOutError(Exception):
    """Like kafka-python's KafkaTimeoutError, a Python exception class (its instances take weak references)."""


def _timed_out_wait() -> weakref.ref[BaseException]:
    """What kafka-python's NetworkSelector.run leaves: an exception kept in a dict that its traceback's frame holds."""
    state: dict[str, BaseException | None] = {"exception": None}

    def waiter() -> None:
        try:
            raise _TimedOutError("Timed out after 0 ms")
        except _TimedOutError as exc:
            state["exception"] = exc

    waiter()
    exc = state["exception"]
    assert exc is not None
    return weakref.ref(exc)


@pytest.mark.usefixtures("no_automatic_collection")
def test_the_cycles_are_freed_when_due_and_not_before() -> None:
    clock = _Clock()
    collector = CycleCollector(10.0, clock)
    left = _timed_out_wait()
    assert left() is not None, "only a collection frees the cycle"
    clock.now += 9.9
    assert collector.collect_if_due() is None
    assert left() is not None
    clock.now += 0.1
    found = collector.collect_if_due()
    assert found is not None and found > 0
    assert left() is None
    later = _timed_out_wait()
    clock.now += 9.9  # the next collection is 10 s after the last one
    assert collector.collect_if_due() is None
    assert later() is not None
    clock.now += 0.1
    assert collector.collect_if_due() is not None
    assert later() is None
