"""The segment explorer on the consumer's HTTP server: ``/segments`` (JSON) and ``/`` (the page).

The processing loop owns the core; the HTTP server answers from its own
threads. So the loop hands the explorer what it needs (:meth:`Explorer.sample`
after each commit and with the gauges, every 2 s: the segment sizes, read from the
lenses' registries without building profiles, whose rules are fitted when first
read; the whole document only when a reader asked for it, :class:`Explorer`) and the
server only reads the last document built, under a lock. Sizes over event time
are kept in a bounded :class:`~segmenter.explorer.SizeHistory` (at most 240
points per process; it starts empty when the process starts). The document and
the page are :mod:`segmenter.explorer`'s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import orjson

from consumer.metrics import Response, Route
from segmenter.explorer import ProfiledLens, SizeHistory, live_document, render_page
from segmenter.lenses.registry import SegmentRegistry
from segmenter.outputs import SegmentRef

log = logging.getLogger(__name__)

"""A GET handler: returns ``(content type, body)``."""


class SizedLens(ProfiledLens, Protocol):
    """A lens whose segment sizes can be read without its profiles (:class:`segmenter.lenses.lens.Lens`)."""

    @property
    def registry(self) -> SegmentRegistry:
        """The lens's segments (their sizes, which are live)."""

    def ref(self, segment: int) -> SegmentRef:
        """The id and name of a segment number."""


def lens_sizes(lenses: Iterable[SizedLens]) -> dict[str, dict[str, int]]:
    """``{lens: {segment id: size}}`` of the live segments: :func:`segmenter.explorer.lens_sizes`, without profiles."""
    out = {}
    for lens in lenses:
        registry = lens.registry
        out[lens.name] = {lens.ref(n).id: registry.segments[n].size for n in registry.live()}
    return out


@runtime_checkable
class ExplorableCore(Protocol):
    """The part of :class:`segmenter.pipeline.Segmenter` the explorer reads."""

    @property
    def lenses(self) -> Sequence[SizedLens]:
        """The lenses, in config order."""

    @property
    def watermark(self) -> float | None:
        """Event time (epoch seconds) the core has reached, ``None`` before the first event."""


class Explorer:
    """Builds the explorer document on the loop thread when it is asked for; serves it to the HTTP threads.

    Building the document reads the lenses' profiles, which fits their pending
    segment rules (tens of milliseconds after each refinement), so it is built
    only for a reader: :meth:`document` marks it wanted and, while a loop is
    answering (:meth:`answer`, every step), waits up to ``wait_s`` for a build
    newer than ``fresh_s``; the loop builds at its next step.

    Parameters
    ----------
    source
        The document's ``source``.
    history
        Segment sizes over event time (default: an empty :class:`SizeHistory`).
    fresh_s, wait_s
        A document younger than ``fresh_s`` is served as it is; an older one is rebuilt, waited for up to ``wait_s``.
    clock
        Monotonic seconds.
    """

    def __init__(
        self,
        source: str = "segmenter-consumer",
        history: SizeHistory | None = None,
        *,
        fresh_s: float = 2.0,
        wait_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._history = history if history is not None else SizeHistory()  # an empty one is falsy
        self._fresh_s = fresh_s
        self._wait_s = wait_s
        self._clock = clock
        self._built = threading.Condition()
        self._document: bytes = orjson.dumps(live_document([], self._history, None, source))
        self._built_at: float | None = None
        self._wanted = False
        self._answered_at: float | None = None

    def sample(self, core: object) -> None:
        """After a commit: note the segment sizes at the core's watermark in the history."""
        if isinstance(core, ExplorableCore) and core.watermark is not None:
            self._history.add(core.watermark, lens_sizes(core.lenses))

    def refresh(self, core: object) -> None:
        """Every few seconds: note the sizes; build the document if it is wanted or was never built."""
        if not isinstance(core, ExplorableCore):
            return
        if self._wanted or self._built_at is None:
            self._build(core)
        else:
            self.sample(core)

    def answer(self, core: object) -> None:
        """Every loop step: build the document if a reader asked for it since the last build."""
        self._answered_at = self._clock()
        if self._wanted and isinstance(core, ExplorableCore):
            self._build(core)

    def _build(self, core: ExplorableCore) -> None:
        """The document of the core as it is now, its sizes noted first (the chart ends at the table)."""
        self._wanted = False
        self.sample(core)
        document = orjson.dumps(live_document(core.lenses, self._history, core.watermark, self._source))
        with self._built:
            self._document = document
            self._built_at = self._clock()
            self._built.notify_all()

    def document(self) -> bytes:
        """The newest document (JSON): rebuilt by the loop first when older than ``fresh_s`` and a loop answers."""
        with self._built:
            now = self._clock()
            built_at = self._built_at
            if built_at is not None and now - built_at < self._fresh_s:
                return self._document
            self._wanted = True
            answered = self._answered_at
            if answered is not None and now - answered < self._wait_s:  # a loop is stepping: it builds soon
                self._built.wait_for(lambda: self._built_at is not None and self._built_at >= now, self._wait_s)
            return self._document

    def routes(self) -> Mapping[str, Route]:
        """The explorer's GET routes for the HTTP server: ``/segments`` and ``/``."""
        return {"/segments": Route(self._segments), "/": Route(self._page)}

    def _segments(self) -> Response:
        return Response(200, "application/json", self.document())

    def _page(self) -> Response:
        return Response(200, "text/html; charset=utf-8", render_page(orjson.loads(self.document())).encode())
