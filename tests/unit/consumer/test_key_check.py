"""Records keyed other than by their customer id are processed, counted, and warned about once per partition."""

from __future__ import annotations

import logging

import pytest

from tests.unit.consumer.conftest import event, make_harness


def test_null_and_foreign_keys_are_counted_warned_once_per_partition_and_processed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = make_harness(2)
    t = h.transport
    t.produce_input(b"c1", event(0, "c1"), partition=0)  # keyed right: neither counted nor warned
    t.produce_input(None, event(1, "c2"), partition=0)
    t.produce_input(b"session-9", event(2, "c3"), partition=0)  # the same partition: counted, no second warning
    t.produce_input(b"c4x", event(3, "c4"), partition=1)
    with caplog.at_level(logging.WARNING, logger="consumer.key_check"):
        svc = h.run()
    warnings = [r.getMessage() for r in caplog.records if r.name == "consumer.key_check"]
    assert len(warnings) == 2
    assert warnings[0].startswith("in[0]@1: the record's key is null, not its customer_id 'c2'")
    assert warnings[1].startswith("in[1]@0: the record's key is b'c4x', not its customer_id 'c4'")
    assert svc.metrics.registry.get_sample_value("segmenter_key_mismatches_total") == 3
    assert sorted(o["customer_id"] for o in h.outputs()) == ["c1", "c2", "c3", "c4"]  # nothing refused
    assert t.records("dlq") == []


def test_records_keyed_by_their_customer_id_log_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    h = make_harness()
    for i in range(6):
        h.transport.produce_input(f"c{i % 3}".encode(), event(i, f"c{i % 3}"))
    with caplog.at_level(logging.WARNING):
        svc = h.run()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert svc.metrics.registry.get_sample_value("segmenter_key_mismatches_total") == 0
    assert len(h.outputs()) == 6
