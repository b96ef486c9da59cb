"""What ``segmenter replay`` pays before its first event: no console library, no schema generation."""

from __future__ import annotations

import subprocess
import sys

import pytest

import segmenter.__main__ as cli
import segmenter.schema


def test_the_command_module_does_not_import_rich() -> None:
    code = "import sys, segmenter.__main__; print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_parser_does_not_generate_the_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> None:
        raise AssertionError("schemas() generated at start-up")

    monkeypatch.setattr(segmenter.schema, "schemas", refuse)
    monkeypatch.setattr(cli, "schemas", refuse)
    args = cli.build_parser().parse_args(["schema", "segment_change"])
    assert args.name == "segment_change"
