"""The segment explorer on the consumer's HTTP server: ``/segments`` (JSON) and ``/`` (the page).

The processing loop owns the core; the HTTP server answers from its own
threads. So the loop hands the explorer what it needs (:meth:`Explorer.sample`
after each commit: the segment sizes, read from the lenses' registries without
building profiles, whose rules are fitted when first read; :meth:`Explorer.refresh`
with the gauges, every 2 s: the whole document) and the
server only reads the last document built, under a lock. Sizes over event time
are kept in a bounded :class:`~segmenter.explorer.SizeHistory` (at most 240
points per process; it starts empty when the process starts). The document and
the page are :mod:`segmenter.explorer`'s.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
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
    """Builds the explorer document on the loop thread; serves it to the HTTP threads."""

    def __init__(self, source: str = "segmenter-consumer", history: SizeHistory | None = None) -> None:
        self._source = source
        self._history = history if history is not None else SizeHistory()  # an empty one is falsy
        self._lock = threading.Lock()
        self._document: bytes = orjson.dumps(live_document([], self._history, None, source))

    def sample(self, core: object) -> None:
        """After a commit: note the segment sizes at the core's watermark in the history."""
        if isinstance(core, ExplorableCore) and core.watermark is not None:
            self._history.add(core.watermark, lens_sizes(core.lenses))

    def refresh(self, core: object) -> None:
        """Rebuild the document the HTTP server serves from the core's current lenses (and note their sizes)."""
        if not isinstance(core, ExplorableCore):
            return
        self.sample(core)
        document = orjson.dumps(live_document(core.lenses, self._history, core.watermark, self._source))
        with self._lock:
            self._document = document

    def document(self) -> bytes:
        """The last document built (JSON)."""
        with self._lock:
            return self._document

    def routes(self) -> Mapping[str, Route]:
        """The explorer's GET routes for the HTTP server: ``/segments`` and ``/``."""
        return {"/segments": Route(self._segments), "/": Route(self._page)}

    def _segments(self) -> Response:
        return Response(200, "application/json", self.document())

    def _page(self) -> Response:
        return Response(200, "text/html; charset=utf-8", render_page(orjson.loads(self.document())).encode())
