"""kafka-python's known noise is demoted where it is logged; everything else those loggers say passes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import kafka.cluster
import kafka.errors as ke
import kafka.net.selector
import pytest

from consumer.logs import Demote, demote_kafka_noise

SLOW = (
    "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop -- likely a tight sync loop "
    "inside a coroutine. Other pollers will time out."
)


@pytest.fixture
def kafka_loggers(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[logging.Logger, logging.Logger]]:
    selector, cluster = logging.getLogger("kafka.net.selector"), logging.getLogger("kafka.cluster")
    demote_kafka_noise()
    caplog.set_level(logging.INFO, logger="kafka")
    yield selector, cluster
    for logger in (selector, cluster):
        for f in [f for f in logger.filters if isinstance(f, Demote)]:
            logger.removeFilter(f)


def _levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, the message's first four words) of each record that reached the root logger."""
    return [(r.levelname, " ".join(r.getMessage().split()[:4])) for r in caplog.records]


def test_a_short_slow_step_is_demoted_and_other_selector_warnings_pass(
    kafka_loggers: tuple[logging.Logger, logging.Logger], caplog: pytest.LogCaptureFixture
) -> None:
    selector, _ = kafka_loggers
    selector.warning(SLOW % ("<Task>", 0.252, 0.1))  # kafka-python formats it before logging
    selector.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "<Task>")
    selector.warning(SLOW % ("<Task>", 1.5, 0.1))  # long enough to delay heartbeats: stays
    assert _levels(caplog) == [("WARNING", "Task <Task> left RUNNING"), ("WARNING", "Task '<Task>' ran for")]
    assert "1.500s" in caplog.records[1].getMessage()


def test_a_cancelled_metadata_refresh_is_demoted_and_a_real_failure_stays_an_error(
    kafka_loggers: tuple[logging.Logger, logging.Logger], caplog: pytest.LogCaptureFixture
) -> None:
    _, cluster = kafka_loggers
    cluster.error("Metadata refresh: failed %s", ke.Cancelled())
    cluster.error("Metadata refresh: failed %s", ke.KafkaConnectionError("connection reset"))
    cluster.warning("No node available for metadata refresh - backoff/retry")
    assert _levels(caplog) == [
        ("ERROR", "Metadata refresh: failed KafkaConnectionError:"),
        ("WARNING", "No node available for"),
    ]


def test_a_demoted_record_is_kept_as_debug_when_the_logger_wants_debug(
    kafka_loggers: tuple[logging.Logger, logging.Logger], caplog: pytest.LogCaptureFixture
) -> None:
    _, cluster = kafka_loggers
    caplog.set_level(logging.DEBUG, logger="kafka")
    cluster.error("Metadata refresh: failed %s", ke.Cancelled())
    assert _levels(caplog) == [("DEBUG", "Metadata refresh: failed Cancelled")]


def test_installing_twice_keeps_one_filter_per_logger(kafka_loggers: tuple[logging.Logger, logging.Logger]) -> None:
    demote_kafka_noise()
    assert [sum(isinstance(f, Demote) for f in logger.filters) for logger in kafka_loggers] == [1, 1]


def test_the_pinned_kafka_python_still_logs_the_messages_the_filters_match() -> None:
    # A kafka-python release that rewords them makes the filters inert: this fails first.
    assert "'Task %r ran for %.3fs (>%.3fs threshold). It is '" in inspect.getsource(kafka.net.selector)
    assert "'blocking the event loop" in inspect.getsource(kafka.net.selector)
    assert "log.error('Metadata refresh: failed %s', exc)" in inspect.getsource(kafka.cluster)
