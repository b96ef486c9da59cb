"""Revocation drops the customers of the revoked input partitions from the core, as the core's partition column says."""

from __future__ import annotations

from consumer.sink import TP
from tests.unit.consumer.conftest import event, make_harness


def test_revoking_a_partition_drops_exactly_its_customers() -> None:
    h = make_harness(2)
    t = h.transport
    for i, (customer, partition) in enumerate([("a", 0), ("b", 1), ("c", 0), ("d", 1), ("a", 0)]):
        t.produce_input(customer.encode(), event(i, customer), partition=partition)
    svc = h.run()
    core = h.cores[-1]
    assert core.partition == {"a": 0, "b": 1, "c": 0, "d": 1}, "the core noted each customer's input partition"
    assert core.counts == {}, "closing revoked both partitions"
    core.counts.update(a=2, b=1, c=1, d=1)
    svc.on_revoked({TP("in", 1)})
    assert sorted(core.counts) == ["a", "c"]
    svc.on_revoked({TP("out", 0)})  # not an input partition: nothing dropped
    assert sorted(core.counts) == ["a", "c"]
