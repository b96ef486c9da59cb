"""consumer.settings: flags and SEGMENTER_* variables, TLS/SASL checks, unknown variables, secrets never shown.

In the manner of pydantic-settings' own tests: each source alone, their
precedence, and the error for each bad input.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from consumer.__main__ import main
from consumer.errors import SettingsError
from consumer.settings import KNOWN_VARIABLES, Settings, load_settings

SASL = ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "shop"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SEGMENTER_* variable of the calling shell (the Makefile exports one) leaks into a test."""
    for name in [k for k in os.environ if k.startswith("SEGMENTER_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def cafile(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


def test_defaults_are_plaintext_on_loopback() -> None:
    s = load_settings([])
    assert (s.bootstrap_servers, s.security_protocol, s.sasl_mechanism, s.sasl_password) == (
        "127.0.0.1:9092",
        "PLAINTEXT",
        None,
        None,
    )
    assert (s.metrics_host, s.metrics_token, s.ssl_check_hostname) == ("127.0.0.1", None, True)
    assert s.kafka_options() == {"bootstrap_servers": ["127.0.0.1:9092"], "security_protocol": "PLAINTEXT"}


def test_security_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, cafile: Path) -> None:
    monkeypatch.setenv("SEGMENTER_BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SEGMENTER_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("SEGMENTER_SASL_USERNAME", "shop")
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SEGMENTER_SSL_CAFILE", str(cafile))
    monkeypatch.setenv("SEGMENTER_SSL_CHECK_HOSTNAME", "false")
    s = load_settings([])
    assert s.kafka_options() == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "shop",
        "sasl_plain_password": "hunter2",
        "ssl_check_hostname": False,
        "ssl_cafile": str(cafile),
    }


def test_security_settings_from_flags(cafile: Path) -> None:
    s = load_settings([*SASL, "--sasl-password", "hunter2", "--ssl-cafile", str(cafile)])
    assert (s.security_protocol, s.sasl_mechanism, s.sasl_username, s.ssl_cafile) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "shop",
        cafile,
    )
    assert isinstance(s.sasl_password, SecretStr) and s.sasl_password.get_secret_value() == "hunter2"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SEGMENTER_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SEGMENTER_SASL_USERNAME", "from-env")
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "env-secret")
    s = load_settings(["--sasl-username", "from-flag", "--security-protocol", "SASL_PLAINTEXT"])
    assert (s.sasl_username, s.security_protocol, s.sasl_mechanism) == ("from-flag", "SASL_PLAINTEXT", "PLAIN")


def test_a_client_certificate_is_passed_with_its_key(tmp_path: Path, cafile: Path) -> None:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("c")
    key.write_text("k")
    s = load_settings(["--security-protocol", "SSL", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)])
    assert s.kafka_options() == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "SSL",
        "ssl_check_hostname": True,
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
    }


