"""Erasure through the service (real core, in-memory transport): the indexes forget, the topics keep no trace."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from consumer.service import Service
from consumer.state import inflate_part
from segmenter.erasures import id_hash
from segmenter.pipeline import Segmenter
from tests.unit.consumer.conftest import DrainTransport, event, make_harness, real_core_service

VICTIM = "customer-to-erase"


def _watch_index(t: DrainTransport, svc: Service[Any]) -> list[set[str]]:
    """The customers the service's core holds (with their partition) as seen at every poll."""
    seen: list[set[str]] = []
    poll = t.poll

    def watched(timeout_s: float, max_records: int) -> list[Any]:
        core = svc._core
        seen.append(set() if core is None else set(core.store.customer_ids()))
        return poll(timeout_s, max_records)

    t.poll = watched  # type: ignore[method-assign]
    return seen


def _traces() -> dict[str, bytes]:
    crc = zlib.crc32(VICTIM.encode())
    return {"id": VICTIM.encode(), "crc32": struct.pack("<I", crc)}


def test_erasures_leave_no_index_entry_and_no_trace_in_state_and_model_topics() -> None:
    h = make_harness(2, "--topics.membership", "members")
    t = h.transport
    for i in range(12):
        customer = VICTIM if i % 3 == 0 else f"keep-{i % 3}"
        t.produce_input(customer.encode(), event(i, customer), partition=1 if customer == "keep-1" else 0)
    cores: list[Segmenter] = []
    real_core_service(h, cores).run()
    assert any(r.key == VICTIM.encode() and r.value for r in t.records("g.state"))
    t.produce_input(VICTIM.encode(), event(20, VICTIM, "erasure_request"), partition=0)
    t.produce_input(VICTIM.encode(), event(0, VICTIM), partition=0)  # re-delivered after the erasure
    t.produce_input(VICTIM.encode(), event(21, VICTIM, minutes=15), partition=0)  # late, within the lateness
    for i in range(1000):  # tombstones and erasure requests of customers never seen
        if i % 2:
            t.produce_input(f"unknown-{i}".encode(), None, partition=i % 2)
        else:
            t.produce_input(f"unknown-{i}".encode(), event(100 + i, f"unknown-{i}", "erasure_request"), partition=0)
    svc = real_core_service(h, cores)
    seen = _watch_index(t, svc)
    svc.run()
    core = cores[-1]
    assert seen and set(seen[-1]) == {"keep-1", "keep-2"}, "no entry for the erased or the unknown ids"
    assert max(map(len, seen)) == 2, "the index never grew"
    assert core.store.row_of(VICTIM) is None and core.stats().after_erasure == 2
    assert t.records("dlq") == [], "dropped events are not dead-lettered (that would copy their data back)"
    state = [r for r in t.records("g.state") if r.key == VICTIM.encode()]
    assert state[-1].value is None, "the customer's last state record is a tombstone"
    newest_parts = {r.key: r.value or b"" for r in t.records("g.model")}  # the model is the newest record per part
    newest_model = b"".join(inflate_part(value) for value in newest_parts.values())
    for name, pattern in _traces().items():
        assert pattern not in newest_model, f"the model record holds the customer's {name}"
    assert struct.pack("<Q", id_hash(VICTIM)) in newest_model, "the marker is persisted (as a hash)"


def test_a_restarted_service_still_drops_the_erased_customers_old_events() -> None:
    h = make_harness(1)
    t = h.transport
    t.produce_input(VICTIM.encode(), event(0, VICTIM))
    t.produce_input(VICTIM.encode(), None)  # a tombstone
    cores: list[Segmenter] = []
    real_core_service(h, cores).run()
    t.produce_input(VICTIM.encode(), event(0, VICTIM))  # re-delivered to a new instance
    svc = real_core_service(h, cores)
    seen = _watch_index(t, svc)
    svc.run()
    assert cores[-1].store.row_of(VICTIM) is None and cores[-1].stats().after_erasure == 1
    assert seen and not any(VICTIM in s for s in seen)
