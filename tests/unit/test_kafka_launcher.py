"""scripts/kafka-local: its readiness probe and its failure messages, without a real broker."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("SEGMENTER_KAFKA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEGMENTER_KAFKA_START_TIMEOUT", "5")
    loader = importlib.machinery.SourceFileLoader("kafka_local", str(ROOT / "scripts" / "kafka-local"))
    spec = importlib.util.spec_from_loader("kafka_local", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_broker() -> Iterator[int]:
    """A TCP server that answers one Kafka Metadata request with one broker."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = int(server.getsockname()[1])

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            size = struct.unpack(">i", conn.recv(4))[0]
            request = conn.recv(size)
            correlation_id = struct.unpack(">i", request[4:8])[0]
            body = struct.pack(">ii", correlation_id, 1) + b"\x00" * 16
            conn.sendall(struct.pack(">i", len(body)) + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()


def test_metadata_probe_accepts_a_broker_that_answers(launcher: ModuleType, fake_broker: int) -> None:
    assert launcher.metadata_ok(fake_broker) is True


def test_metadata_probe_rejects_a_closed_port(launcher: ModuleType) -> None:
    assert launcher.metadata_ok(free_port(), timeout=0.5) is False


def test_a_broker_that_dies_at_start_up_is_reported_with_its_log(
    launcher: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    # formatting storage succeeds, the server itself dies with a message
    java.write_text('#!/bin/sh\ncase "$*" in *StorageTool*) mkdir -p "$(dirname $0)/ok"; exit 0;; esac\n'
                    'echo "FATAL boom: port in use" ; exit 3\n')
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    port = free_port()
    p = launcher.paths(port)
    p["libs"].mkdir(parents=True)
    p["ready"].touch()  # pretend Maven already fetched the jars
    with pytest.raises(launcher.LauncherError) as info:
        launcher.start(port)
    assert "exited during start-up" in str(info.value)
    assert "FATAL boom: port in use" in str(info.value)


def test_stop_without_a_recorded_broker_is_harmless(launcher: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    launcher.stop(free_port())
    assert "no broker started by kafka-local" in capsys.readouterr().out


def test_a_stale_pid_file_of_another_process_is_never_killed(launcher: ModuleType) -> None:
    port = free_port()
    p = launcher.paths(port)
    p["run"].mkdir(parents=True)
    p["pid"].write_text("1\n")  # pid 1 is alive but is not our broker
    assert launcher.recorded_pid(p) is None
