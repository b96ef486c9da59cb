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
    "SLOW_STEP_WARN_S",
    "Demote",
    "JsonFormatter",
    "configure_logging",
    "demote_kafka_noise",
    "is_cancelled_metadata_refresh",
    "is_short_slow_step",
]

SLOW_STEP_WARN_S = 1.0
"""An IO-loop step at least this long stays a WARNING (the heartbeat interval is at least 1 s)."""

_SLOW_STEP = re.compile(r"^Task .* ran for (\d+(?:\.\d+)?)s \(>[\d.]+s threshold\)\. It is blocking the event loop")
_METADATA_FAILED = "Metadata refresh: failed %s"
"""The format string kafka-python 3.0.12 logs a failed metadata refresh with (``kafka/cluster.py``)."""


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
        record.levelno = logging.DEBUG
        record.levelname = logging.getLevelName(logging.DEBUG)
        return self._logger.isEnabledFor(logging.DEBUG)


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


def demote_kafka_noise() -> None:
    """Attach the :class:`Demote` filters to the two kafka-python loggers (idempotent)."""
    for name, rule in (("kafka.net.selector", is_short_slow_step), ("kafka.cluster", is_cancelled_metadata_refresh)):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Demote)]:
            logger.removeFilter(old)
        logger.addFilter(Demote(logger, [rule]))


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
