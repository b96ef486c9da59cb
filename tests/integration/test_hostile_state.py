"""Hostile and corrupt records on the state and model topics of the real broker: nothing runs, nothing stops."""

from __future__ import annotations

import logging
import os
import pickle
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from consumer.state import CUSTOMER_FORMAT, FORMAT_HEADER, MODEL_FORMAT
from tests.integration.consumer_support import (
    committed_offset,
    make_events,
    metric_value,
    produce,
    service_thread,
    settings_for,
    wait_for,
)

pytestmark = pytest.mark.timeout(180)


class Exploit:
    """Unpickling this runs a shell command that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.path}",)


def _send(producer: KafkaProducer, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    meta = producer.send(topic, value, key=key, partition=0, headers=headers).get(timeout=10)
    return int(meta.offset)


def test_code_bearing_and_corrupt_state_records_run_nothing_and_stop_nothing(
    bootstrap: str,
    new_topic: Callable[..., str],
    group_id: str,
    plain_producer: KafkaProducer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    settings = settings_for(bootstrap, group_id, inp, out, dlq)
    first = make_events(400, seed=3)
    produce(plain_producer, inp, list(first))
    with service_thread(settings):  # creates the state and model topics and writes valid records
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == len(first), 60, "the first run committed")

    marker = tmp_path / "marker"
    payload = pickle.dumps(Exploit(marker))
    model_topic, state_topic = f"{group_id}.model", f"{group_id}.state"
    forged = _send(plain_producer, model_topic, uuid.uuid4().hex.encode(), payload, [(FORMAT_HEADER, MODEL_FORMAT)])
    bare = _send(plain_producer, model_topic, uuid.uuid4().hex.encode(), payload, [])
    victim = orjson.loads(first[-1][1])["customer_id"]
    corrupt = orjson.dumps({"v": 1, "f": [1e39] * 10, "t": [0, 0, None, 0], "h": [], "s": {}, "e": None})
    bad_customer = _send(plain_producer, state_topic, victim.encode(), corrupt, [(FORMAT_HEADER, CUSTOMER_FORMAT)])
    assert not marker.exists()

    second = make_events(200, seed=4, start=datetime(2026, 3, 1, tzinfo=UTC))  # after the first run
    produce(plain_producer, inp, list(second))
    with caplog.at_level(logging.INFO), service_thread(settings) as (_, metrics):
        total = len(first) + len(second)
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == total, 60, "the second run committed")
        restored = metric_value(metrics, "segmenter_restored_customers_total")
    assert not marker.exists(), "unpickling ran the payload"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"{model_topic}[0]@{forged}" in m and "not a segmenter state record" in m for m in errors), errors
    assert any(f"{model_topic}[0]@{bare}" in m for m in errors), errors
    assert any(f"{state_topic}[0]@{bad_customer}" in m and repr(victim) in m for m in errors), errors
    assert restored > 0  # the other customers came back
    assert any("and the newest model" in r.getMessage() for r in caplog.records)  # the valid model won
