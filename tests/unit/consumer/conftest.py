"""A small fake core and an in-memory transport that stops the service when the input is drained."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from consumer.core import Core
from consumer.rules_watcher import RulesWatcher
from consumer.service import Service, TransportFactory, Wiring
from consumer.settings import Settings, load_settings
from consumer.sink import MemoryTransport, RebalanceHandler
from consumer.snapshots import SnapshotKeeper
from consumer.trainer import TrainerRole
from consumer.views import ViewFollower
from segmenter.config import default_config
from segmenter.errors import EventError
from segmenter.events import CustomerEvent, EventType
from segmenter.outputs import OutputMessage, SegmentChange, SegmentRef
from segmenter.pipeline import BatchResult, OutputSink, Segmenter
from tests.reference.membership_record import membership_value

FIXED_NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


@dataclass
class FakeCore:
    """Counts events per customer; emits one segment_change per event (segment = count)."""

    counts: dict[str, int] = field(default_factory=dict)
    events: int = 0
    max_epoch: float = 0.0
    dirty: dict[str, bytes | None] = field(default_factory=dict)
    partition: dict[str, int | None] = field(default_factory=dict)
    """customer -> input partition of its latest event (the core's ``part`` column)."""
    since: dict[str, int] = field(default_factory=dict)
    """customer -> event time (epoch seconds) of its latest change."""
    rules: Any = None
    fail_on: dict[str, int] = field(default_factory=dict)
    """event_id -> how many more times process() raises RuntimeError for it (-1: always)."""

    def process(self, event: CustomerEvent) -> list[OutputMessage]:
        left = self.fail_on.get(event.event_id, 0)
        if left:
            self.fail_on[event.event_id] = left - 1 if left > 0 else -1
            self.counts[event.customer_id] = 999  # a half-applied mutation the rollback must undo
            raise RuntimeError(f"boom on {event.event_id}")
        if event.epoch < self.max_epoch - 3600:
            raise EventError("late", "older than the watermark", field="ts")
        if event.type is EventType.ERASURE_REQUEST:
            return self.erase(event.customer_id)
        self.max_epoch = max(self.max_epoch, event.epoch)
        self.events += 1
        n = self.counts.get(event.customer_id, 0) + 1
        self.counts[event.customer_id] = n
        self.dirty[event.customer_id] = str(n).encode()
        self.since[event.customer_id] = int(event.epoch)
        return [_change(event.customer_id, n - 1 or None, n, event.event_id, event.ts.isoformat())]

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None], *,
                      sink: OutputSink | None = None) -> BatchResult:  # fmt: skip
        """One :meth:`process` per event: rejections by index, any other exception propagates (half applied).

        With a ``sink``, each event's outputs are handed to it at once (a part per event), as the real core's
        parts are while it runs.
        """
        result = BatchResult([], [])
        for i, event in enumerate(events):
            try:
                outputs = self.process(event)
                if sink is None:
                    result.outputs.extend(outputs)
                elif outputs:
                    sink([*outputs])
            except EventError as exc:
                result.errors.append((i, exc))
                continue
            if event.customer_id in self.counts:
                self.partition[event.customer_id] = sources[i]
        return result

    def erase(self, customer_id: str, at: float | None = None) -> list[OutputMessage]:
        n = self.counts.pop(customer_id, None)
        self.dirty[customer_id] = None
        if n is None:
            return []
        return [
            SegmentChange(
                customer_id=customer_id,
                lens="x",
                from_segment=SegmentRef(id=f"x-{n}", name="n"),
                to_segment=None,
                cause="erasure",
                cause_event_id=None,
                event_ts="2026-01-01T00:00:00+00:00",
                model_version=1,
                distance=None,
                features={},
                explanation=None,
            )
        ]

    def set_rules(self, rules: Any) -> None:
        self.rules = rules

    def take_change_parts(self, size: int) -> list[list[tuple[str, bytes | None, int | None]]]:
        out, self.dirty = sorted(self.dirty.items()), {}
        changes = [(c, r, self.partition.get(c)) for c, r in out]
        return [changes[i : i + size] for i in range(0, len(changes), size)]

    def membership_values(self, customer_ids: Sequence[str], updated_at: Sequence[str]) -> list[bytes | None]:
        return [None if c not in self.counts else
                membership_value(c, {"x": (f"x-{self.counts[c]}", "n", self.since.get(c, 0), 1)}, at)
                for c, at in zip(customer_ids, updated_at, strict=True)]  # fmt: skip

    def load_customer(self, customer_id: str, record: bytes, source: int | None = None) -> None:
        self.counts[customer_id] = int(record)
        self.partition[customer_id] = source

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        gone = [c for c in self.counts if self.partition.get(c) in set(partitions)]
        for c in gone:
            del self.counts[c]
        return len(gone)

    def model_parts(self) -> dict[str, bytes]:
        return {"core": json.dumps({"events": self.events, "max_epoch": self.max_epoch}).encode()}

    def load_model_parts(self, parts: Mapping[str, bytes]) -> None:
        self.load_model_state(parts["core"])

    def load_model_state(self, data: bytes) -> None:
        state = json.loads(data)
        self.events, self.max_epoch = state["events"], state["max_epoch"]

    def stats(self) -> Any:
        return SimpleNamespace(segments={"x": [SimpleNamespace(id="x-1", size=len(self.counts))]}, suppressed={})

    def lens_quality(self) -> dict[str, Any]:
        return {}

    # one clock for all partitions: the fake has no watermark to hold
    def open_source(self, source: int) -> None:
        pass

    def set_idle(self, source: int, idle: bool) -> None:
        pass

    def take_dirty_clocks(self) -> dict[int, float]:
        return {}

    def load_clock(self, source: int, epoch: float) -> None:
        pass

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        pass


