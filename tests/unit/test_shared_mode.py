"""Shared (scale-out) mode without a broker: the core's assign-only mode, the trainer, per-partition watermarks,
and the service's trainer role and model following on the in-memory transport."""

from __future__ import annotations

import json
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from consumer.service import Service
from consumer.settings import load_settings
from consumer.sink import InRecord, MemoryTransport, RebalanceHandler
from consumer.state import CLOCK_KEY, TRAINER_KEY, VIEW_KEY, clock_records, restore_customers
from consumer.trainer import TrainerRole
from segmenter.change_blocks import Output, messages_of
from segmenter.config import SegmenterConfig, default_config
from segmenter.errors import EventError, StateError
from segmenter.events import CustomerEvent, parse_event
from segmenter.outputs import SegmentChange, encode
from segmenter.pipeline import Segmenter
from segmenter.shared import ModelTrainer, decode_vectors
from tests.unit.consumer.conftest import DrainTransport, make_service
from tests.unit.eventgen import make_events, to_events

NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _config(**refine: Any) -> SegmenterConfig:
    data = default_config().model_dump()
    data["refine"].update(refine)
    return SegmenterConfig.model_validate(data)


def _events(n_customers: int = 120, days: float = 20, seed: int = 3) -> list[CustomerEvent]:
    return to_events(make_events(n_customers, days, seed=seed))


def _partition(event: CustomerEvent, partitions: int) -> int:
    return zlib.crc32(event.customer_id.encode()) % partitions


def _train(config: SegmenterConfig, events: list[CustomerEvent]) -> tuple[ModelTrainer, Segmenter]:
    """One shared process feeding one trainer, vectors handed over after every 50 events."""
    trainer = ModelTrainer(config)
    core = Segmenter(config, shared=True)
    for i, ev in enumerate(events):
        core.process(ev)
        if i % 50 == 49:
            blob = core.take_vectors()
            if blob is not None:
                trainer.apply(blob)
    blob = core.take_vectors()
    if blob is not None:
        trainer.apply(blob)
    return trainer, core


# ------------------------------------------------------------------------------------------------ the core


def test_shared_core_never_learns_and_assigns_nothing_without_a_view() -> None:
    core = Segmenter(default_config(), shared=True)
    out = [m for ev in _events() for m in core.process(ev)]
    assert out == []
    assert core.model_versions() == {"value": 0, "engagement": 0}
    assert all(lens.n_observed == 0 and not lens.ready for lens in core.lenses)
    keys, mats, _ = decode_vectors(core.take_vectors() or b"", ["value", "engagement"])
    assert len(keys) == core.stats().events and [m.shape[1] for m in mats] == [4, 5]
    assert core.take_vectors() is None


def test_trainer_learns_exactly_what_a_single_process_learns_from_the_same_vectors() -> None:
    config = _config(every_events=0, every_days=0.0)  # refinement samples differ by design (customers vs vectors)
    events = _events()
    single = Segmenter(config)
    for ev in events:
        single.process(ev)
    trainer, _ = _train(config, events)
    assert trainer.model_versions() == single.model_versions()
    for mine, theirs in zip(trainer.lenses, single.lenses, strict=True):
        assert mine.ready
        # sizes are counted where the customers are (the processes), not by the trainer
        assert [replace(p, size=0) for p in mine.profiles()] == [replace(p, size=0) for p in theirs.profiles()]


def test_same_vector_same_segment_in_every_process_for_one_view() -> None:
    config = default_config()
    events = _events()
    trainer, _ = _train(config, events)
    view = trainer.view()
    # two processes that saw different customers (different partitions), same view
    a, b = Segmenter(config, shared=True), Segmenter(config, shared=True)
    assert a.load_shared_model(view) == [] and b.load_shared_model(view) == []
    assert a.model_versions() == b.model_versions() == trainer.model_versions()
    rng = np.random.default_rng(5)
    for la, lb in zip(a.lenses, b.lenses, strict=True):
        for _ in range(200):
            raw = rng.uniform(0, 50, len(la.feature_names))
            ra, rb = la.assign(raw, None, 0), lb.assign(raw, None, 0)
            assert ra == rb and ra.segment is not None and rb.segment is not None
            assert la.ref(ra.segment) == lb.ref(rb.segment)
    changes = [m for ev in events[:300] for m in a.process(ev) if isinstance(m, SegmentChange)]
    assert changes and {c.model_version for c in changes} == {trainer.model_versions()[changes[0].lens]}


