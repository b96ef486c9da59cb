"""The producer's Kafka connection settings: flags over ``SEGMENTER_*`` environment variables.

The fields are :class:`segmenter.connection.ConnectionSettings`, the same as
the consumer's (``--security-protocol`` / ``SEGMENTER_SECURITY_PROTOCOL`` ...).
:func:`add_connection_flags` adds one flag per field to an argparse parser;
:func:`load_connection` merges the given flags over the environment and
validates the result. A ``SEGMENTER_*`` variable that neither command reads is
refused, naming the nearest valid one.

Examples
--------
>>> load_connection({"bootstrap_servers": "k1:9092,k2:9092"}, environ={}).servers
['k1:9092', 'k2:9092']
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from producer.errors import SettingsError
from segmenter.connection import ConnectionSettings
from segmenter.envcheck import describe_errors, known_names, unknown_variables

PREFIX = "SEGMENTER_"

# The consumer's own variables (its connection settings are this module's). The producer cannot import the
# consumer, so they are listed here; tests/unit/producer/test_settings.py checks that every variable the
# consumer reads is in this list or in ConnectionSettings. SEGMENTER_MAX_FUTURE is in docs/contracts.md.
CONSUMER_VARIABLES = frozenset(
    {
        "SEGMENTER_AUTO_OFFSET_RESET",
        "SEGMENTER_BATCH_SIZE",
        "SEGMENTER_CATCH_UP_INTERVAL_MS",
        "SEGMENTER_COMMIT_INTERVAL_MS",
        "SEGMENTER_CONFIG_FILE",
        "SEGMENTER_GROUP_ID",
        "SEGMENTER_GUARANTEE",
        "SEGMENTER_INSTANCE_ID",
        "SEGMENTER_LOG_FORMAT",
        "SEGMENTER_LOG_LEVEL",
        "SEGMENTER_MAX_BATCH_RETRIES",
        "SEGMENTER_MAX_FUTURE",
        "SEGMENTER_METRICS_HOST",
        "SEGMENTER_METRICS_PORT",
        "SEGMENTER_METRICS_THREADS",
        "SEGMENTER_METRICS_TIMEOUT_S",
        "SEGMENTER_METRICS_TOKEN",
        "SEGMENTER_MODE",
        "SEGMENTER_RETRY_BACKOFF_MAX_S",
        "SEGMENTER_RULES_CHECK_INTERVAL_S",
        "SEGMENTER_RULES_FILE",
        "SEGMENTER_SESSION_TIMEOUT_MS",
        "SEGMENTER_STATIC_MEMBERSHIP",
        "SEGMENTER_TOPICS",
        "SEGMENTER_TOPICS__CAMPAIGN_TRIGGER",
        "SEGMENTER_TOPICS__CREATE",
        "SEGMENTER_TOPICS__DLQ",
        "SEGMENTER_TOPICS__INPUT",
        "SEGMENTER_TOPICS__MEMBERSHIP",
        "SEGMENTER_TOPICS__MODEL",
        "SEGMENTER_TOPICS__OUTPUT",
        "SEGMENTER_TOPICS__PARTITIONS",
        "SEGMENTER_TOPICS__REPLICATION_FACTOR",
        "SEGMENTER_TOPICS__SEGMENT_CHANGE",
        "SEGMENTER_TOPICS__SEGMENT_LIFECYCLE",
        "SEGMENTER_TOPICS__STATE",
        "SEGMENTER_TOPICS__VECTORS",
        "SEGMENTER_TRAINER_COMMIT_INTERVAL_MS",
        "SEGMENTER_TRANSACTION_TIMEOUT_MS",
        "SEGMENTER_VECTOR_EVERY",
    }
)


class ProducerConnection(BaseSettings, ConnectionSettings):
    """:class:`~segmenter.connection.ConnectionSettings` read from ``SEGMENTER_*``; keyword arguments win."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")


KNOWN_VARIABLES = frozenset(known_names([ProducerConnection], PREFIX) | CONSUMER_VARIABLES)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_connection_flags(group: argparse._ArgumentGroup) -> None:
    """One flag per connection setting (``--security-protocol`` ...); an absent flag leaves the environment's."""
    for name, field in ConnectionSettings.model_fields.items():
        env = PREFIX + name.upper()
        metavar = "true|false" if field.annotation is bool else "PEM" if name.endswith("file") else name.upper()
        group.add_argument(
            _flag(name),
            dest=name,
            default=None,
            metavar=metavar,
            help=f"{field.description} (env {env}; default {field.default})",
        )


def load_connection(given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ProducerConnection:
    """The connection settings: ``given`` (flag values, ``None`` = not given) over the environment.

    Raises
    ------
    SettingsError
        An unknown ``SEGMENTER_*`` variable, or an invalid setting (naming its flag and variable; a secret's
        value is never shown).
    """
    unknown = unknown_variables(os.environ if environ is None else environ, KNOWN_VARIABLES, PREFIX)
    if unknown:
        raise SettingsError("; ".join(unknown))
    values = {k: v for k, v in given.items() if k in ConnectionSettings.model_fields and v is not None}
    try:
        return ProducerConnection(**values)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc, ProducerConnection, PREFIX)) from None
