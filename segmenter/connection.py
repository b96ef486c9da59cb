"""How the consumer and the producer reach Kafka: bootstrap servers, TLS and SASL, as one validated value.

Both edges (``consumer.settings`` and ``producer.settings``) take these fields
from :class:`ConnectionSettings`, so the setting names (flag ``--security-protocol``,
environment variable ``SEGMENTER_SECURITY_PROTOCOL`` ...) and their checks are
the same for both commands, and :meth:`ConnectionSettings.kafka_options` is the
one place that turns them into kafka-python's keyword arguments; every Kafka
client either edge builds gets them. Nothing here opens a connection: building
the options reads no file, and :func:`unreachable` and :func:`login_failure` get their sockets from the caller.

Examples
--------
>>> ConnectionSettings().kafka_options()
{'bootstrap_servers': ['127.0.0.1:9092'], 'security_protocol': 'PLAINTEXT'}
>>> s = ConnectionSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
...                        sasl_username="shop", sasl_password="s3cret")
>>> s.sasl_password
SecretStr('**********')
>>> s.kafka_options()["sasl_plain_password"]
's3cret'
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

if TYPE_CHECKING:
    import socket

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_SASL = ("SASL_PLAINTEXT", "SASL_SSL")
_TLS = ("SSL", "SASL_SSL")


def split_server(server: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port``, ``[IPv6]:port`` or a bare host (kafka-python's port 9092 then).

    Raises
    ------
    ValueError
        Not one of those forms, or a port outside 1-65535 (the message names the entry and what to write).
    """
    if not server:
        raise ValueError("an empty entry; write host:port[,host:port...]")
    host, port = server, ""
    if server.startswith("["):
        host, bracket, rest = server[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{server!r}: an IPv6 address is written [address]:port")
        port = rest[1:]
    elif ":" in server:
        host, _, port = server.rpartition(":")
    if not host or any(c.isspace() or c in "/@[]" for c in host):
        raise ValueError(f"{server!r}: not a host name or address; write host:port[,host:port...]")
    if port and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"{server!r}: port {port!r} is not a number from 1 to 65535")
    return host, int(port) if port else _DEFAULT_PORT


_DEFAULT_PORT = 9092
"""kafka-python's port for a bootstrap server given without one."""


