"""``segmenter-producer`` against the real broker: keys, content, topic creation, errors, benchmark smoke."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient

from producer.__main__ import main
from producer.kafka_sink import KafkaSettings, KafkaSink
from segmenter.connection import ConnectionSettings
from tests.integration.conftest import read_all

ROOT = Path(__file__).resolve().parents[2]
SYNTH = ["synth", "--customers", "30", "--days", "10", "--seed", "8", "-q"]


def test_synth_to_kafka_matches_the_file_output(bootstrap: str, new_topic: Callable[..., str], tmp_path: Path) -> None:
    topic = new_topic(partitions=3)
    file_out = tmp_path / "events.jsonl"
    args = [*SYNTH, "--duplicate-rate", "0.01", "--malformed-rate", "0.01"]
    assert main([*args, "--to", "file", str(file_out)]) == 0
    assert main([*args, "--to", "kafka", "--bootstrap-servers", bootstrap, "--topic", topic]) == 0
    expected = file_out.read_bytes().splitlines()
    records = read_all(bootstrap, topic, expect=len(expected))
    assert len(records) == len(expected) > 1000
    # keyed by customer id; per key the order of the file is kept (one key -> one partition)
    per_key_kafka: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for key, value, _ in records:
        per_key_kafka[key].append(value)
    per_key_file: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for value in expected:
        try:
            cid = orjson.loads(value).get("customer_id")
        except orjson.JSONDecodeError:
            cid = None
        if cid is not None:
            per_key_file[cid.encode()].append(value)
    for key, values in per_key_file.items():
        assert [v for v in per_key_kafka[key] if v in set(values)] == values
    for key, value, _ in records:
        assert value is not None and key is not None
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if "customer_id" in event:
            assert key == event["customer_id"].encode()


@pytest.fixture
def fresh_topic_name(admin: KafkaAdminClient) -> Iterator[str]:
    name = f"t-producer-created-{uuid.uuid4().hex[:8]}"
    yield name
    if name in set(admin.list_topics()):
        admin.delete_topics([name])


def test_missing_topic_is_created_with_the_partition_count(
    bootstrap: str, admin: KafkaAdminClient, fresh_topic_name: str
) -> None:
    assert (
        main(
            [
                *SYNTH,
                "--max-events",
                "200",
                "--to",
                "kafka",
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                fresh_topic_name,
                "--partitions",
                "4",
            ]
        )
        == 0
    )
    (description,) = admin.describe_topics([fresh_topic_name])
    assert len(description["partitions"]) == 4
    assert len(read_all(bootstrap, fresh_topic_name, expect=200)) == 200


def test_no_create_topic_leaves_a_missing_topic_alone(
    bootstrap: str, admin: KafkaAdminClient, fresh_topic_name: str
) -> None:
    sink = KafkaSink(
        KafkaSettings(ConnectionSettings(bootstrap_servers=bootstrap), topic=fresh_topic_name, create_topic=False)
    )
    sink.close()
    assert fresh_topic_name not in set(admin.list_topics())


@pytest.mark.parametrize("compression", [[], ["--compression", "lz4"], ["--compression", "zstd"],
                                         ["--compression", "snappy"]])  # fmt: skip
def test_replay_to_kafka(bootstrap: str, new_topic: Callable[..., str], tmp_path: Path, compression: list[str]) -> None:
    topic = new_topic(partitions=2)
    src = tmp_path / "in.csv"
    src.write_text(
        "customer_id,ts,type,amount\nc2,2026-01-02T00:00:00Z,purchase,4\n"
        "c1,2026-01-01T00:00:00Z,purchase,3\nc1,bad,purchase,1\n"
    )
    argv = ["replay", str(src), "-q", "--to", "kafka", "--bootstrap-servers", bootstrap, "--topic", topic]
    assert main([*argv, *compression]) == 0
    records = sorted((k, orjson.loads(v or b"")["amount"]) for k, v, _ in read_all(bootstrap, topic, expect=2))
    assert records == [(b"c1", 3.0), (b"c2", 4.0)]


def test_benchmark_runs_tiny(bootstrap: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "producer_throughput.py"),
            "--events",
            "2000",
            "--customers",
            "200",
            "--bootstrap-servers",
            bootstrap,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "kafka_vs_bare_ratio" in result.stdout
    numbers = orjson.loads(out.read_bytes())
    assert numbers["events"] == 2000
    for key in ("file_events_per_s", "generate_events_per_s", "kafka_events_per_s", "bare_kafka_python_per_s"):
        assert numbers[key] > 0
