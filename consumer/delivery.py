"""Delivery checks of a batch: a commit whose records were not all delivered must fail, never pass or hang.

kafka-python 3.0.12 can lose a batch's records without its ``commit_transaction``
failing: under a huge transaction (a sweep or a refinement moving hundreds of
thousands of customers) record batches expire in the accumulator
("KafkaTimeoutError: Expiring N record(s)"), then the sender thread trips on its
own transaction state machine ("Invalid transition attempted from state READY to
state READY") and, caught in its loop, stops completing requests. Seen at 527,000
customers: the service went on polling with 3,034 input records never committed
and never noticed. :class:`DeliveryTracker` holds the delivery futures of the open
batch and the producer's health, and is asked at each step of the commit:
a failed future, a sender thread that is gone, a transactional result that does
not arrive in time each raise :class:`~consumer.errors.TransactionError` with an
ERROR in the log, which the service treats as any failed commit (the batch is
discarded, a fresh session restores state from the last commit and replays it).

Used by both transports (:class:`consumer.kafka_io.KafkaTransport` and the
in-memory :class:`consumer.sink.MemoryTransport`), so the unit tests exercise the
same checks the Kafka edge runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from consumer.errors import TransactionError

log = logging.getLogger(__name__)

WAIT_SLICE_S = 0.5
"""How often a wait for a transactional result looks at the sender thread again."""


class Delivery(Protocol):
    """A delivery future (kafka-python's ``FutureRecordMetadata``, or the in-memory transport's)."""

    @property
    def is_done(self) -> bool:
        """Whether the broker answered (or the batch expired)."""

    @property
    def exception(self) -> BaseException | None:
        """Why the delivery failed, once done."""


@dataclass(frozen=True)
class Delivered:
    """A delivery that is done: failed with ``exception``, or succeeded (``None``)."""

    exception: BaseException | None = None
    is_done: bool = True


class Result(Protocol):
    """A transactional request's result (kafka-python's ``TransactionalRequestResult``)."""

    def wait(self, timeout_ms: float | None = None) -> bool:
        """Wait up to ``timeout_ms`` for the result; True when it arrived (raises its error)."""


class DeliveryTracker:
    """The delivery futures of the open batch and the producer's health, checked at each commit step.

    Parameters
    ----------
    sender_alive
        Whether the producer's sender thread still runs.
    timeout_s
        How long a transactional result (the offsets, the commit, the abort) may take.
    """

    def __init__(self, sender_alive: Callable[[], bool], timeout_s: float) -> None:
        self._sender_alive = sender_alive
        self._timeout_s = timeout_s
        self._futures: list[Delivery] = []

    def begin(self) -> None:
        """A new batch: forget the previous one's futures."""
        self._futures = []

    def track(self, futures: Iterable[Delivery]) -> None:
        """The delivery futures of records just sent in the open batch."""
        self._futures.extend(futures)

    def check(self, operation: str, *, complete: bool = False) -> None:
        """Raise when a delivery of the batch failed or the sender is gone; ``complete``: every one must be done.

        Raises
        ------
        TransactionError
            Something of the batch was not delivered: the batch must be aborted and replayed.
        """
        if not self._sender_alive():
            self._fail(operation, "the producer's sender thread is no longer running")
        pending = 0
        for future in self._futures:
            if not future.is_done:
                pending += 1
            elif future.exception is not None:
                failed = sum(1 for f in self._futures if f.is_done and f.exception is not None)
                self._fail(
                    operation,
                    f"{failed} of the batch's {len(self._futures)} deliveries failed, the first "
                    f"with {type(future.exception).__name__}: {future.exception}",
                )
        if complete and pending:
            self._fail(operation, f"{pending} of the batch's {len(self._futures)} deliveries have no answer")

    def wait(self, result: Result, operation: str) -> None:
        """Wait for a transactional ``result``, watching the sender thread; at most ``timeout_s``.

        Raises
        ------
        TransactionError
            The sender thread is gone, or no result came in time.
        """
        deadline = time.monotonic() + self._timeout_s
        while not result.wait(timeout_ms=WAIT_SLICE_S * 1000):
            if not self._sender_alive():
                self._fail(operation, "the producer's sender thread is no longer running")
            if time.monotonic() >= deadline:
                self._fail(operation, f"no answer within {self._timeout_s:.0f}s (is the producer's sender stuck?)")

    def _fail(self, operation: str, what: str) -> None:
        message = f"{operation}: {what}; the batch is aborted and replayed from the last commit by a fresh producer"
        log.error(message)
        self._futures = []
        raise TransactionError(message)