class ConnectionSettings(BaseModel):
    """Bootstrap servers, TLS and SASL; a base of the consumer's and the producer's settings.

    The password is a :class:`~pydantic.SecretStr`: its ``repr``, ``str`` and
    JSON dump are ``**********``; only :meth:`kafka_options` reads it.
    """

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", min_length=1, description="Kafka bootstrap servers, comma separated."
    )
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: SaslMechanism | None = Field(
        None,
        validate_default=True,
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (required with a SASL_* protocol).",
    )
    sasl_username: str | None = Field(
        None, min_length=1, validate_default=True, description="SASL user (required with a SASL_* protocol)."
    )
    sasl_password: SecretStr | None = Field(
        None,
        validate_default=True,
        description="SASL password (required with a SASL_* protocol); never logged or shown.",
    )
    ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA certificates that sign the brokers' (default: the system's)."
    )
    ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS); may also hold its key.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_check_hostname: bool = Field(True, description="Check that a broker's certificate names the host connected to.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            split_server(server.strip())
        return value

    @field_validator("sasl_mechanism", "sasl_username", "sasl_password")
    @classmethod
    def _sasl_needs_protocol(cls, value: object, info: ValidationInfo) -> object:
        protocol = info.data.get("security_protocol")
        if protocol is None:  # the protocol itself was invalid; that is the error to report
            return value
        if protocol in _SASL and value is None:
            raise ValueError(f"required with security_protocol {protocol}")
        if protocol not in _SASL and value is not None:
            raise ValueError(f"is set but security_protocol is {protocol}: use SASL_SSL or SASL_PLAINTEXT, or unset it")
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _tls_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        protocol = info.data.get("security_protocol")
        if protocol is not None and protocol not in _TLS:
            raise ValueError(f"is set but security_protocol is {protocol}: use SSL or SASL_SSL, or unset it")
        if not value.is_file():
            raise ValueError(f"no such file: {value}")
        if info.field_name == "ssl_keyfile" and info.data.get("ssl_certfile") is None:
            raise ValueError("needs ssl_certfile (the certificate of this key)")
        return value

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list of ``host:port``."""
        return [s.strip() for s in self.bootstrap_servers.split(",")]  # no empty entry: _host_ports refuses them

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL."""
        return self.security_protocol in _SASL

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.security_protocol in _TLS

    def kafka_options(self) -> dict[str, Any]:
        """kafka-python's keyword arguments for these settings (the same for every client type).

        Only the options that are set appear, so kafka-python's own defaults stay in force otherwise.
        """
        options: dict[str, Any] = {"bootstrap_servers": self.servers, "security_protocol": self.security_protocol}
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked by the validator
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        if self.uses_tls:
            options["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                value: Path | None = getattr(self, name)
                if value is not None:
                    options[name] = str(value)
        return options

    def tls_context(self) -> ssl.SSLContext:
        """An :class:`ssl.SSLContext` verifying brokers the way kafka-python is told to (CA, client cert, hostname)."""
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        context.check_hostname = self.ssl_check_hostname
        return context


Connect = Callable[[tuple[str, int], float], "socket.socket"]


def login_failure(settings: ConnectionSettings, connect: Connect, timeout_s: float = 5.0) -> str | None:
    """Why a client that could not bootstrap failed, when it is not the network: TLS or the SASL login.

    kafka-python 3.0.12 drops the broker's SaslAuthenticate error response (it
    arrives with the connection's close) and retries the bootstrap until its
    timeout, so a wrong password looks like an unreachable broker. Called after
    such a failure: when the first bootstrap server accepts a TCP connection,
    the TLS handshake (SSL, SASL_SSL) is tried and its failure is the reason;
    when that succeeds too and SASL is in use, the login is the reason.

    Parameters
    ----------
    settings
        The connection settings the client used.
    connect
        Opens a TCP connection (``socket.create_connection``), so this module needs no network of its own.
    timeout_s
        Longest time for the TCP connection and the TLS handshake.

    Returns
    -------
    str or None
        A one-line reason that says what to check, or None when the broker is not reachable (or nothing
        here explains the failure).
    """
    host, port = split_server(settings.servers[0])  # valid: the settings checked it
    try:
        raw = connect((host, port), timeout_s)
    except OSError:
        return None
    with raw:
        if settings.uses_tls:
            try:
                settings.tls_context().wrap_socket(raw, server_hostname=host).close()
            except ssl.SSLCertVerificationError as exc:
                return (
                    f"TLS with {settings.servers[0]} failed: certificate verify failed ({exc.verify_message}); "
                    "check ssl_cafile (the CA that signed the broker's certificate) and ssl_check_hostname"
                )
            except (ssl.SSLError, OSError) as exc:
                return (
                    f"TLS with {settings.servers[0]} failed ({type(exc).__name__}): is the listener "
                    f"{settings.security_protocol}? check security_protocol and the port"
                )
    if settings.uses_sasl:
        return (
            f"the broker at {settings.servers[0]} accepted the connection but the SASL login as "
            f"{settings.sasl_username!r} ({settings.sasl_mechanism}) failed: check sasl_username, "
            f"sasl_password and sasl_mechanism"
        )
    return None


def unreachable(settings: ConnectionSettings, connect: Connect, timeout_s: float = 5.0) -> str | None:
    """Why a client could not bootstrap when no bootstrap server accepts a TCP connection; else ``None``.

    Called after a bootstrap failure, before :func:`login_failure` (kafka-python only says "Unable to
    bootstrap"), and by the consumer before its first client of a session, so that a dead address fails in
    milliseconds instead of in kafka-python's bootstrap timeout. The reason names every server with the
    operating system's answer (``Connection refused``, an unknown host, a timeout) and what to check.

    Parameters
    ----------
    settings
        The connection settings the client used.
    connect
        Opens a TCP connection (``socket.create_connection``).
    timeout_s
        Longest time for each server's TCP connection.
    """
    answers = []
    for server in settings.servers:
        try:
            connect(split_server(server), timeout_s).close()
        except OSError as exc:
            answers.append(f"{server}: {exc.strerror or exc}")
            continue
        return None
    return (
        f"no bootstrap server accepts a TCP connection ({'; '.join(answers)}): is Kafka running there? "
        "check bootstrap_servers (--bootstrap-servers, SEGMENTER_BOOTSTRAP_SERVERS)"
    )


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, once (kafka-python's errors already start their text with their type)."""
    text, name = str(exc), type(exc).__name__
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
