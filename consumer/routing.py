"""Where output messages go: one route per kind (topic, ``kind`` header, output counter).

Shared by the service loop and the trainer role, so a message of a kind is
produced the same way whoever emits it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from consumer.sink import Headers, OutRecord
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
        kind = message.kind
        route = self._routes.get(kind)
        if route is None:
            counter = self._counter_of(kind) if self._counter_of is not None else None
            route = self._routes[kind] = _Route(self._topic_of(kind), (("kind", kind.encode()),), counter)
        if route.counter is not None:
            route.counter.inc()
        return OutRecord(route.topic, message_key(message), encode(message, emitted_at), route.headers)
