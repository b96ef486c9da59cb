"""bench.processes: the measured child processes run as an installed package would."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.processes import process_env


def test_a_measured_process_may_cache_its_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    env = process_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["SOMETHING_ELSE"] == "kept"


def test_the_tree_goes_first_on_the_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    assert process_env(tmp_path)["PYTHONPATH"].split(":") == [str(tmp_path), "/elsewhere"]
    monkeypatch.delenv("PYTHONPATH")
    assert process_env(tmp_path)["PYTHONPATH"] == str(tmp_path)
    assert "PYTHONPATH" not in process_env()
