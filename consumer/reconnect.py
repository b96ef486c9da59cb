"""Reconnect with backoff: run a Kafka session again after a Kafka failure, waiting longer each time.

Shared by the service loop (:class:`consumer.service.Service`) and the trainer
role (:class:`consumer.trainer.TrainerRole`), each with its own session and
its own list of failures that no retry can cure.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from consumer.errors import KafkaIOError

log = logging.getLogger(__name__)


@dataclass
class Backoff:
    """The wait before the next reconnect: ``initial_s``, doubled after every failure up to ``max_s``."""

    initial_s: float
    max_s: float
    current_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.current_s = self.initial_s

    def take(self) -> float:
        """The wait to use now; the next one is twice as long (at most ``max_s``)."""
        wait = self.current_s
        self.current_s = min(self.current_s * 2, self.max_s)
        return wait

    def reset(self) -> None:
        """Kafka answered: the next failure waits ``initial_s`` again."""
        self.current_s = self.initial_s


def run_reconnecting(
    session: Callable[[], None],
    stop: threading.Event,
    backoff: Backoff,
    on_retry: Callable[[KafkaIOError, float], None],
    fatal: tuple[type[KafkaIOError], ...] = (),
) -> None:
    """Run ``session`` until ``stop`` is set, again after each :class:`KafkaIOError` once the backoff has passed.

    Parameters
    ----------
    session
        Connects, works until ``stop`` (or a failure) and closes its clients.
    stop
        Set to end the loop; the backoff wait ends early when it is set.
    backoff
        The waits between attempts (the session resets it when Kafka answers).
    on_retry
        Told each failure that is retried and the wait before the retry (logs and metrics).
    fatal
        Failures no retry can cure: they propagate.
    """
    while not stop.is_set():
        try:
            session()
        except fatal:
            raise
        except KafkaIOError as exc:
            if stop.is_set():
                log.warning("stopping after a Kafka failure: %s", exc)
                return
            wait = backoff.take()
            on_retry(exc, wait)
            stop.wait(wait)
