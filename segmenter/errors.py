"""The segmenter's documented exception hierarchy.

Every error the core raises on purpose is a :class:`SegmenterError`. Callers at
the edge (the Kafka consumer, the CLIs) catch these and turn them into a dead
letter, an exit code or a log line; anything else is a bug.

::

    SegmenterError
    ├── EventError      an input event was rejected (reason code, field, detail)
    ├── ConfigError     a config or rules file is invalid (names the field)
    └── StateError      a snapshot or changelog record cannot be restored
"""

from __future__ import annotations


class SegmenterError(Exception):
    """Base class of every error raised on purpose by the segmenter."""


class EventError(SegmenterError):
    """An input event was rejected.

    Parameters
    ----------
    reason
        A short, stable machine code, used as the DLQ ``reason`` header and
        as a metrics label: ``not_utf8``, ``not_json``, ``too_large``,
        ``schema``, ``tombstone_key``, ``late``.
    detail
        A sentence for humans saying what is wrong and where.
    field
        The offending field's dotted path, when one field is at fault.
    """

    def __init__(self, reason: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.field = field


class ConfigError(SegmenterError):
    """A configuration or rules file is invalid.

    The message names the file, the field (dotted path) and the problem, so the
    user can fix it without reading code.
    """


class StateError(SegmenterError):
    """A snapshot or state record cannot be restored (wrong version, corrupt)."""
