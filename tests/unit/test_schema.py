"""The published JSON Schemas: current with the models, and true of a real offline run's messages."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from segmenter.__main__ import main as segmenter_main
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter
from segmenter.schema import DRAFT, NAMES, render, schemas

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "docs" / "schemas"
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 as the contract uses it: ISO-8601 with a UTC offset."""
    if not isinstance(value, str):
        return True
    if datetime.fromisoformat(value).tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return True


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = orjson.loads((SCHEMA_DIR / f"{name}.schema.json").read_bytes())
    return jsonschema.Draft202012Validator(schema, format_checker=FORMATS)


def test_names_are_the_generated_schemas_names() -> None:
    assert tuple(schemas()) == NAMES


def test_the_files_in_docs_are_the_generated_schemas() -> None:
    generated = schemas()
    on_disk = {p.name.removesuffix(".schema.json"): p.read_bytes() for p in SCHEMA_DIR.glob("*.schema.json")}
    assert set(on_disk) == set(generated), "run `segmenter schema --out docs/schemas`"
    for name, schema in generated.items():
        assert on_disk[name] == render(schema), (
            f"docs/schemas/{name}.schema.json is stale: run `segmenter schema --out docs/schemas`"
        )
        assert schema["$schema"] == DRAFT
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_command_prints_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert segmenter_main(["schema"]) == 0
    assert orjson.loads(capsys.readouterr().out) == schemas()
    assert segmenter_main(["schema", "segment_change"]) == 0
    assert orjson.loads(capsys.readouterr().out)["title"] == "segment_change"


@pytest.fixture(scope="module")
def replay_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[dict[str, Any]]]:
    """A simulated stream and what an offline ``segmenter replay`` with the example rules published for it."""
    tmp = tmp_path_factory.mktemp("schema")
    events, out = tmp / "events.jsonl", tmp / "out.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "producer",
            "synth",
            "--customers",
            "300",
            "--days",
            "30",
            "--seed",
            "3",
            "--to",
            "file",
            str(events),
            "-q",
        ],
        cwd=ROOT,
        check=True,
    )
    assert (
        segmenter_main(
            [
                "-q",
                "replay",
                str(events),
                "--output",
                str(out),
                "--snapshot",
                str(tmp / "snap.jsonl"),
                "--rules",
                str(ROOT / "config" / "rules.example.toml"),
            ]
        )
        == 0
    )
    return events.read_bytes().splitlines(), [orjson.loads(line) for line in out.read_bytes().splitlines()]


def test_real_inputs_and_outputs_validate(replay_run: tuple[list[bytes], list[dict[str, Any]]]) -> None:
    events, outputs = replay_run
    event_schema = validator("customer_event")
    for line in events:
        event_schema.validate(orjson.loads(line))
    kinds = Counter(m["kind"] for m in outputs)
    assert set(kinds) == {"segment_change", "campaign_trigger", "segment_lifecycle"}, kinds
    by_kind = {kind: validator(kind) for kind in kinds}
    for message in outputs:
        by_kind[message["kind"]].validate(message)


def test_membership_records_of_the_run_validate(replay_run: tuple[list[bytes], list[dict[str, Any]]]) -> None:
    lines, _ = replay_run
    core = Segmenter(default_config())
    changed = set()
    for line in lines:
        changed |= {m.customer_id for m in core.process(parse_event(line)) if m.kind == "segment_change"}
    ids = sorted(changed)
    records = [v for v in core.membership_values(ids, ["2026-02-01T00:00:00+00:00"] * len(ids)) if v is not None]
    assert len(records) > 100
    membership = validator("membership_record")
    for value in records:
        membership.validate(orjson.loads(value))


def test_the_schemas_refuse_what_the_contract_refuses(
    replay_run: tuple[list[bytes], list[dict[str, Any]]],
) -> None:
    events, outputs = replay_run
    event_schema = validator("customer_event")
    purchase = next(orjson.loads(e) for e in events if b'"purchase"' in e)
    assert event_schema.is_valid(purchase)
    assert not event_schema.is_valid({k: v for k, v in purchase.items() if k != "amount"})
    assert not event_schema.is_valid({**purchase, "ts": "2026-01-01T00:00:00"})
    assert not event_schema.is_valid({**purchase, "extra": 1})
    change = next(m for m in outputs if m["kind"] == "segment_change")
    assert not validator("segment_change").is_valid({k: v for k, v in change.items() if k != "emitted_at"})
    assert not validator("segment_change").is_valid({**change, "cause": "whim"})
