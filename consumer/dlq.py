"""Dead letters: the original record plus headers saying what went wrong.

A dead letter keeps the input's key, value (the original bytes, untouched) and
headers, and appends:

=====================  =====================================================
``error``              machine code: ``not_utf8``, ``not_json``, ``too_large``,
                       ``schema``, ``tombstone_key``, ``late``, ``future``,
                       ``processing_failed``
``reason``             a sentence for humans; for ``processing_failed``, what
                       failed and the exception (type and message, truncated)
``source_topic``       where the record came from
``source_partition``   its partition (decimal)
``source_offset``      its offset (decimal)
=====================  =====================================================

Under exactly-once it is sent inside the batch's transaction, so a record is
dead-lettered exactly once together with its offset commit.
"""

from __future__ import annotations

from consumer.sink import InRecord, OutRecord

FUTURE = "future"
PROCESSING_FAILED = "processing_failed"
TOMBSTONE_KEY = "tombstone_key"
MAX_REASON_BYTES = 1024


def dead_letter(record: InRecord, topic: str, error: str, reason: str) -> OutRecord:
    """Build the dead letter of ``record`` for ``topic``.

    Examples
    --------
    >>> rec = InRecord("in", 2, 7, b"c1", b"{oops", (("trace", b"x"),))
    >>> dl = dead_letter(rec, "in.dlq", "not_json", "not a JSON object")
    >>> dl.value, dict(dl.headers)["error"], dict(dl.headers)["source_offset"]
    (b'{oops', b'not_json', b'7')
    """
    reason_bytes = reason.encode("utf-8", errors="replace")[:MAX_REASON_BYTES]
    headers = (
        *record.headers,
        ("error", error.encode()),
        ("reason", reason_bytes),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
    )
    return OutRecord(topic, record.key, record.value, headers)


MAX_CAUSE_CHARS = 300
"""Longest exception text kept in a ``processing_failed`` reason."""


def describe_exception(exc: BaseException) -> str:
    """``"TypeName: message"``, truncated to :data:`MAX_CAUSE_CHARS` (for a dead letter's reason).

    Examples
    --------
    >>> describe_exception(OverflowError("date value out of range"))
    'OverflowError: date value out of range'
    >>> len(describe_exception(ValueError("x" * 1000)))
    300
    """
    try:
        message = str(exc)
    except Exception:  # an exception whose __str__ fails must not fail the dead letter
        message = "(message unavailable)"
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 1] + "…"
