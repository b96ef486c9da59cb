"""Settings of ``segmenter-consumer``, from flags or ``SEGMENTER_*`` environment variables.

Every field can be given as a flag (``--batch-size 200``, nested fields with a
dot: ``--topics.input events``) or as an environment variable with the
``SEGMENTER_`` prefix, nested fields joined by ``__``
(``SEGMENTER_BATCH_SIZE=200``, ``SEGMENTER_TOPICS__INPUT=events``). Flags win
over the environment. ``segmenter-consumer --help`` lists every setting.

Settings are frozen. An invalid value raises :class:`~consumer.errors.SettingsError`
naming the field, its flag and its environment variable; so does a ``SEGMENTER_*``
variable that no setting reads (a typo), with the nearest valid name. The
connection settings (bootstrap servers, TLS, SASL) are
:class:`segmenter.connection.ConnectionSettings`, shared with the producer.
Secrets (``sasl_password``, ``metrics_token``) are never echoed in an error.

Examples
--------
>>> s = load_settings(["--group-id", "shop", "--instance-id", "a"])
>>> s.transactional_id, s.state_topic, s.output_topic("campaign_trigger")
('shop.a', 'shop.state', 'segment-events')
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, CliApp, SettingsConfigDict

from consumer.errors import SettingsError
from segmenter.connection import ConnectionSettings
from segmenter.envcheck import describe_errors, known_names, unknown_variables
from segmenter.triggers.controls import parse_duration

_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

Guarantee = Literal["exactly-once", "at-least-once"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
Mode = Literal["single", "shared"]


def _check_topic(value: str | None) -> str | None:
    if value is not None and not _TOPIC_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")
    return value


class TopicSettings(BaseModel):
    """Topic names, the routing of output kinds, and how missing topics are created."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field("customer-events", description="Input topic of customer events (keyed by customer id).")
    output: str = Field("segment-events", description="Output topic for every output kind not routed elsewhere.")
    dlq: str = Field("customer-events.dlq", description="Dead-letter topic: original bytes plus error headers.")
    state: str | None = Field(None, description="State changelog topic (compacted); default '<group-id>.state'.")
    model: str | None = Field(None, description="Model snapshot topic (compacted); default '<group-id>.model'.")
    vectors: str | None = Field(
        None,
        description="Shared mode: sampled feature vectors for the trainer (one "
        "partition); default '<group-id>.vectors'.",
    )
    membership: str = Field(
        "segment-membership",
        description="Membership table (compacted, keyed by customer id): each customer's current segment per lens.",
    )
    segment_change: str | None = Field(None, description="Route segment_change messages to this topic.")
    campaign_trigger: str | None = Field(None, description="Route campaign_trigger messages to this topic.")
    segment_lifecycle: str | None = Field(None, description="Route segment_lifecycle messages to this topic.")
    create: bool = Field(True, description="Create missing topics at start (state and model compacted).")
    partitions: int = Field(1, ge=1, le=10_000, description="Partitions of a created input topic (state follows).")
    replication_factor: int = Field(1, ge=1, le=32, description="Replication factor of created topics.")

    _names = field_validator(
        "input",
        "output",
        "dlq",
        "state",
        "model",
        "vectors",
        "membership",
        "segment_change",
        "campaign_trigger",
        "segment_lifecycle",
    )(_check_topic)


