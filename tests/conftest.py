"""Suite-wide settings: deterministic hypothesis profile; the screenshots the browser tests took, listed at the end."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ARTIFACTS = Path(__file__).resolve().parent / ".artifacts"
_STARTED = time.time()

settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the screenshots this run wrote (tests/.artifacts/, git-ignored) so they can be looked at."""
    shots = sorted(p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= _STARTED) if ARTIFACTS.is_dir() else []
    if shots:
        terminalreporter.section("screenshots")
        for path in shots:
            terminalreporter.write_line(str(path))
