"""Where encoded events go: a tiny :class:`Sink` interface and its non-Kafka implementations.

A sink receives already encoded messages (``key`` = customer id bytes,
``value`` = the event's JSON bytes). The Kafka sink lives in
:mod:`producer.kafka_sink`, the only module importing the Kafka client.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import IO

from producer.errors import SinkError

log = logging.getLogger(__name__)


class Sink(ABC):
    """Destination of encoded events; use as a context manager so it is flushed and closed."""

    description: str = "sink"

    @abstractmethod
    def send(self, key: bytes, value: bytes) -> None:
        """Queue one message (``key`` = customer id, ``value`` = JSON bytes)."""

    def flush(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Make every queued message durable (written, or acknowledged by the broker)."""

    def close(self) -> None:
        """Flush and release resources; safe to call twice."""
        self.flush()

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class JsonlSink(Sink):
    """Write one JSON object per line to a file, or to standard output for ``"-"``.

    Parameters
    ----------
    path
        Output file (created or truncated) or ``"-"`` for stdout.
    """

    def __init__(self, path: str | Path) -> None:
        self.description = "stdout" if str(path) == "-" else str(path)
        self._own = str(path) != "-"
        self._closed = False
        try:
            self._fh: IO[bytes] = open(path, "wb", buffering=1 << 20) if self._own else sys.stdout.buffer  # noqa: SIM115
        except OSError as exc:
            raise SinkError(f"cannot open output file {path}: {exc.strerror or exc}") from None
        self._write = self._fh.write

    def send(self, key: bytes, value: bytes) -> None:
        """Write ``value`` and a newline; the key is not written (it is the event's ``customer_id``)."""
        try:
            self._write(value + b"\n")
        except OSError as exc:
            raise SinkError(f"cannot write to {self.description}: {exc.strerror or exc}") from None

    def flush(self) -> None:
        """Flush the file buffer."""
        if self._closed:
            return
        try:
            self._fh.flush()
        except BrokenPipeError:
            log.debug("stdout closed by the reader")
        except OSError as exc:
            raise SinkError(f"cannot write to {self.description}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush and close the file (stdout is flushed, not closed)."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._own:
            self._fh.close()


class MemorySink(Sink):
    """Keep every message in a list of ``(key, value)``; for tests and benchmarks."""

    description = "memory"

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.flushes = 0

    def send(self, key: bytes, value: bytes) -> None:
        """Append the message."""
        self.messages.append((key, value))

    def flush(self) -> None:
        """Count the flush (nothing to write)."""
        self.flushes += 1

    @property
    def values(self) -> list[bytes]:
        """The messages' values, in send order."""
        return [v for _, v in self.messages]
