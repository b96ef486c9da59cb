"""Helpers for the consumer's integration tests: event streams, the service in a thread or a subprocess."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumer.__main__ import build_service
from consumer.metrics import Health, Metrics
from consumer.service import Service
from consumer.settings import Settings, load_settings
from segmenter.config import DEFAULT_CONFIG_PATH, SegmenterConfig, config_from_dict
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter

ROOT = Path(__file__).resolve().parents[2]

TEST_WARMUP = 200
"""Lens warm-up of the integration tests' core: their streams are a few thousand events, and
the packaged default (2000 observations) would leave them without any segment."""


def _it_config_data() -> dict[str, Any]:
    data = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    for lens in data["lenses"]:
        lens["warmup"] = TEST_WARMUP
    return data


def it_config() -> SegmenterConfig:
    """The packaged default config with :data:`TEST_WARMUP`: what every consumer in these tests runs."""
    return config_from_dict(_it_config_data(), "<integration test config>")


@cache
def it_config_file() -> Path:
    """:func:`it_config` as a file, for ``--config-file`` (written once per test session)."""
    path = Path(tempfile.mkdtemp(prefix="segmenter-it-")) / "segmenter.yaml"
    path.write_text(yaml.safe_dump(_it_config_data()), encoding="utf-8")
    return path


def with_it_config(args: list[str]) -> list[str]:
    """``args`` plus ``--config-file`` of :func:`it_config_file`, unless they name a config."""
    return args if "--config-file" in args else [*args, "--config-file", str(it_config_file())]


TYPES = [
    "session_start",
    "page_view",
    "product_view",
    "add_to_cart",
    "purchase",
    "email_open",
    "email_click",
    "product_view",
    "session_start",
    "purchase",
]


def make_events(
    n: int, customers: int = 30, seed: int = 7, start: datetime | None = None, step_minutes: float = 5.0
) -> list[tuple[bytes, bytes]]:
    """``n`` valid events as (key, value), event time strictly increasing."""
    rnd = random.Random(seed)
    t0 = start or datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        customer = f"c{rnd.randrange(customers)}"
        etype = rnd.choice(TYPES)
        event: dict[str, Any] = {
            "event_id": f"{seed}-e{i}",
            "customer_id": customer,
            "type": etype,
            "ts": (t0 + timedelta(minutes=step_minutes * i)).isoformat(),
        }
        if etype == "purchase":
            event["amount"] = round(rnd.uniform(5, 400) * (1 + int(customer[1:]) % 3), 2)
        out.append((customer.encode(), json.dumps(event).encode()))
    return out


def produce(
    producer: KafkaProducer,
    topic: str,
    records: list[tuple[bytes | None, bytes | None]],
    partition: int | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    for key, value in records:
        producer.send(topic, value, key=key, partition=partition, headers=headers or [])
    producer.flush()


def offline_outputs(events: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    """What the core emits for ``events`` in order, without Kafka (``emitted_at`` removed)."""
    core = Segmenter(it_config())
    out = []
    for _, value in events:
        for message in core.process(parse_event(value)):
            data = message.model_dump(mode="json")
            data.pop("emitted_at", None)
            out.append(data)
    return out


def strip(records: list[tuple[bytes | None, bytes | None, dict[str, bytes]]]) -> list[dict[str, Any]]:
    """Decoded output values without ``emitted_at``."""
    out = []
    for _, value, _ in records:
        assert value is not None
        data = orjson.loads(value)
        assert data.pop("emitted_at"), "emitted_at must be stamped"
        out.append(data)
    return out


def settings_for(bootstrap: str, group: str, inp: str, out: str, dlq: str, *extra: str) -> Settings:
    return load_settings(
        [
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            group,
            "--topics.input",
            inp,
            "--topics.output",
            out,
            "--topics.dlq",
            dlq,
            "--topics.membership",
            f"{out}.membership",
            "--metrics-port",
            "-1",
            "--commit-interval-ms",
            "100",
            "--transaction-timeout-ms",
            "10000",
            "--session-timeout-ms",
            "6000",
            "--config-file",
            str(it_config_file()),
            *extra,
        ]
    )


def committed_offset(bootstrap: str, group: str, topic: str, partition: int = 0) -> int:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        return consumer.committed(TopicPartition(topic, partition)) or 0
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.3) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@contextmanager
def service_thread(settings: Settings) -> Iterator[tuple[Service[Segmenter], Metrics]]:
    """Run the real service (real core, real Kafka) in a thread; stops and joins it on exit."""
    metrics = Metrics()
    service = build_service(settings, metrics, Health())
    errors: list[BaseException] = []

    def target() -> None:
        try:
            service.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="service", daemon=True)
    thread.start()
    try:
        yield service, metrics
    finally:
        service.stop()
        thread.join(30)
        assert not thread.is_alive(), "service did not stop within 30s"
    if errors:
        raise errors[0]


def metric_value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)


class ConsumerProcess:
    """``python -m consumer`` as a subprocess (for SIGKILL / SIGTERM), logging to a file."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("SEGMENTER_")}
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "consumer", *with_it_config(args)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout_s: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout_s)
        self._log.close()
        return code

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
