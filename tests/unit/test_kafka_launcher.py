"""scripts/kafka-local: its readiness probe and its failure messages, without a real broker."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import re
import socket
import ssl
import struct
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from segmenter.envcheck import LAUNCHER_VARIABLES

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
    java.write_text(
        '#!/bin/sh\ncase "$*" in *StorageTool*) mkdir -p "$(dirname $0)/ok"; exit 0;; esac\n'
        'echo "FATAL boom: port in use" ; exit 3\n'
    )
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


# --- the secure broker (--secure) and client-env --------------------------------------------------------------


@pytest.fixture
def fake_storage_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``java`` whose StorageTool records its arguments and 'formats' the storage; returns the record file."""
    java_home = tmp_path / "jdk"
    (java_home / "bin").mkdir(parents=True)
    record = tmp_path / "storage-args"
    java = java_home / "bin" / "java"
    java.write_text(
        '#!/bin/sh\ncase "$*" in *StorageTool*) echo "$@" > ' + str(record) + ";;\nesac\n"
        'for a in "$@"; do case "$a" in *server.properties) props="$a";; esac; done\n'
        'data=$(sed -n "s/^log.dirs=//p" "$props"); mkdir -p "$data"; touch "$data/meta.properties"\n'
    )
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    return record


def test_client_env_without_secure_is_the_bootstrap_line(launcher: ModuleType) -> None:
    assert launcher.client_env(9300, secure=False) == ["SEGMENTER_BOOTSTRAP_SERVERS=127.0.0.1:9300"]


def test_client_env_secure_needs_a_secure_broker_first(launcher: ModuleType) -> None:
    with pytest.raises(launcher.LauncherError, match="run scripts/kafka-local start --secure --port 9300 first"):
        launcher.client_env(9300, secure=True)


def test_a_secure_broker_gets_a_sasl_ssl_listener_a_scram_user_and_a_ca(
    launcher: ModuleType, fake_storage_tool: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    p = launcher.paths(port)
    launcher.configure(p, port, secure=True)
    props = p["props"].read_text()
    listeners = f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},INTERNAL://127.0.0.1:{port + 2}"
    assert f"\nlisteners={listeners}\n" in props and f"\nadvertised.listeners={listeners}\n" in props
    assert "inter.broker.listener.name=INTERNAL" in props and "sasl.enabled.mechanisms=SCRAM-SHA-512" in props
    assert f"ssl.keystore.location={p['keystore']}" in props and "PLAINTEXT://" not in props
    password = p["password"].read_text().strip()
    assert len(password) >= 24 and p["password"].stat().st_mode & 0o077 == 0
    assert f"--add-scram SCRAM-SHA-512=[name=segmenter,password={password}]" in fake_storage_tool.read_text()
    assert launcher.client_env(port, secure=True) == [
        f"SEGMENTER_BOOTSTRAP_SERVERS=127.0.0.1:{port}",
        "SEGMENTER_SECURITY_PROTOCOL=SASL_SSL",
        "SEGMENTER_SASL_MECHANISM=SCRAM-SHA-512",
        "SEGMENTER_SASL_USERNAME=segmenter",
        f"SEGMENTER_SASL_PASSWORD={password}",
        f"SEGMENTER_SSL_CAFILE={p['cafile']}",
    ]
    assert launcher.main(["client-env", "--secure", "--port", str(port)]) == 0
    assert capsys.readouterr().out.splitlines() == launcher.client_env(port, secure=True)
    # the plain broker's port cannot be reused for a secure one and back
    with pytest.raises(launcher.LauncherError, match=f"set up secure; use another --port.*reset --port {port}"):
        launcher.configure(p, port, secure=False)


def test_the_broker_certificate_verifies_against_the_generated_ca(launcher: ModuleType, tmp_path: Path) -> None:
    p = launcher.paths(free_port())
    launcher.make_certificates(p)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(p["keystore"])  # the broker's PEM keystore: key, certificate, CA
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), server_context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert launcher.tls_ok(port, p["cafile"]) is True  # hostname 127.0.0.1 checked against the SAN
    finally:
        thread.join(10)
        listener.close()
    assert launcher.tls_ok(port, p["cafile"], timeout=0.5) is False  # nobody listens any more


def test_the_launchers_variables_are_the_ones_settings_allow(launcher: ModuleType) -> None:
    assert set(launcher.LAUNCHER_VARIABLES) == LAUNCHER_VARIABLES
    text = (ROOT / "scripts" / "kafka-local").read_text()
    read = set(re.findall(r'environ\.get\("(SEGMENTER_[A-Z_]+)"', text))
    assert read == LAUNCHER_VARIABLES


def test_cluster_id_never_starts_with_a_dash(launcher: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """StorageTool reads ``-t -abc`` as a missing value: an id starting with "-" is drawn again."""
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=bytes(16))])  # "-A..." then "AAAA..."
    monkeypatch.setattr(launcher.uuid, "uuid4", lambda: next(drawn))
    cluster_id = launcher.new_cluster_id()
    assert cluster_id == "A" * 22
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", cluster_id)
