"""Where output messages go: one route per kind (topic, ``kind`` header, output counter).

Shared by the service loop and the trainer role, so a message of a kind is
produced the same way whoever emits it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from consumer.sink import Headers, OutRecord
from segmenter.change_blocks import SegmentChanges
from segmenter.outputs import OutputMessage, encode, message_key


class Counter(Protocol):
    """A counter child (``prometheus_client.Counter(...).labels(kind)``)."""

    def inc(self, amount: float = 1) -> None:
        """Add ``amount``."""


@dataclass(frozen=True)
class _Route:
    topic: str
    headers: Headers
    counter: Counter | None


class OutputRouter:
    """Turns stamped output messages into records for their kind's topic.

    Parameters
    ----------
    topic_of
        The topic of a kind (:meth:`consumer.settings.Settings.output_topic`).
    counter_of
        The output counter of a kind, counted once per routed message; ``None``: not counted.
    """

    def __init__(self, topic_of: Callable[[str], str], counter_of: Callable[[str], Counter] | None = None) -> None:
        self._topic_of = topic_of
        self._counter_of = counter_of
        self._routes: dict[str, _Route] = {}

    def record(self, message: OutputMessage, emitted_at: str | None = None) -> OutRecord:
        """The record of one message: keyed by :func:`message_key`, header ``kind``.

        ``emitted_at`` stamps it on the way (the bytes of ``record(stamp(message, emitted_at))``, without the
        copy); ``None`` keeps the message's own.
        """
        return self.records([message], emitted_at)[0]

    def records(self, messages: Sequence[OutputMessage], emitted_at: str | None = None) -> list[OutRecord]:
        """The records of many messages, in order, as :meth:`record` each; each kind's counter is added to once."""
        routes = self._routes
        counts: dict[str, int] = {}
        out: list[OutRecord] = []
        append, new = out.append, tuple.__new__  # OutRecord's own __new__ is a Python function; the tuple is the same
        for message in messages:
            kind = message.kind
            route = routes.get(kind) or self._route(kind)
            counts[kind] = counts.get(kind, 0) + 1
            append(
                new(OutRecord, (route.topic, message_key(message), encode(message, emitted_at), route.headers, None))
            )
        for name, n in counts.items():
            self._count(name, n)
        return out

    def change_records(self, block: SegmentChanges, emitted_at: str | None = None) -> list[OutRecord]:
        """The records of a block's messages, in order: the records :meth:`records` makes of
        ``block.messages()``, without making the messages (each value is the block's line for its move)."""
        kind = block.kind
        route = self._routes.get(kind) or self._route(kind)
        topic, headers, new = route.topic, route.headers, tuple.__new__
        out = [
            new(OutRecord, (topic, cid.encode(), line, headers, None))
            for cid, line in zip(block.ids, block.lines(emitted_at), strict=True)
        ]
        self._count(kind, len(out))
        return out

    def _count(self, kind: str, n: int) -> None:
        counter = self._routes[kind].counter
        if counter is not None and n:
            counter.inc(n)

    def _route(self, kind: str) -> _Route:
        counter = self._counter_of(kind) if self._counter_of is not None else None
        route = self._routes[kind] = _Route(self._topic_of(kind), (("kind", kind.encode()),), counter)
        return route