def _change(customer: str, old: int | None, new: int, event_id: str, ts: str) -> SegmentChange:
    return SegmentChange(
        customer_id=customer,
        lens="x",
        from_segment=None if old is None else SegmentRef(id=f"x-{old}", name="n"),
        to_segment=SegmentRef(id=f"x-{new}", name="n"),
        cause="event",
        cause_event_id=event_id,
        event_ts=ts,
        model_version=1,
        distance=None,
        features={"n": float(new)},
        explanation=None,
    )


def event(i: int, customer: str = "c1", etype: str = "page_view", minutes: int | None = None, **extra: Any) -> bytes:
    minute = i if minutes is None else minutes
    body = {
        "event_id": f"e{i}",
        "customer_id": customer,
        "type": etype,
        "ts": f"2026-01-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
        **extra,
    }
    return json.dumps(body).encode()


def make_service(
    settings: Settings,
    make_transport: TransportFactory,
    make_core: Callable[[Any], Core],
    *,
    rules: RulesWatcher | None = None,
    trainer: Callable[[], TrainerRole] | None = None,
    clock: Callable[[], datetime] = lambda: FIXED_NOW,
) -> Service[Any]:
    """A service wired for the mode of ``settings`` (as :func:`consumer.__main__.build_service` does)."""
    keeper: SnapshotKeeper | ViewFollower = SnapshotKeeper(settings.instance_id, settings.model_topic)
    if settings.shared:
        keeper = ViewFollower(settings.model_topic, settings.state_topic, settings.vectors_topic, settings.instance_id)
    return Service(settings, Wiring(make_transport, make_core, keeper, trainer=trainer, rules=rules, clock=clock))


class DrainTransport(MemoryTransport):
    """Stops the service after two empty polls in a row (the input is drained)."""

    service: Service[Any] | None = None
    idle: int = 0

    def poll(self, timeout_s: float, max_records: int) -> list[Any]:
        records = super().poll(timeout_s, max_records)
        self.idle = 0 if records else self.idle + 1
        if self.idle >= 2 and self.service is not None:
            self.service.stop()
        return records


@dataclass
class Harness:
    settings: Settings
    transport: DrainTransport
    cores: list[FakeCore]
    core_setup: Callable[[FakeCore], None] | None = None

    def service(self, **kwargs: Any) -> Service[Any]:
        def make_transport(handler: RebalanceHandler) -> DrainTransport:
            self.transport.handler = handler
            return self.transport

        def make_core(rules: Any) -> FakeCore:
            core = FakeCore(rules=rules)
            if self.core_setup is not None:
                self.core_setup(core)
            self.cores.append(core)
            return core

        svc = make_service(self.settings, make_transport, make_core, **kwargs)
        self.transport.service = svc
        return svc

    def run(self, **kwargs: Any) -> Service[Any]:
        svc = self.service(**kwargs)
        svc.run()
        return svc

    def outputs(self, topic: str = "out") -> list[dict[str, Any]]:
        return [json.loads(r.value or b"null") for r in self.transport.records(topic)]


def real_core_service(h: Harness, cores: list[Segmenter]) -> Service[Any]:
    """A service on ``h``'s transport with real cores (default config); each core it builds is appended to ``cores``."""

    def make_transport(handler: RebalanceHandler) -> DrainTransport:
        h.transport.handler = handler
        return h.transport

    def make_core(rules: Any) -> Segmenter:
        core = Segmenter(default_config(), rules)
        cores.append(core)
        return core

    svc = make_service(h.settings, make_transport, make_core)
    h.transport.service = svc
    return svc


def make_harness(partitions: int = 1, *args: str) -> Harness:
    """A service over an in-memory transport whose batches close at 3 records (or at the drain's stop).

    The commit and catch-up intervals are ten minutes, so no batch closes on the wall clock: a test's batches
    are the same on a slow machine. Tests of the intervals pass their own and step the checkpoint's clock.
    """
    settings = load_settings(
        [
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
            "600000",
            "--catch-up-interval-ms",
            "600000",
            "--transaction-timeout-ms",
            "900000",
            "--batch-size",
            "3",
            *args,
        ]
    )
    return Harness(settings, DrainTransport("in", partitions=partitions), [])


@pytest.fixture
def harness() -> Harness:
    return make_harness()


def values(records: Sequence[Any]) -> list[bytes | None]:
    return [r.value for r in records]
