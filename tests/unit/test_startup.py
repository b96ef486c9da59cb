"""What ``segmenter replay`` pays before its first event: no console library, no schema generation, no module
that only other commands (or ``--rules``) need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import segmenter.__main__ as cli
import segmenter.schema


def test_the_command_module_does_not_import_rich() -> None:
    code = "import sys, segmenter.__main__; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_replay_without_rules_does_not_import_what_other_commands_need(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(
        b'{"event_id":"e1","customer_id":"c1","type":"purchase","ts":"2026-01-02T00:00:00Z","amount":20}\n'
    )
    code = (
        "import sys, segmenter.__main__ as cli; cli.main(['-q', 'replay', sys.argv[1], '--output', sys.argv[2]]); "
        "print(sorted(m for m in sys.modules if m.startswith(('segmenter.triggers', 'segmenter.evaluation', "
        "'segmenter.explorer'))))"
    )
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-c", code, str(events), str(out)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"
    assert out.exists()


def test_the_parser_does_not_generate_the_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("schemas() generated at start-up")

    monkeypatch.setattr(segmenter.schema, "schemas", refuse)
    monkeypatch.setattr(cli, "schemas", refuse)
    args = cli.build_parser().parse_args(["schema", "segment_change"])
    assert args.name == "segment_change"
