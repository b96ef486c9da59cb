"""kafka-python's known noise is demoted where it is logged; everything else those loggers say passes."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator

import kafka.cluster
import kafka.coordinator.base
import kafka.errors as ke
import kafka.net.connection
import kafka.net.manager
import kafka.net.selector
import kafka.net.transport
import pytest

from consumer.logs import REPEAT_WINDOW_S, Demote, Repeats, demote_kafka_noise

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
    for name in _FILTERED:
        logger = logging.getLogger(name)
        for f in [f for f in logger.filters if isinstance(f, Demote | Repeats)]:
            logger.removeFilter(f)


_FILTERED = ("kafka.net.selector", "kafka.cluster", "kafka.net.manager", "kafka.net.connection",
             "kafka.net.transport", "kafka.coordinator")  # fmt: skip


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
    filters = [logging.getLogger(name).filters for name in _FILTERED]
    assert [[type(f).__name__ for f in fs] for fs in filters] == [
        ["Demote"], ["Demote", "Repeats"], ["Demote", "Repeats"], ["Repeats"], ["Repeats"], ["Repeats"],
    ]  # fmt: skip


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_connection_failure_is_logged_once_per_window_then_with_the_count_of_those_demoted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger, clock = logging.getLogger("tests.repeats"), _Clock()
    repeats = Repeats(logger, ["Connection failed: %s"], window_s=60.0, clock=clock)
    logger.addFilter(repeats)
    caplog.set_level(logging.INFO, logger="tests.repeats")
    try:
        logger.error("Connection failed: %s", "ECONNREFUSED")
        for _ in range(5):
            clock.now += 10  # the last of these at +50 s: within the window
            logger.error("Connection failed: %s", "ECONNREFUSED")
            logger.warning("Bootstrap complete: %s", "cluster")  # another kind: never held back
        clock.now += 11  # 61 s after the first one logged
        logger.error("Connection failed: %s", "ETIMEDOUT")
        clock.now += 1
        logger.error("Connection failed: %s", "ETIMEDOUT")
    finally:
        logger.removeFilter(repeats)
    failures = [(r.levelname, r.getMessage()) for r in caplog.records if "Connection failed" in r.getMessage()]
    assert failures == [
        ("ERROR", "Connection failed: ECONNREFUSED"),
        ("ERROR", "Connection failed: ETIMEDOUT (and 5 more like it since the last one logged, at DEBUG)"),
    ]
    assert sum("Bootstrap complete" in r.getMessage() for r in caplog.records) == 5


def test_an_unreachable_broker_logs_each_kind_of_client_line_once_and_no_backoff_line(
    kafka_loggers: tuple[logging.Logger, logging.Logger], caplog: pytest.LogCaptureFixture
) -> None:
    manager, connection = logging.getLogger("kafka.net.manager"), logging.getLogger("kafka.net.connection")
    refused = ke.KafkaConnectionError("111 ECONNREFUSED")
    for backoff in (0.09, 0.33, 1.37):  # what kafka-python 3.0.12 logs per attempt, quoted from its source
        manager.error("Connection failed: %s", refused)
        connection.error("%s: Connection lost: %s", "<KafkaConnection node_id=bootstrap-0>", refused)
        manager.warning("Bootstrap connection to %s failed: %s (backoff %.2f secs)", "bootstrap-0", refused, backoff)
        manager.warning("Bootstrap %s not ready; waiting %.2f secs", "bootstrap-0", backoff)
    assert _levels(caplog) == [
        ("ERROR", "Connection failed: KafkaConnectionError: 111"),
        ("ERROR", "<KafkaConnection node_id=bootstrap-0>: Connection lost:"),
        ("WARNING", "Bootstrap connection to bootstrap-0"),
    ]
    assert REPEAT_WINDOW_S >= 30, "an outage's lines at most about once or twice a minute"


def test_a_broker_lost_under_a_running_service_logs_each_kind_once_and_a_cancelled_refresh_not_at_all(
    kafka_loggers: tuple[logging.Logger, logging.Logger], caplog: pytest.LogCaptureFixture
) -> None:
    _, cluster = kafka_loggers
    transport, coordinator = logging.getLogger("kafka.net.transport"), logging.getLogger("kafka.coordinator")
    refused = ke.KafkaConnectionError("111 ECONNREFUSED")
    for port in (40522, 40554, 40510):  # what kafka-python 3.0.12 logs when the broker goes away, from its source
        transport.error("%s: socket disconnected", f"<KafkaTCPTransport [127.0.0.1:9392<-{port}]>")
        transport.error("%s: Abort (%s)", f"<KafkaTCPTransport [127.0.0.1:9392<-{port}]>", refused)
        cluster.error("Metadata refresh: failed %s", refused)
        cluster.error("Metadata refresh: failed %s", ke.Cancelled())
        cluster.warning("No node available for metadata refresh - backoff/retry")
        coordinator.error("Error sending %s to node %s [%s]", "FindCoordinatorRequest", 1, refused)
    assert _levels(caplog) == [
        ("ERROR", "<KafkaTCPTransport [127.0.0.1:9392<-40522]>: socket disconnected"),
        ("ERROR", "<KafkaTCPTransport [127.0.0.1:9392<-40522]>: Abort (KafkaConnectionError:"),
        ("ERROR", "Metadata refresh: failed KafkaConnectionError:"),
        ("WARNING", "No node available for"),
        ("ERROR", "Error sending FindCoordinatorRequest to"),
    ]


def test_the_pinned_kafka_python_still_logs_the_messages_the_filters_match() -> None:
    # A kafka-python release that rewords them makes the filters inert: this fails first.
    assert "'Task %r ran for %.3fs (>%.3fs threshold). It is '" in inspect.getsource(kafka.net.selector)
    assert "'blocking the event loop" in inspect.getsource(kafka.net.selector)
    assert "log.error('Metadata refresh: failed %s', exc)" in inspect.getsource(kafka.cluster)
    manager, connection = inspect.getsource(kafka.net.manager), inspect.getsource(kafka.net.connection)
    assert "log.error('Connection failed: %s', exc)" in manager
    assert "log.warning('Bootstrap %s not ready; waiting %.2f secs'" in manager
    assert "log.warning('Bootstrap connection to %s failed: %s (backoff %.2f secs)'," in manager
    assert "log.error('Bootstrap failed: %s', exc)" in manager
    assert "log.error('%s: Connection lost: %s', self, exc)" in connection
    transport, cluster = inspect.getsource(kafka.net.transport), inspect.getsource(kafka.cluster)
    coordinator = inspect.getsource(kafka.coordinator.base)
    assert transport.count("log.error('%s: socket disconnected', self)") == 2
    assert "log.error('%s: Abort (%s)', self, error)" in transport
    assert "log.warning('No node available for metadata refresh - backoff/retry')" in cluster
    assert "log.error('Error sending %s to node %s [%s]'," in coordinator
    assert 'log.warning("Marking the coordinator dead (node %s) for group %s: %s.",' in coordinator