def test_trainer_snapshot_continues_identically() -> None:
    config = _config(every_events=500, sample_size=50)
    core = Segmenter(config, shared=True)
    blobs = []
    for i, ev in enumerate(_events(days=30)):
        core.process(ev)
        if i % 100 == 99:
            blobs.append(core.take_vectors())
    assert len(blobs) > 6
    whole = ModelTrainer(config)
    first = [m for blob in blobs for m in whole.apply(blob or b"")]
    half = ModelTrainer(config)
    again = [m for blob in blobs[:3] for m in half.apply(blob or b"")]
    resumed = ModelTrainer.from_state(config, half.state())
    again += [m for blob in blobs[3:] for m in resumed.apply(blob or b"")]
    assert again == first
    assert resumed.model_versions() == whole.model_versions()
    assert [lens.profiles() for lens in resumed.lenses] == [lens.profiles() for lens in whole.lenses]
    born = [m.segment.id for m in first if m.action == "born"]
    assert born and len(born) == len(set(born))


def test_a_new_view_moves_the_customers_of_dead_segments_at_once() -> None:
    config = default_config()
    trainer, _ = _train(config, _events())
    core = Segmenter(config, shared=True)
    core.load_shared_model(trainer.view())
    for ev in _events()[:400]:
        core.process(ev)
    lens = trainer.lenses[0]
    victim = max(core.stats().segments["value"], key=lambda s: s.size)
    number = int(victim.id.rpartition("-")[2])
    # retire the victim in the trainer's registry, as a merge or retirement would
    lens.registry.segments[number].status = "retired"
    lens.model_version += 1
    moved = core.load_shared_model(trainer.view())
    assert len(moved) == victim.size
    assert all(
        isinstance(m, SegmentChange)
        and m.cause == "model"
        and m.from_segment is not None
        and m.from_segment.id == victim.id
        and m.to_segment is not None
        for m in moved
    )
    assert victim.id not in {s.id for s in core.stats().segments["value"]}


def test_view_of_other_lenses_is_refused() -> None:
    data = default_config().model_dump()
    data["lenses"] = data["lenses"][:1]
    other = ModelTrainer(SegmenterConfig.model_validate(data))
    with pytest.raises(StateError):
        Segmenter(default_config(), shared=True).load_shared_model(other.view())


# ------------------------------------------------------------------------------------------------ watermark


def _ev(i: int, customer: str, hour: float) -> CustomerEvent:
    ts = datetime.fromtimestamp(datetime(2026, 1, 1, tzinfo=UTC).timestamp() + hour * 3600, UTC)
    return parse_event(
        json.dumps({"event_id": f"e{i}", "customer_id": customer, "type": "page_view", "ts": ts.isoformat()}).encode()
    )


def test_a_partition_running_ahead_does_not_make_another_late() -> None:
    core = Segmenter(default_config())  # lateness 24 h
    core.process(_ev(1, "a", 0), source=0)
    core.process(_ev(2, "b", 100), source=1)  # partition 1 is 100 h ahead
    core.process(_ev(3, "a", 5), source=0)  # valid for partition 0's clock
    assert core.stats().late == 0
    assert core.watermark == _ev(0, "x", 5 - 24).epoch
    # one input: lateness is still per customer (b 100 h ahead makes nobody else late)
    single = Segmenter(default_config())
    single.process(_ev(1, "a", 0))
    single.process(_ev(2, "b", 100))
    single.process(_ev(3, "a", 5))
    assert (single.stats().late, single.stats().isolated) == (0, 0)
    single.process(_ev(4, "a", 28))
    with pytest.raises(EventError, match="latest event time"):
        single.process(_ev(5, "a", 3))  # before a's own latest time minus 24 h


def test_partition_clocks_move_with_the_partition() -> None:
    core = Segmenter(default_config())
    core.process(_ev(1, "a", 10), source=0)
    core.process(_ev(2, "b", 50), source=1)
    clocks = core.take_dirty_clocks()
    assert clocks == {0: _ev(0, "x", 10).epoch, 1: _ev(0, "x", 50).epoch}
    assert core.take_dirty_clocks() == {}
    core.drop_sources(lambda s: s == 1)  # partition 0 moved away: only partition 1 holds the watermark
    assert core.watermark == _ev(0, "x", 50 - 24).epoch
    other = Segmenter(default_config())
    other.load_clock(0, clocks[0])
    other.load_clock(1, clocks[1])
    assert other.watermark == _ev(0, "x", 10 - 24).epoch
    other.process(_ev(3, "c", 10 - 25), source=1)  # a new customer is never late
    assert other.stats().late == 0


# ------------------------------------------------------------------------------------------------ the service


