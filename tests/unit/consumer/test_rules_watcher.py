"""A hot reload never stops the service: whatever the new rules file holds, the old rules stay and an ERROR says why."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, cast

import pytest

from consumer.rules_watcher import RulesWatcher
from segmenter.triggers.rules import RuleSet, load_rules
from tests.unit.consumer.conftest import FakeCore, Harness
from tests.unit.triggers.hostile_rules import HOSTILE, RULE_TOML, RULE_YAML


def replace(path: Path, content: str, mtime: int) -> None:
    path.write_text(content, encoding="utf-8")
    os.utime(path, (mtime, mtime))


def watched(tmp_path: Path, name: str) -> RulesWatcher:
    path = tmp_path / name
    replace(path, RULE_YAML if name.endswith(".yaml") else RULE_TOML, 1000)
    watcher = RulesWatcher(path, load_rules, interval_s=0.0)
    assert isinstance(watcher.load_initial(), RuleSet)
    return watcher


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_reload_keeps_the_old_rules_and_logs_the_file_and_problem(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    name, content, words = HOSTILE[case]
    watcher = watched(tmp_path, name)
    old = watcher.rules
    replace(watcher.path, content, 2000)
    with caplog.at_level(logging.ERROR, logger="consumer.rules_watcher"):
        assert watcher.check(1.0) == "invalid"
    assert watcher.rules is old
    assert str(watcher.path) in caplog.text and "keeping the previous rules" in caplog.text
    assert words[-1] in caplog.text
    replace(watcher.path, RULE_TOML.replace('"vip"', '"vip2"') if name.endswith(".toml") else
            RULE_YAML.replace("vip", "vip2"), 3000)  # fmt: skip
    assert watcher.check(2.0) == "loaded" and watcher.rules is not None and watcher.rules.rules[0].name == "vip2"


@pytest.mark.parametrize(
    "exc", [RecursionError("maximum recursion depth exceeded"), MemoryError(), KeyError("rules"), TypeError("bad")],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_any_exception_of_the_loader_keeps_the_old_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, exc: Exception
) -> None:
    path = tmp_path / "rules.toml"
    replace(path, "v1", 1000)
    calls: list[str] = []

    def load(p: Path) -> Any:
        text = p.read_text()
        calls.append(text)
        if text == "v2":
            raise exc
        return text

    watcher = RulesWatcher(path, load, interval_s=0.0)
    watcher.load_initial()
    replace(path, "v2", 2000)
    with caplog.at_level(logging.ERROR, logger="consumer.rules_watcher"):
        assert watcher.check(1.0) == "invalid"
    assert cast(object, watcher.rules) == "v1" and calls == ["v1", "v2"]
    assert f"{path} changed but cannot be loaded" in caplog.text and type(exc).__name__ in caplog.text


def test_the_service_survives_a_hostile_reload_and_keeps_its_rules(harness: Harness, tmp_path: Path) -> None:
    name, content, _ = HOSTILE["deep_toml"]
    watcher = watched(tmp_path, name)
    svc = harness.service(rules=watcher)
    svc._core = core = FakeCore(rules=watcher.rules)
    replace(watcher.path, content, 2000)
    svc._check_rules()
    assert watcher.rules is not None and core.rules is watcher.rules and watcher.rules.rules[0].name == "vip"
    assert svc.metrics.registry.get_sample_value("segmenter_rules_reloads_total", {"result": "invalid"}) == 1


def test_rules_the_core_refuses_are_rolled_back(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = watched(tmp_path, "r.toml")
    first = watcher.rules
    svc = harness.service(rules=watcher)
    core = FakeCore(rules=first)

    def set_rules(rules: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded while compiling")

    core.set_rules = set_rules  # type: ignore[method-assign]
    svc._core = core
    replace(watcher.path, RULE_TOML.replace('"vip"', '"vip2"'), 2000)
    with caplog.at_level(logging.ERROR, logger="consumer.rules_watcher"):
        svc._check_rules()
    assert core.rules is first and watcher.rules is first
    assert "loaded but the core refused it" in caplog.text and "RecursionError" in caplog.text
    assert svc.metrics.registry.get_sample_value("segmenter_rules_reloads_total", {"result": "invalid"}) == 1
