"""Crash and broker-restart recovery: committed outputs have no duplicate and miss nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from consumer.kafka_io import DELIVERY_TIMEOUT_MS
from tests.integration.conftest import read_all
from tests.integration.consumer_support import (
    ROOT,
    ConsumerProcess,
    committed_offset,
    make_events,
    offline_outputs,
    produce,
    strip,
    wait_for,
)

EVENTS = 1500
KILL_EVENTS = 10000  # long enough that three kills, 150+ offsets apart, land before the end at any core and
# Kafka-edge speed: progress is checked every 0.3 s, and a restarted instance with fast transactions worked off
# the rest of a 3000-event stream between two checks


def _args(bootstrap: str, group: str, inp: str, out: str, dlq: str) -> list[str]:
    return [
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
        "--metrics-port",
        "-1",
        "--commit-interval-ms",
        "50",
        "--batch-size",
        "25",
        "--transaction-timeout-ms",
        "10000",
        "--session-timeout-ms",
        "6000",
        "--instance-id",
        "k",
    ]


def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    bootstrap: str, new_topic: Callable[..., str], group_id: str, plain_producer: KafkaProducer, tmp_path: Path
) -> None:
    inp, out, dlq = new_topic(suffix="in"), new_topic(suffix="out"), new_topic(suffix="dlq")
    events = make_events(KILL_EVENTS)
    expected = offline_outputs(events)  # the outputs of a run without kills (same core, same order)
    produce(plain_producer, inp, list(events))
    args = _args(bootstrap, group_id, inp, out, dlq)
    kills = 0
    last = 0
    while kills < 3:
        proc = ConsumerProcess(args, tmp_path / f"run{kills}.log")
        try:
            target = last + 150
            wait_for(
                lambda t=target: committed_offset(bootstrap, group_id, inp) >= t,  # type: ignore[misc]
                60,
                f"progress past offset {target}",
            )
            last = committed_offset(bootstrap, group_id, inp)
            if last >= KILL_EVENTS:
                break
        finally:
            if proc.alive():
                proc.kill()
        kills += 1
    assert kills == 3, f"the stream finished before 3 kills (after {kills}); make it longer"
    final = ConsumerProcess(args, tmp_path / "final.log")
    try:
        wait_for(lambda: committed_offset(bootstrap, group_id, inp) == KILL_EVENTS, 90, "all offsets committed")
        assert final.terminate() == 0, final.log_text()[-3000:]
    finally:
        if final.alive():
            final.kill()
    got = strip(read_all(bootstrap, out, expect=len(expected) + 1, timeout_s=15))
    assert len(got) == len(expected), "duplicates or losses"
    assert got == expected
    assert "restored" in (tmp_path / "final.log").read_text()
    assert read_all(bootstrap, dlq, timeout_s=3) == []


@pytest.fixture
def second_broker() -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    port = "19092"
    launcher = [sys.executable, str(ROOT / "scripts/kafka-local")]

    def start() -> None:
        subprocess.run([*launcher, "start", "--port", port], check=True, capture_output=True, timeout=180)

    def stop() -> None:
        subprocess.run([*launcher, "stop", "--port", port], check=True, capture_output=True, timeout=120)

    try:
        start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"cannot start a second broker on port {port}: {exc}")
    yield f"127.0.0.1:{port}", start, stop
    stop()


@pytest.mark.parametrize("outage", ["short", "past_the_delivery_timeout"])
def test_broker_stopped_and_started_mid_stream(
    bootstrap: str, second_broker: tuple[str, Callable[[], None], Callable[[], None]], tmp_path: Path, outage: str
) -> None:
    """A broker outage mid-stream: outputs equal an uninterrupted run's, none lost, none twice.

    ``past_the_delivery_timeout`` keeps the broker down longer than the producer's ``delivery_timeout_ms`` (and
    shorter than a commit may wait): the open batch's records expire when it is back, and kafka-python then
    commits the transaction without them unless the edge refuses to ask for the commit (which once lost a
    batch's outputs and state while its input offsets were committed).
    """
    server, start, stop = second_broker
    suffix = str(int(time.time() * 1000))
    inp, out, dlq, group = f"br-in-{suffix}", f"br-out-{suffix}", f"br-dlq-{suffix}", f"br-g-{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=server)
    admin.create_topics({inp: {"num_partitions": 1, "replication_factor": 1}})
    admin.close()
    count = EVENTS if outage == "short" else KILL_EVENTS  # long enough that the broker stops mid-stream
    events = make_events(count, seed=11)
    expected = offline_outputs(events)
    producer = KafkaProducer(bootstrap_servers=server, acks="all")
    produce(producer, inp, list(events))
    producer.close()
    proc = ConsumerProcess(_args(server, group, inp, out, dlq), tmp_path / "consumer.log")
    try:
        wait_for(lambda: committed_offset(server, group, inp) >= 200, 60, "progress before the broker stops")
        stop()
        # the outage itself (not a synchronisation): the consumer must notice and keep retrying
        time.sleep(2 if outage == "short" else DELIVERY_TIMEOUT_MS / 1000 + 5)
        assert proc.alive()
        start()
        wait_for(lambda: committed_offset(server, group, inp) == count, 180, "all offsets committed after restart")
        assert proc.terminate() == 0
    finally:
        if proc.alive():
            proc.kill()
    got = strip(read_all(server, out, expect=len(expected) + 1, timeout_s=15))
    assert got == expected