def test_service_publishes_vectors_and_a_trainer_publishes_views_that_every_instance_follows() -> None:
    base = default_config()  # a short stream: the trainer must get past warm-up within it
    config = base.model_copy(update={"lenses": [lens.model_copy(update={"warmup": 200}) for lens in base.lenses]})
    args = [
        "--topics.input",
        "in",
        "--topics.output",
        "out",
        "--topics.dlq",
        "dlq",
        "--group-id",
        "g",
        "--metrics-port",
        "-1",
        "--commit-interval-ms",
        "1",
        "--batch-size",
        "40",
        "--mode",
        "shared",
    ]
    settings = load_settings(args)
    topics: dict[str, Any] = {}
    main = DrainTransport("in", partitions=2, topics=topics)
    events = _events(days=25)
    for ev in events:
        main.produce_input(ev.customer_id.encode(), ev.model_dump_json().encode(), _partition(ev, 2))

    def run() -> Service[Any]:
        main.handler = None
        main._assigned = set()

        def make_transport(handler: RebalanceHandler) -> MemoryTransport:
            main.handler = handler
            return main

        svc = make_service(
            settings, make_transport, lambda rules: Segmenter(config, rules, shared=True), clock=lambda: NOW
        )
        main.service = svc
        svc.run()
        return svc

    half = len(events) // 2
    saved = [list(p) for p in topics["in"]]
    topics["in"] = [[r for r in p if r.offset < len(p) * half // len(events)] for p in saved]
    run()
    assert topics["g.vectors"][0], "vectors are written inside the batch transactions"
    assert main.records("out") == [], "no model yet: nothing assigned"
    clocks = [r for r in main.records("g.state") if r.key == CLOCK_KEY]
    assert {r.partition for r in clocks} == {0, 1}

    trainer_transport = MemoryTransport("g.vectors", partitions=1, topics=topics)

    def make_trainer_transport(handler: RebalanceHandler) -> MemoryTransport:
        trainer_transport.handler = handler
        return trainer_transport

    role = TrainerRole(
        settings,
        make_trainer_transport,
        lambda snap: ModelTrainer(config) if snap is None else ModelTrainer.from_state(config, snap),
        lambda: NOW,
    )
    role.start()
    role.step()
    assert role.active and role.snapshots == 1
    model = main.records("g.model")
    assert {r.key for r in model} == {VIEW_KEY, TRAINER_KEY}
    lifecycle = [json.loads(r.value or b"") for r in main.records("out")]
    assert lifecycle and {m["kind"] for m in lifecycle} == {"segment_lifecycle"}

    # the rest of the stream: the service follows the view and assigns with it
    for p, part in enumerate(saved):
        topics["in"][p] = part
    run()
    changes = [json.loads(r.value or b"") for r in main.records("out")]
    changes = [m for m in changes if m["kind"] == "segment_change"]
    versions = {(m["lens"], m["model_version"]) for m in changes}  # one published view per lens
    assert changes and len(versions) == len({m["lens"] for m in changes})

    # a successor trainer continues from the snapshot: same versions, no id born twice
    role.close()
    successor = TrainerRole(
        settings, make_trainer_transport, lambda snap: ModelTrainer.from_state(config, snap or b""), lambda: NOW
    )
    successor.start()
    successor.step()
    born = [json.loads(r.value or b"") for r in main.records("out")]
    born_ids = [m["segment"]["id"] for m in born if m["kind"] == "segment_lifecycle" and m["action"] == "born"]
    assert len(born_ids) == len(set(born_ids))


def test_a_state_partition_restores_its_clock_and_its_customers() -> None:
    source = Segmenter(default_config())
    source.process(_ev(1, "a", 30), source=2)
    dirty = source.take_dirty()
    clock = clock_records(source.take_dirty_clocks(), "g.state")
    assert [(r.partition, r.key) for r in clock] == [(2, CLOCK_KEY)]
    records = [InRecord("g.state", 2, 0, b"a", dirty["a"], ())]
    records += [InRecord(r.topic, r.partition or 0, 1, r.key, r.value, r.headers) for r in clock]
    target = Segmenter(default_config())
    assert restore_customers(target, records) == 1  # the clock record is not a customer
    assert target.watermark == source.watermark
    with pytest.raises(EventError):
        target.process(_ev(2, "a", 30 - 25), source=2)  # late for a's restored latest time
    assert target.drop_partitions([0, 1]) == 0 and target.drop_partitions([2]) == 1, "a belongs to partition 2"


def test_a_new_views_moves_reach_a_sink_in_parts_in_the_list_order(monkeypatch: pytest.MonkeyPatch) -> None:
    import segmenter.emission as emission  # noqa: PLC0415

    monkeypatch.setattr(emission, "MOVE_CAPACITY", 4)
    config = default_config()
    trainer, _ = _train(config, _events())
    cores = [Segmenter(config, shared=True), Segmenter(config, shared=True)]
    for core in cores:
        core.load_shared_model(trainer.view())
        for ev in _events()[:400]:
            core.process(ev)
    victim = max(cores[0].stats().segments["value"], key=lambda s: s.size)
    trainer.lenses[0].registry.segments[int(victim.id.rpartition("-")[2])].status = "retired"
    trainer.lenses[0].model_version += 1
    whole = cores[0].load_shared_model(trainer.view())
    parts: list[list[Output]] = []
    assert cores[1].load_shared_model(trainer.view(), sink=parts.append) == []
    assert [encode(m) for part in parts for m in messages_of(part)] == [encode(m) for m in whole]
    assert len(whole) > 8 and max(len(messages_of(part)) for part in parts) <= 4
