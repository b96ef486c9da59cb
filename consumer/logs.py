"""Logging of ``segmenter-consumer``: the handler and formats, and kafka-python's known noise handled at its source.

A healthy run logs no WARNING or ERROR. kafka-python 3.0 (the pinned version)
logs two messages on healthy runs that are not faults; :func:`demote_kafka_noise`
puts a :class:`Demote` filter on exactly the logger that emits each, which turns
the matching records into DEBUG records (shown only when that logger is enabled
for DEBUG) and lets every other record of that logger through unchanged:

* ``kafka.net.selector``: "Task ... ran for 0.252s (>0.100s threshold). It is
  blocking the event loop". kafka-python times each step of its IO loop; the
  step is late because the processing thread (decode, core, encode, and the
  rebalance listener, which runs on the IO thread) held the interpreter, not
  because of a fault in the client. Steps of :data:`SLOW_STEP_WARN_S` or more
  stay WARNINGs: that long a stall can delay heartbeats.
* ``kafka.cluster``: "Metadata refresh: failed Cancelled". A connection closed
  by the client itself (at close, or when it drops the bootstrap connection)
  fails its in-flight requests with ``Cancelled``; the refresh loop simply
  retries. kafka-python's own fetcher logs the same case at INFO. A refresh that
  fails for any other reason stays an ERROR.

While no broker answers, kafka-python logs each failed attempt, request and
metadata refresh, for as long as the outage lasts: at start-up
(``kafka.net.manager``: "Connection failed", "Bootstrap connection to ...
failed", "Bootstrap ... not ready; waiting", "Bootstrap failed";
``kafka.net.connection``: "Connection lost") 64 lines in 20 s; when the broker
goes away under a running service (``kafka.net.transport``: "socket
disconnected", "Abort"; ``kafka.cluster``: "Metadata refresh: failed", "No node
available for metadata refresh"; ``kafka.coordinator``: "Error sending ...",
"Marking the coordinator dead") about 330 lines in 35 s. A session that cannot
start says what failed and what to check (:func:`segmenter.connection.unreachable`);
of kafka-python's lines, "not ready; waiting" (the backoff of the failure just
logged) is demoted, and the others pass through a :class:`Repeats` filter: the first of each kind is
logged as it is, the same kind within :data:`REPEAT_WINDOW_S` after it is
demoted, and the next one after that says how many were.

The third start-up warning, "No partition metadata for topic ...", is avoided
rather than filtered: :class:`consumer.kafka_io.KafkaTransport` fetches the
topic metadata between ``subscribe`` and the group join (which also spares a
second rebalance at start).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "REPEAT_WINDOW_S",
    "SLOW_STEP_WARN_S",
    "Demote",
    "JsonFormatter",
    "Repeats",
    "configure_logging",
    "demote_kafka_noise",
    "is_cancelled_metadata_refresh",
    "is_short_slow_step",
]

SLOW_STEP_WARN_S = 1.0
"""An IO-loop step at least this long stays a WARNING (the heartbeat interval is at least 1 s)."""

REPEAT_WINDOW_S = 60.0
"""A record of a kind :class:`Repeats` watches is logged at most once per this many seconds (the rest at DEBUG)."""

_SLOW_STEP = re.compile(r"^Task .* ran for (\d+(?:\.\d+)?)s \(>[\d.]+s threshold\)\. It is blocking the event loop")
_METADATA_FAILED = "Metadata refresh: failed %s"
"""The format string kafka-python 3.0.12 logs a failed metadata refresh with (``kafka/cluster.py``)."""
_NOT_READY = "Bootstrap %s not ready; waiting %.2f secs"
_CONNECTION_FAILURES = {
    "kafka.net.manager": (
        "Connection failed: %s",
        "Bootstrap connection to %s failed: %s (backoff %.2f secs)",
        "Bootstrap failed: %s",
    ),
    "kafka.net.connection": ("%s: Connection lost: %s",),
    "kafka.net.transport": ("%s: socket disconnected", "%s: Abort (%s)"),
    "kafka.cluster": ("Metadata refresh: failed %s", "No node available for metadata refresh - backoff/retry"),
    "kafka.coordinator": (
        "Error sending %s to node %s [%s]",
        "Marking the coordinator dead (node %s) for group %s: %s.",
    ),
}
"""Per logger, the format strings kafka-python 3.0.12 logs a lost broker with, again at every attempt or request
(``kafka/net/``, ``kafka/cluster.py``, ``kafka/coordinator/base.py``)."""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message (+ exc)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False)


class Demote(logging.Filter):
    """Turn the records of one logger that a rule matches into DEBUG records; pass every other record.

    Parameters
    ----------
    logger
        The logger the filter is attached to (a demoted record is kept only if it is enabled for DEBUG).
    rules
        Predicates on a record; a record any of them matches is demoted.
    """

    def __init__(self, logger: logging.Logger, rules: Sequence[Callable[[logging.LogRecord], bool]]) -> None:
        super().__init__(logger.name)
        self._logger = logger
        self._rules = tuple(rules)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG or not any(rule(record) for rule in self._rules):
            return True
        return _demote(record, self._logger)


def _demote(record: logging.LogRecord, logger: logging.Logger) -> bool:
    """Make ``record`` a DEBUG record; whether ``logger`` keeps it (enabled for DEBUG)."""
    record.levelno = logging.DEBUG
    record.levelname = logging.getLevelName(logging.DEBUG)
    return logger.isEnabledFor(logging.DEBUG)


class Repeats(logging.Filter):
    """Log the first record of each watched kind; demote the same kind to DEBUG for a while after it.

    Parameters
    ----------
    logger
        As :class:`Demote`'s.
    kinds
        The format strings (``record.msg``) watched, each a kind of its own.
    window_s
        After a record of a kind is logged, records of that kind are demoted for this long; the first one
        after it is logged with how many were.
    clock
        Seconds, monotonic (``time.monotonic``).
    """

    def __init__(self, logger: logging.Logger, kinds: Sequence[str], window_s: float = REPEAT_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__(logger.name)
        self._logger = logger
        self._window_s = window_s
        self._clock = clock
        self._logged: dict[str, float] = {}
        self._demoted: dict[str, int] = dict.fromkeys(kinds, 0)

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.msg
        if record.levelno <= logging.DEBUG or not isinstance(kind, str) or kind not in self._demoted:
            return True
        now, last = self._clock(), self._logged.get(kind)
        if last is not None and now - last < self._window_s:
            self._demoted[kind] += 1
            return _demote(record, self._logger)
        self._logged[kind], demoted, self._demoted[kind] = now, self._demoted[kind], 0
        if demoted and isinstance(record.args, tuple):
            record.msg = f"{kind} (and {demoted} more like it since the last one logged, at DEBUG)"
        return True


def is_short_slow_step(record: logging.LogRecord) -> bool:
    """kafka-python's "Task ... ran for Xs (>Ys threshold)" warning, for steps shorter than :data:`SLOW_STEP_WARN_S`."""
    match = _SLOW_STEP.match(record.getMessage())
    return match is not None and float(match.group(1)) < SLOW_STEP_WARN_S


