"""segmenter.connection: kafka-python's options, and telling a failed login from an unreachable broker."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from segmenter.connection import Connect, ConnectionSettings, error_text, login_failure, unreachable

SASL = {
    "security_protocol": "SASL_PLAINTEXT",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_username": "shop",
    "sasl_password": "hunter2",
}


def _unreachable(address: tuple[str, int], timeout: float) -> socket.socket:
    raise ConnectionRefusedError(111, "Connection refused")


def _peer_that_hangs_up(address: tuple[str, int], timeout: float) -> socket.socket:
    ours, theirs = socket.socketpair()
    theirs.close()  # accepts, then closes: no TLS server there
    ours.settimeout(timeout)
    return ours


@pytest.fixture
def peer_that_stays() -> Iterator[Connect]:
    """A connect function whose peer accepts and keeps the connection open (closed after the test)."""
    held: list[socket.socket] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        ours, theirs = socket.socketpair()
        held.extend((ours, theirs))
        return ours

    yield connect
    for sock in held:
        sock.close()


def test_plaintext_options_carry_nothing_but_the_servers() -> None:
    assert ConnectionSettings(bootstrap_servers=" a:1 , b:2 ").kafka_options() == {
        "bootstrap_servers": ["a:1", "b:2"],
        "security_protocol": "PLAINTEXT",
    }


def test_sasl_options_use_kafka_pythons_names() -> None:
    options = ConnectionSettings(**SASL).kafka_options()
    assert options == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "shop",
        "sasl_plain_password": "hunter2",
    }


def test_an_unreachable_broker_is_not_a_login_failure() -> None:
    assert login_failure(ConnectionSettings(**SASL), _unreachable) is None


def test_a_reachable_plaintext_broker_explains_nothing(peer_that_stays: Connect) -> None:
    assert login_failure(ConnectionSettings(), peer_that_stays) is None


def test_a_reachable_sasl_broker_that_refused_the_client_is_a_login_failure(peer_that_stays: Connect) -> None:
    reason = login_failure(ConnectionSettings(**SASL), peer_that_stays)
    assert reason == (
        "the broker at 127.0.0.1:9092 accepted the connection but the SASL login as 'shop' "
        "(SCRAM-SHA-256) failed: check sasl_username, sasl_password and sasl_mechanism"
    )
    assert "hunter2" not in reason


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_a_listener_without_tls_is_named_as_the_reason(protocol: str) -> None:
    extra = {k: v for k, v in SASL.items() if k != "security_protocol"} if protocol == "SASL_SSL" else {}
    reason = login_failure(ConnectionSettings(security_protocol=protocol, **extra), _peer_that_hangs_up, 2.0)
    assert reason is not None and reason.startswith("TLS with 127.0.0.1:9092 failed (")
    assert f"is the listener {protocol}? check security_protocol and the port" in reason


@pytest.mark.parametrize(
    ("servers", "address"),
    [("k1:9093,k2:9094", ("k1", 9093)), ("[::1]:9093", ("::1", 9093)), ("kafka", ("kafka", 9092))],
)
def test_the_login_check_connects_where_kafka_python_would(servers: str, address: tuple[str, int]) -> None:
    """The first bootstrap server, read by the settings' own parser: an IPv6 host unbracketed, a bare host on 9092."""
    seen: list[tuple[str, int]] = []

    def connect(addr: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(addr)
        raise ConnectionRefusedError(111, "Connection refused")

    assert login_failure(ConnectionSettings(bootstrap_servers=servers, **SASL), connect) is None
    assert seen == [address]


def test_no_server_accepting_a_connection_is_named_with_each_answer_and_what_to_check() -> None:
    answers = {("k1", 9093): ConnectionRefusedError(111, "Connection refused"),
               ("nowhere", 9092): socket.gaierror(-2, "Name or service not known")}  # fmt: skip

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        raise answers[address]

    reason = unreachable(ConnectionSettings(bootstrap_servers="k1:9093,nowhere"), connect)
    assert reason == (
        "no bootstrap server accepts a TCP connection (k1:9093: Connection refused; nowhere: Name or service not "
        "known): is Kafka running there? check bootstrap_servers (--bootstrap-servers, SEGMENTER_BOOTSTRAP_SERVERS)"
    )


def test_one_server_accepting_a_connection_is_reachable(peer_that_stays: Connect) -> None:
    tried: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        tried.append(address)
        return _unreachable(address, timeout) if address[0] == "k1" else peer_that_stays(address, timeout)

    assert unreachable(ConnectionSettings(bootstrap_servers="k1:9093,k2:9094"), connect) is None
    assert tried == [("k1", 9093), ("k2", 9094)]


def test_an_error_text_names_its_type_once() -> None:
    class KafkaTimeoutError(Exception):  # kafka-python's errors start their text with their type
        def __str__(self) -> str:
            return f"KafkaTimeoutError: {self.args[0]}"

    assert error_text(KafkaTimeoutError("Unable to bootstrap")) == "KafkaTimeoutError: Unable to bootstrap"
    assert error_text(ValueError("bad")) == "ValueError: bad"
    assert error_text(TimeoutError()) == "TimeoutError"
