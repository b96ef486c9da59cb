"""Hot reload of the campaign rules file: a changed file is loaded and swapped in; an invalid one changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from consumer.core import Core
from consumer.dlq import describe_exception
from segmenter.errors import SegmenterError
from segmenter.triggers.rules import RuleSet

log = logging.getLogger(__name__)


@dataclass
class RulesWatcher:
    """Reloads the rules file when its mtime changes; an invalid file keeps the old rules.

    A reload never raises: whatever goes wrong loading the new file is logged
    at ERROR (file and problem) and the running rules stay.
    """

    path: Path
    load: Callable[[Path], RuleSet]
    interval_s: float = 1.0
    rules: RuleSet | None = None
    _mtime: float | None = None
    _next_check: float = 0.0

    def load_initial(self) -> RuleSet:
        """Load the file once at start; errors propagate (the service must not start with bad rules)."""
        self._mtime = self._stat()
        self.rules = self.load(self.path)
        return self.rules

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime
        except OSError:
            return None

    def check(self, now: float) -> str:
        """Look at the file (at most every ``interval_s``).

        Returns ``"unchanged"``, ``"loaded"`` (``rules`` now holds the new rules)
        or ``"invalid"`` (the file changed but does not load; the old rules stay).
        """
        if now < self._next_check:
            return "unchanged"
        self._next_check = now + self.interval_s
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return "unchanged"
        self._mtime = mtime
        try:
            rules = self.load(self.path)
        except (SegmenterError, OSError, ValueError) as exc:
            log.error("rules file %s changed but is invalid; keeping the previous rules: %s", self.path, exc)
            return "invalid"
        except Exception as exc:  # a loader bug (RecursionError, MemoryError, ...) must not stop the service either
            log.error(
                "rules file %s changed but cannot be loaded; keeping the previous rules: %s",
                self.path,
                describe_exception(exc),
                exc_info=exc,
            )
            return "invalid"
        log.info("rules file %s reloaded", self.path)
        self.rules = rules
        return "loaded"

    def refresh(self, core: Core | None, now: float) -> str:
        """:meth:`check`, and hand loaded rules to ``core``; rules the core refuses are rolled back (``"invalid"``)."""
        previous = self.rules
        result = self.check(now)
        if result != "loaded" or core is None:
            return result
        try:
            core.set_rules(self.rules)
        except Exception as exc:  # a reload never stops the service: the running rules stay
            log.error(
                "rules file %s loaded but the core refused it; keeping the previous rules: %s",
                self.path,
                describe_exception(exc),
                exc_info=exc,
            )
            self.rules = previous
            return "invalid"
        return result
