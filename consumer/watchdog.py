"""One long-lived thread that warns when a commit waits too long (kafka-python retries silently meanwhile)."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class CommitWatchdog:
    """Logs a WARNING when a commit armed with :meth:`arm` is still running ``after_s`` later.

    One daemon thread for the life of the watchdog (started on the first
    :meth:`arm`), instead of a timer thread per commit.

    Parameters
    ----------
    after_s
        How long a commit may take before the warning.
    bootstrap
        The brokers, named in the warning.
    """

    def __init__(self, after_s: float, bootstrap: str) -> None:
        self._after_s = after_s
        self._bootstrap = bootstrap
        self._cond = threading.Condition()
        self._armed: tuple[int, float, int] | None = None
        """(commit number, deadline, records in the batch) of the commit running now."""
        self._number = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def arm(self, records: int) -> None:
        """A commit of a batch of ``records`` input records starts now."""
        with self._cond:
            self._number += 1
            self._armed = (self._number, time.monotonic() + self._after_s, records)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="commit-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self) -> None:
        """The commit ended (committed or failed)."""
        with self._cond:
            self._armed = None
            self._cond.notify()

    def close(self) -> None:
        """Stop the thread (joined; a later :meth:`arm` starts another)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._cond:
            self._closed = False  # the next arm() starts a new thread

    def _watch(self) -> None:
        warned = 0
        with self._cond:
            while not self._closed:
                armed = self._armed
                if armed is None or armed[0] == warned:
                    self._cond.wait()
                    continue
                number, deadline, records = armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                warned = number
                log.warning(
                    "commit of a batch of %d records is still waiting after %.0fs; is the broker at %s "
                    "down? (kafka-python keeps retrying)",
                    records,
                    self._after_s,
                    self._bootstrap,
                )