def is_cancelled_metadata_refresh(record: logging.LogRecord) -> bool:
    """kafka-python's "Metadata refresh: failed %s" error, when the failure is its own ``Cancelled``."""
    args = record.args
    return (
        record.msg == _METADATA_FAILED
        and isinstance(args, tuple)
        and len(args) == 1
        and type(args[0]).__name__ == "Cancelled"
        and type(args[0]).__module__ == "kafka.errors"
    )


def is_bootstrap_backoff(record: logging.LogRecord) -> bool:
    """kafka-python's "Bootstrap ... not ready; waiting" warning: the backoff after a failure it logged already."""
    return record.msg == _NOT_READY


def demote_kafka_noise() -> None:
    """Attach the :class:`Demote` and :class:`Repeats` filters to kafka-python's loggers (idempotent)."""
    rules = (
        ("kafka.net.selector", is_short_slow_step),
        ("kafka.cluster", is_cancelled_metadata_refresh),
        ("kafka.net.manager", is_bootstrap_backoff),
    )
    for name in {name for name, _ in rules} | set(_CONNECTION_FAILURES):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Demote | Repeats)]:
            logger.removeFilter(old)
    for name, rule in rules:
        logger = logging.getLogger(name)
        logger.addFilter(Demote(logger, [rule]))
    for name, kinds in _CONNECTION_FAILURES.items():
        logger = logging.getLogger(name)
        logger.addFilter(Repeats(logger, kinds))


def configure_logging(level: str, fmt: str) -> None:
    """Configure the root logger (kafka-python's own chatter is kept at WARNING, its known noise demoted).

    Parameters
    ----------
    level
        The level name (``INFO``).
    fmt
        ``text`` or ``json`` (:class:`JsonFormatter`).
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    demote_kafka_noise()