def test_settings_are_frozen() -> None:
    s = load_settings([])
    with pytest.raises(ValidationError):
        s.security_protocol = "SSL"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "field", "problem"),
    [
        (
            ["--security-protocol", "SASL_SSL", "--sasl-username", "u", "--sasl-password", "p"],
            "sasl_mechanism",
            "required with security_protocol SASL_SSL",
        ),
        (
            ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN", "--sasl-password", "p"],
            "sasl_username",
            "required with security_protocol SASL_PLAINTEXT",
        ),
        (SASL, "sasl_password", "required with security_protocol SASL_SSL"),
        (["--sasl-username", "u"], "sasl_username", "is set but security_protocol is PLAINTEXT"),
        (
            ["--security-protocol", "SSL", "--ssl-cafile", "/nonexistent/ca.pem"],
            "ssl_cafile",
            "no such file: /nonexistent/ca.pem",
        ),
        (["--ssl-cafile", "/etc/hostname"], "ssl_cafile", "is set but security_protocol is PLAINTEXT"),
        (["--security-protocol", "SSL", "--ssl-keyfile", "/etc/hostname"], "ssl_keyfile", "needs ssl_certfile"),
        (["--security-protocol", "TLS"], "security_protocol", "Input should be 'PLAINTEXT', 'SSL'"),
        (["--bootstrap-servers", "127.0.0.1:70000"], "bootstrap_servers", "port '70000' is not a number from 1"),
        (["--bootstrap-servers", "k1:9092,,k2:9092"], "bootstrap_servers", "an empty entry"),
        (["--bootstrap-servers", "k1:kafka"], "bootstrap_servers", "port 'kafka' is not a number"),
        (["--bootstrap-servers", "kafka://k1:9092"], "bootstrap_servers", "not a host name or address"),
        (["--bootstrap-servers", "[::1:9092"], "bootstrap_servers", "an IPv6 address is written [address]:port"),
        (
            ["--commit-interval-ms", "120000"],
            "transaction_timeout_ms",
            "60000 ms is not longer than the longest batch interval (120000 ms",
        ),
        (
            ["--catch-up-interval-ms", "60000"],
            "transaction_timeout_ms",
            "60000 ms is not longer than the longest batch interval (60000 ms",
        ),
        (
            ["--security-protocol", "SASL_SSL", "--sasl-mechanism", "GSSAPI"],
            "sasl_mechanism",
            "Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
    ],
)
def test_each_bad_combination_names_its_field_flag_and_variable(args: list[str], field: str, problem: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(args)
    flag, env = "--" + field.replace("_", "-"), "SEGMENTER_" + field.upper()
    assert f"invalid setting {field} (flag {flag}, env {env}): " in str(info.value)
    assert problem in str(info.value)


@pytest.mark.parametrize("servers", ["k1:9092", "k1:9092, k2:9093", "[::1]:9092", "kafka", "10.0.0.1:1,[fe80::1]"])
def test_bootstrap_servers_take_host_port_lists(servers: str) -> None:
    assert load_settings(["--bootstrap-servers", servers]).bootstrap_servers == servers


def test_a_long_batch_interval_needs_a_longer_transaction_timeout_only_with_transactions() -> None:
    assert load_settings(["--commit-interval-ms", "120000", "--transaction-timeout-ms", "120001"]).commit_interval_ms
    assert load_settings(["--commit-interval-ms", "120000", "--guarantee", "at-least-once"]).commit_interval_ms


def test_a_bad_value_in_the_environment_is_named_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCOL", "sasl-ssl")
    with pytest.raises(SettingsError, match=r"security_protocol .*env SEGMENTER_SECURITY_PROTOCOL.*got 'sasl-ssl'"):
        load_settings([])


@pytest.mark.parametrize(
    ("name", "nearest"),
    [
        ("SEGMENTER_SECURITY_PROTOCL", "SEGMENTER_SECURITY_PROTOCOL"),
        ("SEGMENTER_SASL_PASSWD", "SEGMENTER_SASL_PASSWORD"),
        ("SEGMENTER_TOPICS__INPT", "SEGMENTER_TOPICS__INPUT"),
        ("SEGMENTER_TOPICS_INPUT", "SEGMENTER_TOPICS__INPUT"),
        ("segmenter_group_idd", "SEGMENTER_GROUP_ID"),
    ],
)
def test_an_unknown_variable_is_refused_with_the_nearest_valid_one(
    monkeypatch: pytest.MonkeyPatch, name: str, nearest: str
) -> None:
    monkeypatch.setenv(name, "SASL_SSL")
    with pytest.raises(SettingsError) as info:
        load_settings([])
    assert str(info.value) == f"unknown environment variable {name} (did you mean {nearest}?)"


def test_an_unknown_variable_far_from_every_name_is_refused_without_a_guess() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings([], environ={"SEGMENTER_XYZZY": "1"})
    assert str(info.value) == "unknown environment variable SEGMENTER_XYZZY"


def test_every_setting_and_the_launcher_variables_are_known(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "SEGMENTER_KAFKA_CACHE",
        "SEGMENTER_KAFKA_PORT",
        "SEGMENTER_KAFKA_VERSION",
        "SEGMENTER_KAFKA_HEAP",
        "SEGMENTER_KAFKA_START_TIMEOUT",
    ):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("SEGMENTER_TOPICS__DLQ", "bad-letters")
    monkeypatch.setenv("SEGMENTER_METRICS_TOKEN", "t")
    assert load_settings([]).topics.dlq == "bad-letters"
    assert {f"SEGMENTER_{n.upper()}" for n in Settings.model_fields} <= KNOWN_VARIABLES


def test_an_unknown_variable_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCL", "SASL_SSL")
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == (
        "segmenter-consumer: unknown environment variable SEGMENTER_SECURITY_PROTOCL "
        "(did you mean SEGMENTER_SECURITY_PROTOCOL?)\n"
    )


def test_the_password_is_never_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("SEGMENTER_METRICS_TOKEN", "tok3n")
    s = load_settings(SASL)
    logging.getLogger("test").info("settings: %s %r", s, s)
    assert "hunter2" not in repr(s) + str(s) + s.model_dump_json() + caplog.text
    assert "tok3n" not in repr(s) + str(s) + s.model_dump_json() + caplog.text
    # nor in an error about it, nor in --help
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(SettingsError) as info:
        load_settings(["--sasl-mechanism", "PLAIN", "--sasl-username", "u"])
    assert "sasl_password" in str(info.value) and "got ***" in str(info.value)
    assert "hunter2" not in str(info.value)
    with pytest.raises(SystemExit):
        load_settings(["--help"])
    help_text = capsys.readouterr().out
    assert "--sasl-password" in help_text and "--metrics-token" in help_text
    assert "hunter2" not in help_text and "tok3n" not in help_text
