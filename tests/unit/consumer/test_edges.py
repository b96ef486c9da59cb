"""Settings, dead letters, state encoding, topic setup, error translation, metrics endpoint, main()."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

import kafka.errors as ke
import pytest
from pydantic import ValidationError

from consumer.__main__ import main
from consumer.dlq import MAX_HEADER_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, dead_letter
from consumer.errors import (
    BrokerUnavailableError,
    FencedError,
    KafkaIOError,
    SettingsError,
    TopicSetupError,
    TransactionError,
)
from consumer.kafka_io import translate_errors
from consumer.metrics import Health, Metrics, MetricsServer, default_routes
from consumer.settings import load_settings
from consumer.sink import InRecord
from consumer.state import (
    FORMAT_HEADER,
    MODEL_PART_FORMAT,
    BadRecords,
    ModelTracker,
    changelog_records,
    inflate_part,
    newest_valid,
    restore_customers,
)
from consumer.topics import TopicSpec, ensure_topics
from segmenter.errors import StateError
from tests.unit.consumer.conftest import FakeCore


def test_settings_defaults_and_derived_names() -> None:
    s = load_settings([])
    assert s.guarantee == "exactly-once" and s.topics.input == "customer-events"
    assert s.state_topic == "segmenter.state" and s.model_topic == "segmenter.model"
    assert s.transactional_id == "segmenter.0"
    assert s.output_topics() == ["segment-events"]


def test_settings_from_env_nested_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_TOPICS__INPUT", "env-in")
    monkeypatch.setenv("SEGMENTER_BATCH_SIZE", "42")
    monkeypatch.setenv("SEGMENTER_GUARANTEE", "at-least-once")
    s = load_settings(["--batch-size", "7", "--topics.campaign-trigger", "triggers"])
    assert (s.topics.input, s.batch_size, s.exactly_once) == ("env-in", 7, False)
    assert s.output_topic("campaign_trigger") == "triggers" and s.output_topic("segment_change") == "segment-events"


def test_bad_settings_name_the_field_flag_and_env() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(["--batch-size", "0"])
    assert "batch_size" in str(info.value) and "--batch-size" in str(info.value)
    assert "SEGMENTER_BATCH_SIZE" in str(info.value)
    with pytest.raises(SettingsError, match=r"topics\.dlq.*SEGMENTER_TOPICS__DLQ"):
        load_settings(["--topics.dlq", "no spaces"])


def test_settings_are_frozen() -> None:
    s = load_settings([])
    with pytest.raises(ValidationError):
        s.batch_size = 3  # type: ignore[misc]


def test_main_exits_2_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--guarantee", "maybe"]) == 2
    assert "guarantee" in capsys.readouterr().err


def test_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--bootstrap-servers",
        "--group-id",
        "--instance-id",
        "--guarantee",
        "--batch-size",
        "--commit-interval-ms",
        "--topics.input",
        "--topics.dlq",
        "--topics.state",
        "--topics.model",
        "--topics.segment-lifecycle",
        "--config-file",
        "--rules-file",
        "--metrics-port",
        "--log-level",
        "--log-format",
        "SEGMENTER_",
    ):
        assert flag in text, flag


def test_dead_letter_keeps_bytes_and_appends_headers() -> None:
    rec = InRecord("in", 3, 41, b"k", b"\x00raw", (("trace", b"t"),))
    dl = dead_letter(rec, "dlq", "schema", "amount: required")
    assert (dl.topic, dl.key, dl.value) == ("dlq", b"k", b"\x00raw")
    assert dl.headers == (
        ("trace", b"t"),
        ("error", b"schema"),
        ("reason", b"amount: required"),
        ("source_topic", b"in"),
        ("source_partition", b"3"),
        ("source_offset", b"41"),
    )


def test_a_record_too_large_for_one_message_is_dead_lettered_cut_saying_what_was_cut() -> None:
    own = tuple((f"h{i}", b"v" * 1000) for i in range(100))  # 100 KB of the record's own headers
    rec = InRecord("in", 0, 9, b"k" * (MAX_KEY_BYTES + 1), b"{" * (3 * 1024 * 1024), own)
    dl = dead_letter(rec, "dlq", "too_large", "over the limit")
    assert dl.key == rec.key[:MAX_KEY_BYTES] and dl.value == b"{" * MAX_VALUE_BYTES  # type: ignore[index]
    kept = [h for h in dl.headers if h[0].startswith("h")]
    assert kept == list(own[: len(kept)]) and 0 < sum(len(n) + len(v) for n, v in kept) <= MAX_HEADER_BYTES
    assert (
        dict(dl.headers)["truncated"]
        == (
            f"key {MAX_KEY_BYTES + 1} -> {MAX_KEY_BYTES}; value {3 * 1024 * 1024} -> {MAX_VALUE_BYTES}; "
            f"headers 100 -> {len(kept)}"
        ).encode()
    )
    assert dict(dl.headers)["source_offset"] == b"9"
    assert sum(len(n) + len(v) for n, v in dl.headers) + len(dl.key or b"") + len(dl.value or b"") < 1024 * 1024


def test_changelog_records_follow_the_cores_input_partition() -> None:
    records = changelog_records([("a", b"1", 2), ("b", None, 0), ("z", b"9", None)], "st")
    assert [(r.key, r.value, r.partition, r.headers) for r in records] == [
        (b"a", b"1", 2, (("format", b"segmenter-customer-2"),)),
        (b"b", None, 0, ()),
        (b"z", b"9", None, (("format", b"segmenter-customer-2"),)),
    ]


def test_restore_keeps_the_last_record_per_customer_and_skips_corrupt_ones() -> None:
    core = FakeCore()
    recs = [
        InRecord("st", 1, 0, b"a", b"1"),
        InRecord("st", 1, 1, b"a", b"5"),
        InRecord("st", 1, 2, b"b", b"2"),
        InRecord("st", 1, 3, b"b", None),
        InRecord("st", 1, 4, b"c", b"not-an-int"),
    ]
    assert restore_customers(core, recs) == 1
    assert core.counts == {"a": 5} and core.partition == {"a": 1}


def test_model_tracker_writes_only_the_parts_that_changed_keyed_by_part() -> None:
    tracker = ModelTracker("i1")
    first = tracker.records({"core": b"c1", "lens:a": b"a1", "lens:b": b"b1"}, "mt")
    assert [(r.key, inflate_part(r.value or b""), r.partition) for r in first] == [
        (b"i1/core", b"c1", 0),
        (b"i1/lens:a", b"a1", 0),
        (b"i1/lens:b", b"b1", 0),
    ]
    assert all(dict(r.headers)[FORMAT_HEADER] == MODEL_PART_FORMAT for r in first)
    assert [r.key for r in tracker.records({"core": b"c2", "lens:a": b"a1", "lens:b": b"b1"}, "mt")] == [b"i1/core"]
    assert tracker.records({"core": b"c2", "lens:a": b"a1", "lens:b": b"b1"}, "mt") == []
    assert tracker.holds({"core": b"c2", "lens:a": b"a1", "lens:b": b"b1"})
    assert not tracker.holds({"core": b"c2", "lens:a": b"a2", "lens:b": b"b1"})
    tracker.reset()
    assert len(tracker.records({"core": b"c2", "lens:a": b"a1", "lens:b": b"b1"}, "mt")) == 3


def test_newest_valid_model_wins() -> None:
    recs = [
        InRecord("mt", 0, 5, b"i2", b"new"),
        InRecord("mt", 0, 3, b"i1", b"old"),
        InRecord("mt", 0, 7, b"x", b"bad"),
    ]
    loaded: list[bytes] = []

    def load(rec: InRecord) -> None:
        if rec.value == b"bad":
            raise StateError("not a model")
        loaded.append(rec.value or b"")

    bad = BadRecords()
    chosen = newest_valid(recs, load, "model", bad)
    assert chosen is not None and chosen.value == b"new" and loaded == [b"new"]
    assert bad.seen == {("mt", 0, 7)}
    assert newest_valid([], load, "model", bad) is None


class FakeAdmin:
    def __init__(self, existing: dict[str, int], allow: bool = True) -> None:
        self.existing = existing
        self.allow = allow
        self.created: list[TopicSpec] = []

    def partition_counts(self, names: Sequence[str]) -> dict[str, int | None]:
        return {n: self.existing.get(n) for n in names}

    def create(self, specs: Sequence[TopicSpec], replication_factor: int) -> None:
        if not self.allow:
            raise TopicSetupError("create topics failed: TopicAuthorizationFailedError")
        self.created.extend(specs)


def test_missing_topics_are_created_with_compaction_and_co_partitioning() -> None:
    admin = FakeAdmin({"customer-events": 6})
    assert ensure_topics(admin, load_settings([])) == 6
    by_name = {s.name: s for s in admin.created}
    assert set(by_name) == {
        "segment-events",
        "customer-events.dlq",
        "segmenter.state",
        "segmenter.model",
        "segment-membership",
    }
    assert by_name["segmenter.state"].partitions == 6
    assert by_name["segment-membership"].partitions == 6
    assert by_name["segment-membership"].config["cleanup.policy"] == "compact"
    assert by_name["segmenter.state"].config["cleanup.policy"] == "compact"
    assert by_name["segmenter.model"].config["cleanup.policy"] == "compact"


def test_topic_setup_fails_clearly() -> None:
    with pytest.raises(TopicSetupError, match="missing topics"):
        ensure_topics(FakeAdmin({}), load_settings(["--topics.create", "false"]))
    with pytest.raises(TopicSetupError, match="Authorization"):
        ensure_topics(FakeAdmin({}, allow=False), load_settings([]))
    with pytest.raises(TopicSetupError, match="must match"):
        ensure_topics(FakeAdmin({"customer-events": 4, "segmenter.state": 2}), load_settings([]))


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (ke.ProducerFencedError(), FencedError),
        (ke.KafkaTimeoutError("Unable to bootstrap"), BrokerUnavailableError),
        (ke.KafkaConnectionError("refused"), BrokerUnavailableError),
        (ke.CommitFailedError("rebalanced"), TransactionError),
        (ke.TopicAuthorizationFailedError(), TopicSetupError),
        (ke.UnknownError(), KafkaIOError),
    ],
)
def test_kafka_errors_are_translated_at_the_edge(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, translate_errors("do it"):
        raise raised
    assert type(info.value) is expected
    assert str(info.value).startswith("do it failed")
    assert info.value.__cause__ is raised


def test_generic_kafka_error_in_a_transaction_is_a_transaction_error() -> None:
    with pytest.raises(TransactionError), translate_errors("commit", transactional=True):
        raise ke.KafkaError("producer in error state")


def test_metrics_and_health_endpoints() -> None:
    metrics, health = Metrics(), Health()
    metrics.rejected.labels("schema").inc()
    server = MetricsServer(default_routes(metrics, health), "127.0.0.1", 0)
    server.start()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read().decode()
        assert 'segmenter_events_rejected_total{reason="schema"} 1.0' in body
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert info.value.code == 503
        health.tick(True)
        ok = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).read())
        assert ok["status"] == "ok"
    finally:
        server.stop()
    assert Metrics().registry is not metrics.registry
