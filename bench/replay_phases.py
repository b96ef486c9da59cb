"""Where one ``segmenter replay`` process spends its CPU: a part-by-part profile, start-up included.

Runs ``segmenter -q replay EVENTS --output /dev/null`` in this process, with
the core's main steps wrapped by CPU-time counters (:func:`time.process_time`,
exclusive: a part's time excludes the parts nested in it), and prints each
part's seconds and share of the whole. The wrappers add a few microseconds
per call (thousands of calls: a few milliseconds); nothing else changes.

Parts: ``imports`` (the segmenter, numpy, numba, river), ``numba cache loads``
(the compiled functions' first calls), ``parse`` (one event per line),
``batching`` (a chunk's event columns), ``event loop`` (compiled),
``refinement`` (the lenses' and the facade's), ``re-scoring`` (compiled, and
its Python around it), ``change blocks`` (a move buffer's columns; the
explanation numbers), ``encoding`` (the change lines, other messages, joining
blocks) and ``rest`` (everything else: the replay loop, the stops of the
compiled loop, writing).

Usage::

    python -m bench.replay_phases /tmp/sparse.jsonl
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

_T0 = time.process_time()

from numba.core import dispatcher  # noqa: E402

import segmenter.__main__ as cli  # noqa: E402 - timed: the imports are a part
from segmenter import change_blocks, explanations, kernel, pipeline, rescoring, timed_work  # noqa: E402
from segmenter import replay as replay_module  # noqa: E402
from segmenter.lenses import lens  # noqa: E402

_IMPORTS = time.process_time() - _T0

PARTS: list[tuple[Any, str, str]] = [
    (dispatcher.Dispatcher, "_compile_for_args", "numba cache loads"),
    (replay_module, "parse_event", "parse"),
    (pipeline, "EventColumns", "batching"),
    (kernel, "run", "event loop (compiled)"),
    (lens.Lens, "refine", "refinement: lenses"),
    (timed_work.TimedWork, "refine", "refinement: facade"),
    (rescoring, "rescore", "re-scoring (compiled)"),
    (rescoring.Rescorer, "_rescore", "re-scoring: Python"),
    (change_blocks.ChangeBuilder, "block", "change blocks: columns"),
    (explanations.Explainer, "fill", "change blocks: explanations"),
    (change_blocks, "change_lines", "encoding: change lines"),
    (change_blocks, "encode_lines", "encoding: other messages"),
    (change_blocks.SegmentChanges, "concat", "encoding: joining blocks"),
]
"""(owner, attribute, part): the functions timed, each as the code calls it."""


class Profile:
    """Exclusive CPU seconds per part of the wrapped functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._inner: list[float] = []
        self._wrapped: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, part: str) -> None:
        """Replace ``owner.name`` by a counting wrapper."""
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            self._inner.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.process_time() - start
                nested = self._inner.pop()
                self.seconds[part] = self.seconds.get(part, 0.0) + spent - nested
                if self._inner:
                    self._inner[-1] += spent

        self._wrapped.append((owner, name, fn))
        setattr(owner, name, counted)

    def unwrap(self) -> None:
        """Put the wrapped functions back."""
        for owner, name, fn in reversed(self._wrapped):
            setattr(owner, name, fn)
        self._wrapped.clear()


def run(events: str, parts: list[tuple[Any, str, str]], main: Callable[[list[str]], int]) -> dict[str, float]:
    """The replay of ``events`` with ``parts`` counted: seconds per part, ``rest`` and ``total`` included."""
    profile = Profile()
    for owner, name, part in parts:
        profile.wrap(owner, name, part)
    start = time.process_time()
    try:
        main(["-q", "replay", events, "--output", "/dev/null"])
    finally:
        profile.unwrap()
    total = time.process_time() - start + _IMPORTS
    seconds = {"imports": _IMPORTS, **profile.seconds}
    seconds["rest"] = total - sum(seconds.values())
    seconds["total"] = total
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("events", help="JSONL event file")
    args = ap.parse_args(argv)
    seconds = run(args.events, PARTS, cli.main)
    total = seconds["total"]
    for part, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        if part != "total":
            print(f"{part:30s} {s:6.2f} s  {s / total:6.1%}")
    print(f"{'total (CPU, this process)':30s} {total:6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
