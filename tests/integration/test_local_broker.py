"""The local broker started by scripts/kafka-local is a real Kafka that supports transactions."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from tests.integration.conftest import read_all

ROOT = Path(__file__).resolve().parents[2]


def test_launcher_status_and_second_start_are_harmless(bootstrap: str) -> None:
    port = bootstrap.rsplit(":", 1)[1]
    status = subprocess.run(
        [sys.executable, str(ROOT / "scripts/kafka-local"), "status", "--port", port], capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "metadata ok" in status.stdout
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts/kafka-local"), "start", "--port", port], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout


def test_status_reports_an_unreachable_port() -> None:
    status = subprocess.run(
        [sys.executable, str(ROOT / "scripts/kafka-local"), "status", "--port", "1"], capture_output=True, text=True
    )
    assert status.returncode == 1
    assert "unreachable" in status.stdout


def test_transaction_commits_outputs_and_offsets_atomically(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer
) -> None:
    source, sink = new_topic(suffix="in"), new_topic(suffix="out")
    plain_producer.send(source, b"hello", key=b"k").get(timeout=10)

    consumer = KafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    records = []
    for _ in range(40):
        records = [r for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        if records:
            break
    assert [r.value for r in records] == [b"hello"]

    tx = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tx-{group_id}")
    tx.init_transactions()
    tx.begin_transaction()
    tx.send(sink, b"aborted", key=b"k")
    tx.abort_transaction()
    tx.begin_transaction()
    tx.send(sink, b"world", key=b"k")
    tx.send_offsets_to_transaction({TopicPartition(source, 0): OffsetAndMetadata(1, "", -1)}, consumer.group_metadata())
    tx.commit_transaction()
    tx.close()

    assert [v for _, v, _ in read_all(bootstrap, sink, expect=1)] == [b"world"]
    assert consumer.committed(TopicPartition(source, 0)) == 1
    consumer.close()