class Settings(BaseSettings, ConnectionSettings):
    """segmenter-consumer: the Kafka service around the streaming segmenter.

    Every flag can also be set as an environment variable: SEGMENTER_ plus the
    field name in upper case, nested fields joined by "__" (for example
    SEGMENTER_TOPICS__INPUT). Flags take precedence.
    """

    model_config = SettingsConfigDict(
        env_prefix="SEGMENTER_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
        cli_prog_name="segmenter-consumer",
        cli_kebab_case=True,
        cli_implicit_flags=False,
    )

    group_id: str = Field(
        "segmenter", min_length=1, max_length=200, description="Consumer group; also names the state and model topics."
    )
    instance_id: str = Field(
        "0",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Stable id of this instance: transactional.id is '<group>.<instance>' so a "
        "restarted instance fences its zombie; also the static group member id.",
    )
    guarantee: Guarantee = Field(
        "exactly-once",
        description="exactly-once (one transaction per batch) or at-least-once (commit offsets after the acks).",
    )
    # 100,000 and 5 s: behind a backlog the changelog and membership records scale with commits times the
    # customers each commit touched, so fewer, bigger catch-up batches write fewer (bench/peer_quix.py, 100k
    # events of 10k customers, 1 partition, loaded machine: 57-65k -> 35-48k state, 38-40k -> 21-28k membership;
    # at the 37k events/s of an unloaded run, 100k events fit one batch, not two). A crash replays at most
    # one batch (<= 100,000 records, <= 5 s of work), far inside transaction-timeout-ms (60 s). A live stream
    # is not CATCH_UP_LAG (10,000) records behind: its batches close at commit-interval-ms, so its latency
    # does not move while the process keeps up; one that falls behind waits up to the catch-up interval
    # (docs/internals.md, "Cadence and start-up").
    batch_size: int = Field(
        100_000,
        ge=1,
        le=100_000,
        description="Most input records in one batch (transaction); "
        "a batch also closes commit-interval-ms after "
        "its first records began to wait.",
    )
    commit_interval_ms: int = Field(
        100,
        ge=1,
        le=600_000,
        description="Longest time a batch stays open before "
        "it is committed, counted from when its "
        "first records began to wait in the "
        "consumer (during the commit before).",
    )
    catch_up_interval_ms: int = Field(
        5000,
        ge=1,
        le=600_000,
        description="Longest time a batch stays open while the input lag at its "
        "start is at least batch-size records, or 10,000 if fewer "
        "(working off a backlog: fewer, bigger transactions); "
        "commit-interval-ms applies "
        "otherwise. At most commit-interval-ms: always that.",
    )
    max_batch_retries: int = Field(
        3,
        ge=1,
        le=100,
        description="Failures of a batch on one record before that record is isolated and dead-lettered.",
    )
    transaction_timeout_ms: int = Field(
        60_000,
        ge=1000,
        le=900_000,
        description="Broker aborts a transaction left open this long (a crash). "
        "Exactly-once: longer than commit-interval-ms and catch-up-interval-ms.",
    )
    session_timeout_ms: int = Field(10_000, ge=6000, le=300_000, description="Consumer group session timeout.")
    static_membership: bool = Field(
        True, description="Join as static member '<instance-id>' (a restart does not rebalance the group)."
    )
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="Where to start without a committed offset."
    )
    mode: Mode = Field(
        "single",
        description="single: this process learns the model and assigns (one process per "
        "group). shared: many processes in one group assign with the model one "
        "elected trainer learns from their sampled vectors (scale-out).",
    )
    vector_every: int = Field(
        1, ge=1, le=1_000_000, description="Shared mode: publish every Nth scored feature vector to the trainer."
    )
    trainer_commit_interval_ms: int = Field(
        5000,
        ge=10,
        le=600_000,
        description="Shared mode: how often the trainer commits its snapshot "
        "and its vectors offsets (at once when the model changed).",
    )
    topics: TopicSettings = Field(default_factory=TopicSettings, description="Topic names and creation.")
    config_file: Path | None = Field(None, description="Segmenter config (TOML/YAML); built-in defaults if unset.")
    rules_file: Path | None = Field(None, description="Campaign rules file; reloaded when its mtime changes.")
    rules_check_interval_s: float = Field(
        1.0, gt=0, le=3600, description="How often the rules file's mtime is checked."
    )
    # --- HTTP server (/metrics, /healthz): bind address, port, access token, bounds
    metrics_port: int = Field(
        9108, ge=-1, le=65535, description="Port of /metrics and /healthz (0: any free port, -1: disabled)."
    )
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, description="Address the HTTP server binds to (0.0.0.0: every interface)."
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="Bearer token every HTTP endpoint but /healthz "
        "requires (Authorization: Bearer TOKEN); none if "
        "unset.",
    )
    metrics_threads: int = Field(
        4, ge=1, le=64, description="Most HTTP requests served at once; more wait for a free thread."
    )
    metrics_timeout_s: float = Field(
        5.0, gt=0, le=300, description="An HTTP connection idle this long (no complete request) is closed."
    )
    log_level: LogLevel = Field("INFO", description="Log level.")
    log_format: LogFormat = Field("text", description="Log format: text or json (one object per line).")
    retry_backoff_max_s: float = Field(
        30.0, gt=0, le=600, description="Longest wait between reconnect attempts while the broker is down."
    )
    max_future: float = Field(
        3600.0,
        gt=0,
        description="Event time: how far an event's ts may run ahead of its "
        "Kafka record timestamp before it is dead-lettered as "
        "'future' (a wrong clock); a duration such as 1h, 30m, "
        "1d, or seconds.",
    )

    @field_validator("transaction_timeout_ms")
    @classmethod
    def _outlasts_a_batch(cls, value: int, info: ValidationInfo) -> int:
        """Exactly-once: a batch's transaction stays open up to its interval, so the broker must wait longer."""
        longest = max(info.data.get("commit_interval_ms", 0), info.data.get("catch_up_interval_ms", 0))
        if info.data.get("guarantee") == "exactly-once" and value <= longest:
            raise ValueError(
                f"{value} ms is not longer than the longest batch interval ({longest} ms, commit_interval_ms / "
                "catch_up_interval_ms): the broker would abort batches still open; raise transaction_timeout_ms "
                "(at most 900000) or lower the interval"
            )
        return value

    @field_validator("max_future", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Accept ``"1h"``, ``"30m"``, ``"1d12h"`` or a number of seconds (also as text, from the environment)."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return parse_duration(value)
        return value

    @property
    def state_topic(self) -> str:
        """The state changelog topic."""
        return self.topics.state or f"{self.group_id}.state"

    @property
    def model_topic(self) -> str:
        """The model snapshot topic."""
        return self.topics.model or f"{self.group_id}.model"

    @property
    def vectors_topic(self) -> str:
        """Shared mode: the topic of sampled feature vectors (one partition)."""
        return self.topics.vectors or f"{self.group_id}.vectors"

    @property
    def trainer_group_id(self) -> str:
        """Shared mode: the consumer group whose single member owning the vectors partition is the trainer."""
        return f"{self.group_id}.trainer"

    @property
    def shared(self) -> bool:
        """True in shared (scale-out) mode."""
        return self.mode == "shared"

    @property
    def transactional_id(self) -> str:
        """The producer's stable transactional id, ``<group>.<instance>``."""
        return f"{self.group_id}.{self.instance_id}"

    @property
    def exactly_once(self) -> bool:
        """True for the exactly-once guarantee."""
        return self.guarantee == "exactly-once"

    def output_topic(self, kind: str) -> str:
        """The topic an output message of ``kind`` goes to."""
        routed: str | None = getattr(self.topics, kind, None) if kind in _KINDS else None
        return routed or self.topics.output

    def output_topics(self) -> list[str]:
        """Every distinct output topic, sorted."""
        return sorted({self.output_topic(kind) for kind in _KINDS})


_KINDS = ("segment_change", "campaign_trigger", "segment_lifecycle")


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse flags and the ``SEGMENTER_*`` environment into :class:`Settings`.

    Parameters
    ----------
    argv
        Command-line arguments without the program name (default: none).
    environ
        The environment to check for unknown ``SEGMENTER_*`` variables (default: ``os.environ``, which is also
        where pydantic-settings reads the values).

    Raises
    ------
    SettingsError
        Naming each invalid field, its flag and its environment variable, or each unknown ``SEGMENTER_*``
        variable and the nearest valid one.
    SystemExit
        For ``--help`` and for unknown flags (argparse).
    """
    unknown = unknown_variables(os.environ if environ is None else environ, KNOWN_VARIABLES, "SEGMENTER_")
    if unknown:
        raise SettingsError("; ".join(unknown))
    try:
        return CliApp.run(Settings, cli_args=list(argv or []))
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc, Settings, "SEGMENTER_")) from None


# Every SEGMENTER_* variable the project reads: the settings of this command (the producer's are a subset)
# and the local broker launcher's.
KNOWN_VARIABLES = frozenset(known_names([Settings], "SEGMENTER_"))
