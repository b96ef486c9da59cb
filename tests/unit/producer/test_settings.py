"""producer.settings: the consumer's connection settings, as producer flags over SEGMENTER_* variables."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from consumer.settings import KNOWN_VARIABLES as CONSUMER_KNOWN
from producer.__main__ import build_parser, main
from producer.errors import SettingsError
from producer.settings import KNOWN_VARIABLES, load_connection
from segmenter.connection import ConnectionSettings

SYNTH = ["synth", "--customers", "3", "--days", "1", "-q"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("SEGMENTER_")]:
        monkeypatch.delenv(name)


def _connection(*flags: str) -> ConnectionSettings:
    return load_connection(vars(build_parser().parse_args([*SYNTH, *flags])))


def test_every_variable_the_consumer_reads_is_known_to_the_producer() -> None:
    # one shell environment serves both commands: the producer must not refuse SEGMENTER_GROUP_ID
    assert CONSUMER_KNOWN <= KNOWN_VARIABLES, sorted(CONSUMER_KNOWN - KNOWN_VARIABLES)


def test_connection_flags_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    monkeypatch.setenv("SEGMENTER_BOOTSTRAP_SERVERS", "env:9093")
    monkeypatch.setenv("SEGMENTER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SEGMENTER_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SEGMENTER_SASL_USERNAME", "env-user")
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "env-secret")
    monkeypatch.setenv("SEGMENTER_SSL_CAFILE", str(ca))
    monkeypatch.setenv("SEGMENTER_GROUP_ID", "a consumer setting: ignored here")
    options = load_connection(
        vars(build_parser().parse_args([*SYNTH, "--sasl-username", "flag-user", "--bootstrap-servers", "flag:9093"]))
    ).kafka_options()
    assert options == {
        "bootstrap_servers": ["flag:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "flag-user",
        "sasl_plain_password": "env-secret",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
    }


def test_an_unknown_variable_exits_2_naming_the_nearest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEGMENTER_BOOTSTRAP_SERVER", "k:9092")
    assert main([*SYNTH, "--to", "file", "-"]) == 2
    assert (
        "unknown environment variable SEGMENTER_BOOTSTRAP_SERVER (did you mean SEGMENTER_BOOTSTRAP_SERVERS?)"
        in caplog.text
    )


def test_a_bad_setting_exits_2_naming_flag_and_variable_but_never_the_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "hunter2")
    assert main([*SYNTH, "--to", "file", "-"]) == 2
    assert "invalid setting sasl_password (flag --sasl-password, env SEGMENTER_SASL_PASSWORD)" in caplog.text
    assert "is set but security_protocol is PLAINTEXT" in caplog.text and "got ***" in caplog.text
    assert "hunter2" not in caplog.text


def test_help_shows_the_flags_and_no_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMENTER_SASL_PASSWORD", "hunter2")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--security-protocol",
        "--sasl-mechanism",
        "--sasl-username",
        "--sasl-password",
        "--ssl-cafile",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--ssl-check-hostname",
        "--bootstrap-servers",
    ):
        assert flag in out
    assert "SEGMENTER_SASL_PASSWORD" in out and "hunter2" not in out


def test_missing_sasl_fields_are_refused_before_connecting() -> None:
    with pytest.raises(SettingsError, match=r"sasl_mechanism .*required with security_protocol SASL_SSL"):
        _connection("--security-protocol", "SASL_SSL", "--sasl-username", "u", "--sasl-password", "p")


def test_even_the_most_verbose_log_keeps_kafka_pythons_raw_frames_out(tmp_path: Path) -> None:
    # kafka-python logs each request's bytes at DEBUG, a SASL PLAIN password among them
    assert main(["-vv", *SYNTH, "--to", "file", str(tmp_path / "out.jsonl")]) == 0
    assert logging.getLogger("kafka").level >= logging.INFO  # set, whatever the root logger allows
