"""The consumer and the producer through a SASL_SSL listener (SCRAM-SHA-512, a generated CA) on a real broker.

The broker is ``scripts/kafka-local start --secure --port 9192`` (``make test``
starts it; the fixture starts it too, or reuses the running one), and the
settings are exactly the lines ``scripts/kafka-local client-env --secure`` prints.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError

from producer.__main__ import main as producer_main
from segmenter.connection import ConnectionSettings
from tests.integration.consumer_support import it_config_file, service_thread, settings_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
SECURE_PORT = 9192
LAUNCHER = [sys.executable, str(ROOT / "scripts" / "kafka-local")]


@pytest.fixture(scope="session")
def secure_env() -> dict[str, str]:
    """The ``SEGMENTER_*`` lines of ``client-env --secure`` for a running secure broker (started if needed)."""
    started = time.monotonic()
    start = subprocess.run(
        [*LAUNCHER, "start", "--secure", "--port", str(SECURE_PORT)], capture_output=True, text=True, timeout=180
    )
    if start.returncode != 0:
        message = f"the secure broker did not start: {start.stderr.strip()[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    print(f"secure broker ready after {time.monotonic() - started:.1f}s: {start.stdout.strip()}")
    out = subprocess.run(
        [*LAUNCHER, "client-env", "--secure", "--port", str(SECURE_PORT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.fixture
def secure(secure_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ConnectionSettings:
    """The secure broker's settings, also set as ``SEGMENTER_*`` variables for this test."""
    for name in [k for k in os.environ if k.startswith("SEGMENTER_")]:
        monkeypatch.delenv(name)
    for name, value in secure_env.items():
        monkeypatch.setenv(name, value)
    return ConnectionSettings(**{k.removeprefix("SEGMENTER_").lower(): v for k, v in secure_env.items()})


@pytest.fixture
def secure_topics(secure: ConnectionSettings) -> Iterator[tuple[str, str, str]]:
    """Input, output and dead-letter topics created on the secure broker (through SASL_SSL), deleted after."""
    admin = KafkaAdminClient(**secure.kafka_options())
    tag = uuid.uuid4().hex[:8]
    names = (f"sec-in-{tag}", f"sec-out-{tag}", f"sec-dlq-{tag}")
    admin.create_topics([NewTopic(n, 1, 1) for n in names])
    yield names
    with contextlib.suppress(KafkaError):
        admin.delete_topics(list(names))
    admin.close()


def _read(secure: ConnectionSettings, topic: str, at_least: int, timeout_s: float = 30) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        **secure.kafka_options(),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    consumer.assign([TopicPartition(topic, 0)])
    out: list[dict[str, object]] = []

    def more() -> bool:
        out.extend(orjson.loads(r.value) for rs in consumer.poll(500).values() for r in rs)
        return len(out) >= at_least

    try:
        wait_for(more, timeout_s, f"{at_least} records on {topic}", every_s=0)
    finally:
        consumer.close()
    return out


def _committed(secure: ConnectionSettings, group: str, topic: str) -> int:
    consumer = KafkaConsumer(**secure.kafka_options(), group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


def test_producer_and_consumer_work_through_sasl_ssl(
    secure: ConnectionSettings, secure_topics: tuple[str, str, str]
) -> None:
    inp, out, dlq = secure_topics
    # the producer CLI reads the SASL_SSL settings from the SEGMENTER_* variables of client-env
    assert (
        producer_main(
            [
                "synth",
                "--customers",
                "40",
                "--days",
                "20",
                "--seed",
                "3",
                "--max-events",
                "1500",
                "--to",
                "kafka",
                "--topic",
                inp,
                "--no-create-topic",
                "-q",
            ]
        )
        == 0
    )
    group = f"sec-{uuid.uuid4().hex[:8]}"
    # so does the consumer; the flags only name its topics
    settings = settings_for(secure.bootstrap_servers, group, inp, out, dlq)
    assert settings.security_protocol == "SASL_SSL" and settings.sasl_mechanism == "SCRAM-SHA-512"
    with service_thread(settings):
        wait_for(lambda: _committed(secure, group, inp) == 1500, 90, "the consumer's commit of all 1500 events")
    outputs = _read(secure, out, at_least=1)
    assert {o["kind"] for o in outputs} >= {"segment_change"}
    assert all(o["to_segment"] is not None for o in outputs if o["kind"] == "segment_change")


def _cli(module: str, *args: str, **env: str) -> tuple[int, str]:
    """Run ``python -m module args`` with this process's environment plus ``env``; (exit code, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return proc.returncode, proc.stderr


def test_a_wrong_password_stops_the_consumer_with_one_clear_line(secure: ConnectionSettings) -> None:
    started = time.monotonic()
    code, err = _cli(
        "consumer",
        "--metrics-port",
        "-1",
        "--topics.input",
        f"sec-none-{uuid.uuid4().hex[:6]}",
        "--config-file",
        str(it_config_file()),
        SEGMENTER_SASL_PASSWORD="not-the-password",
    )
    print(f"the consumer gave up after {time.monotonic() - started:.1f}s")
    assert code == 5
    failure = [line for line in err.splitlines() if " consumer: " in line]
    assert len(failure) == 1 and "SASL login as 'segmenter' (SCRAM-SHA-512) failed" in failure[0]
    assert "not-the-password" not in err and "Traceback" not in err


def _producer_to(topic: str, *extra: str, **env: str) -> tuple[int, str]:
    """A short ``segmenter-producer synth`` to ``topic`` on the secure broker, 3 s to connect; (exit code, stderr)."""
    synth = ["synth", "--customers", "5", "--days", "1", "--connect-timeout", "3", "-q", "--to", "kafka"]
    return _cli("producer", *synth, "--topic", topic, *extra, **env)


def test_a_wrong_password_stops_the_producer_with_one_clear_line(
    secure: ConnectionSettings, secure_topics: tuple[str, str, str]
) -> None:
    code, err = _producer_to(secure_topics[0], "--sasl-password", "not-the-password")
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "SASL login as 'segmenter' (SCRAM-SHA-512) failed" in err and "not-the-password" not in err


def test_a_ca_that_did_not_sign_the_broker_is_named(
    secure: ConnectionSettings, secure_topics: tuple[str, str, str], tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "k.pem"),
            "-out",
            str(other_ca),
            "-days",
            "1",
            "-subj",
            "/CN=someone else",
        ],
        capture_output=True,
        check=True,
    )
    code, err = _producer_to(secure_topics[0], SEGMENTER_SSL_CAFILE=str(other_ca))
    assert code == 1
    assert len(err.strip().splitlines()) == 1
    assert "certificate verify failed (self-signed certificate in certificate chain)" in err
    assert "check ssl_cafile" in err
