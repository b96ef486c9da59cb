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
``truncated``          only on a record too large to dead-letter whole (see
                       below): what was cut, e.g. ``value 3145800 -> 524288``
=====================  =====================================================

A dead letter must fit in one Kafka message of the dead-letter topic (1 MiB by
default), but an input topic may allow larger records. So a value over
:data:`MAX_VALUE_BYTES` keeps its first bytes, a key over :data:`MAX_KEY_BYTES`
likewise, and the input's own headers are kept while they fit in
:data:`MAX_HEADER_BYTES`; the ``truncated`` header says what was cut, and the
whole record is still at ``source_topic``/``source_partition``/``source_offset``.
Before, the send of such a dead letter failed and the batch was replayed for
ever: one large record stopped its partition.

Under exactly-once it is sent inside the batch's transaction, so a record is
dead-lettered exactly once together with its offset commit.
"""

from __future__ import annotations

from consumer.sink import Headers, InRecord, OutRecord

FUTURE = "future"
PROCESSING_FAILED = "processing_failed"
TOMBSTONE_KEY = "tombstone_key"
MAX_REASON_BYTES = 1024
MAX_VALUE_BYTES = 512 * 1024
"""A dead letter keeps at most this many bytes of the record's value."""
MAX_KEY_BYTES = 4096
"""... and of its key."""
MAX_HEADER_BYTES = 64 * 1024
"""... and of its own headers (keys and values), whole headers in order."""


def dead_letter(record: InRecord, topic: str, error: str, reason: str) -> OutRecord:
    """Build the dead letter of ``record`` for ``topic``.

    Examples
    --------
    >>> rec = InRecord("in", 2, 7, b"c1", b"{oops", (("trace", b"x"),))
    >>> dl = dead_letter(rec, "in.dlq", "not_json", "not a JSON object")
    >>> dl.value, dict(dl.headers)["error"], dict(dl.headers)["source_offset"]
    (b'{oops', b'not_json', b'7')
    >>> big = dead_letter(rec._replace(value=b"x" * 600_000), "in.dlq", "too_large", "too large")
    >>> len(big.value), dict(big.headers)["truncated"]
    (524288, b'value 600000 -> 524288')
    """
    key, key_cut = _cut(record.key, MAX_KEY_BYTES, "key")
    value, value_cut = _cut(record.value, MAX_VALUE_BYTES, "value")
    kept, headers_cut = _headers_within(record.headers)
    cuts = [cut for cut in (key_cut, value_cut, headers_cut) if cut]
    headers = (
        *kept,
        ("error", error.encode()),
        ("reason", reason.encode("utf-8", errors="replace")[:MAX_REASON_BYTES]),
        ("source_topic", record.topic.encode()),
        ("source_partition", str(record.partition).encode()),
        ("source_offset", str(record.offset).encode()),
        *((("truncated", "; ".join(cuts).encode()),) if cuts else ()),
    )
    return OutRecord(topic, key, value, headers)


def _cut(data: bytes | None, limit: int, what: str) -> tuple[bytes | None, str]:
    """``data`` cut to ``limit`` bytes, and what was cut (``""``: nothing)."""
    if data is None or len(data) <= limit:
        return data, ""
    return data[:limit], f"{what} {len(data)} -> {limit}"


def _headers_within(headers: Headers) -> tuple[Headers, str]:
    """The record's headers that fit in :data:`MAX_HEADER_BYTES` (whole, in order), and what was dropped."""
    size = 0
    for i, (name, value) in enumerate(headers):
        size += len(name.encode("utf-8", errors="replace")) + len(value)
        if size > MAX_HEADER_BYTES:
            return headers[:i], f"headers {len(headers)} -> {i}"
    return headers, ""


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
