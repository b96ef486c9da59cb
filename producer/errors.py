"""The producer's own exceptions.

Every error the producer raises on purpose is a :class:`ProducerError`; the
CLI turns it into a one-line message and a non-zero exit code. Kafka client
exceptions never leave :mod:`producer.kafka_sink`: they are translated there.

::

    ProducerError
    ├── SinkError               an output could not be opened or written
    │   └── BrokerUnavailableError   Kafka cannot be reached
    └── InputError              a replay file cannot be read at all (wrong format, no header)
"""

from __future__ import annotations


class ProducerError(Exception):
    """Base class of every error raised on purpose by the producer."""


class SinkError(ProducerError):
    """An output could not be opened, written or flushed."""


class BrokerUnavailableError(SinkError):
    """The Kafka broker cannot be reached (bootstrap failed or timed out)."""


class InputError(ProducerError):
    """A replay input file cannot be used at all (missing, unreadable, no header, unknown column)."""
