"""The producer's own exceptions.

Every error the producer raises on purpose is a :class:`ProducerError`; the
CLI turns it into a one-line message and a non-zero exit code. Kafka client
exceptions never leave :mod:`producer.kafka_sink`: they are translated there.

::

    ProducerError
    ├── SettingsError           a connection setting or a SEGMENTER_* variable is invalid (exit 2)
    ├── SinkError               an output could not be opened or written
    │   ├── BrokerUnavailableError   Kafka cannot be reached
    │   └── AuthenticationError      Kafka is reachable but the TLS handshake or the SASL login failed
    └── InputError              a replay file cannot be read at all (wrong format, no header)
"""

from __future__ import annotations


class ProducerError(Exception):
    """Base class of every error raised on purpose by the producer."""


class SettingsError(ProducerError):
    """A connection setting is invalid, or a ``SEGMENTER_*`` variable is unknown; the message names it."""


class SinkError(ProducerError):
    """An output could not be opened, written or flushed."""


class BrokerUnavailableError(SinkError):
    """The Kafka broker cannot be reached (bootstrap failed or timed out)."""


class AuthenticationError(SinkError):
    """The broker is reachable but the TLS handshake or the SASL login failed; retrying cannot help."""


class InputError(ProducerError):
    """A replay input file cannot be used at all (missing, unreadable, no header, unknown column)."""
