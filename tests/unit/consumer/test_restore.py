"""Restore with hostile or corrupt records (in-memory transport, the real core): report, skip, carry on."""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumer.sink import MemoryTransport, OutRecord, RebalanceHandler
from consumer.state import (
    CLOCK_FORMAT,
    CLOCK_KEY,
    CUSTOMER_FORMAT,
    FORMAT_HEADER,
    MODEL_FORMAT,
    TRAINER_FORMAT,
    TRAINER_KEY,
    VERSIONS_HEADER,
    VIEW_FORMAT,
    VIEW_KEY,
)
from consumer.trainer import TrainerRole
from segmenter.config import SegmenterConfig, default_config
from segmenter.customer_codec import decode
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer
from tests.unit.consumer.conftest import (
    FIXED_NOW,
    DrainTransport,
    Harness,
    event,
    make_harness,
    make_service,
    real_core_service,
)
from tests.unit.eventgen import make_events, to_events


class Exploit:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def _append(h: Harness, topic: str, key: bytes | None, value: bytes | None, headers: Any = (), p: int = 0) -> int:
    return h.transport.append(OutRecord(topic, key, value, tuple(headers), p))


def _first_run(h: Harness, cores: list[Segmenter], n: int = 40) -> None:
    for i in range(n):
        h.transport.produce_input(f"c{i % 4}".encode(), event(i, f"c{i % 4}"))
    real_core_service(h, cores).run()
    assert h.transport.records("g.model") and h.transport.records("g.state")


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_code_bearing_model_record_runs_nothing_and_the_newest_valid_model_wins(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = make_harness()
    cores: list[Segmenter] = []
    _first_run(h, cores)
    events_before = cores[0].stats().events
    marker = tmp_path / "marker"
    payload = pickle.dumps(Exploit(marker))
    forged = _append(h, "g.model", uuid.uuid4().hex.encode(), payload, [(FORMAT_HEADER, MODEL_FORMAT)])
    bare = _append(h, "g.model", b"anything", payload)
    h.transport.produce_input(b"c9", event(100, "c9"))
    with caplog.at_level(logging.INFO):
        real_core_service(h, cores).run()
    assert not marker.exists()
    errors = _errors(caplog)
    assert any(f"g.model[0]@{forged}" in m and "not a segmenter state record" in m for m in errors), errors
    assert any(f"g.model[0]@{bare}" in m for m in errors), errors
    assert len([m for m in errors if f"g.model[0]@{forged}" in m]) == 1  # reported once
    restored = cores[-1]
    assert restored.stats().events == events_before + 1  # the older, valid model was loaded; the event processed


def test_with_no_valid_model_the_service_starts_fresh_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness()
    _append(h, "g.model", b"x", b"\x89SEGST\r\n garbage", [(FORMAT_HEADER, MODEL_FORMAT)])
    h.transport.produce_input(b"c1", event(0))
    cores: list[Segmenter] = []
    with caplog.at_level(logging.INFO):
        real_core_service(h, cores).run()
    assert any("g.model[0]@0" in m for m in _errors(caplog))
    assert any("starting with a fresh model" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    assert cores[0].stats().events == 1


def _customer(rec: dict[str, Any], **change: Any) -> bytes:
    return orjson.dumps({**rec, **change})


def test_corrupt_customer_and_clock_records_are_reported_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness()
    cores: list[Segmenter] = []
    _first_run(h, cores)
    written_c1 = next(r.value or b"" for r in reversed(h.transport.records("g.state")) if r.key == b"c1")
    good = {**decode("c1", written_c1), "v": 1}  # as a JSON record of version 1, still restored
    headers = [(FORMAT_HEADER, CUSTOMER_FORMAT)]
    bad = {
        b"c0": _customer(good, f=[1e39, *good["f"][1:]]),  # overflows float32
        b"c1": _customer(good, s={"value": [30000, 0], "engagement": [0, 0]}),  # unknown segment
        b"c2": _customer(good, v=7),
        b"c3": b"{not json",
        b"c4": written_c1[:-3],  # a binary record cut short
    }
    offsets = {key: _append(h, "g.state", key, value, headers) for key, value in bad.items()}
    clock_big = _append(h, "g.state", CLOCK_KEY, orjson.dumps({"max_epoch": 1e20}), [(FORMAT_HEADER, CLOCK_FORMAT)])
    _append(h, "g.state", b"c5", _customer(good))  # a valid customer after the bad ones
    h.transport.produce_input(b"c1", event(200, "c1"))
    with caplog.at_level(logging.INFO):
        real_core_service(h, cores).run()
    errors = _errors(caplog)
    for key, offset in offsets.items():
        assert any(f"g.state[0]@{offset}" in m and repr(key.decode()) in m for m in errors), (key, errors)
    assert any(f"g.state[0]@{clock_big}" in m for m in errors), errors
    written = decode("c1", next(r.value or b"" for r in reversed(h.transport.records("g.state")) if r.key == b"c1"))
    assert written["t"][0] == datetime(2026, 1, 1, 3, 20, tzinfo=UTC).timestamp()  # c1 started afresh at e200
    assert good["t"][0] < written["t"][0]
    assert any("restored 1 customers" in r.getMessage() for r in caplog.records)  # c5, after the bad ones


def test_a_clock_record_that_is_not_a_number_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness()
    offset = _append(h, "g.state", CLOCK_KEY, b'{"max_epoch": "soon"}', [(FORMAT_HEADER, CLOCK_FORMAT)])
    h.transport.produce_input(b"c1", event(0))
    cores: list[Segmenter] = []
    with caplog.at_level(logging.INFO):
        real_core_service(h, cores).run()
    assert any(f"g.state[0]@{offset}" in m and "not a number" in m for m in _errors(caplog))
    assert cores[0].stats().events == 1


# ------------------------------------------------------------------ shared mode: views, trainer snapshots, vectors


def _shared_config() -> SegmenterConfig:
    base = default_config()
    return base.model_copy(update={"lenses": [lens.model_copy(update={"warmup": 200}) for lens in base.lenses]})


def _trained(config: SegmenterConfig) -> ModelTrainer:
    trainer = ModelTrainer(config)
    core = Segmenter(config, shared=True)
    for i, ev in enumerate(to_events(make_events(120, 20, seed=3))):
        core.process(ev)
        if i % 100 == 99 and (blob := core.take_vectors()) is not None:
            trainer.apply(blob)
    assert all(trainer.model_versions().values())
    return trainer


def test_shared_mode_skips_code_bearing_views_trainer_snapshots_and_vectors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = _shared_config()
    trainer = _trained(config)
    versions = trainer.model_versions()
    marker = tmp_path / "marker"
    payload = pickle.dumps(Exploit(marker))
    h = make_harness(1, "--mode", "shared")
    view_headers = [(FORMAT_HEADER, VIEW_FORMAT), (VERSIONS_HEADER, orjson.dumps(versions))]
    _append(h, "g.model", VIEW_KEY, trainer.view(), view_headers)
    _append(h, "g.model", TRAINER_KEY, trainer.state(), [(FORMAT_HEADER, TRAINER_FORMAT)])
    higher = orjson.dumps({k: v + 5 for k, v in versions.items()})  # claims to be newer than the valid view
    bad_view = _append(h, "g.model", VIEW_KEY, payload, [(FORMAT_HEADER, VIEW_FORMAT), (VERSIONS_HEADER, higher)])
    bad_trainer = _append(h, "g.model", TRAINER_KEY, payload, [(FORMAT_HEADER, TRAINER_FORMAT)])
    h.transport.produce_input(b"c1", event(0))

    cores: list[Segmenter] = []

    def make_core(rules: Any) -> Segmenter:
        cores.append(Segmenter(config, rules, shared=True))
        return cores[-1]

    def make_transport(handler: RebalanceHandler) -> DrainTransport:
        h.transport.handler = handler
        return h.transport

    svc = make_service(h.settings, make_transport, make_core)
    h.transport.service = svc
    with caplog.at_level(logging.INFO):
        svc.run()
    assert cores[0].model_versions() == versions  # the valid view, not the forged "newer" one

    trainer_transport = MemoryTransport("g.vectors", partitions=1, topics=h.transport.topics)
    bad_vectors = _append(h, "g.vectors", b"k", payload)

    def make_trainer_transport(handler: RebalanceHandler) -> MemoryTransport:
        trainer_transport.handler = handler
        return trainer_transport

    role = TrainerRole(h.settings, make_trainer_transport,
                       lambda snap: ModelTrainer(config) if snap is None else ModelTrainer.from_state(config, snap),
                       lambda: FIXED_NOW)  # fmt: skip
    role.start()
    with caplog.at_level(logging.INFO):
        role.step()
    assert role.active and role._trainer is not None and role._trainer.model_versions() == versions
    assert not marker.exists()
    errors = _errors(caplog)
    for where in (f"g.model[0]@{bad_view}", f"g.model[0]@{bad_trainer}", f"g.vectors[0]@{bad_vectors}"):
        assert any(where in m for m in errors), (where, errors)
