"""What the Kafka edge drives of the core: one protocol per mode.

:class:`Core` is :class:`segmenter.pipeline.Segmenter` as the service sees it
in single mode; :class:`SharedCore` adds what shared (scale-out) mode needs:
assigning with a trainer's model view and sampling vectors for it. Which of
the two a service drives is decided once, at wiring (:mod:`consumer.__main__`),
together with the :class:`ModelKeeper` that restores, follows and writes
that mode's model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from consumer.sink import InRecord, OutRecord, Transport
from consumer.state import ClockedCore, StatefulCore
from segmenter.events import CustomerEvent
from segmenter.lenses.quality import LensQuality
from segmenter.outputs import OutputMessage
from segmenter.pipeline import BatchResult, OutputSink, SegmenterStats
from segmenter.triggers.rules import RuleSet


class Core(StatefulCore, ClockedCore, Protocol):
    """The part of :class:`segmenter.pipeline.Segmenter` the service drives.

    Restoring customers and models (:class:`~consumer.state.StatefulCore`) and the partitions' clocks
    (:class:`~consumer.state.ClockedCore`) are declared once, beside the restore code that needs only them.
    """

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None], *,
                      sink: OutputSink | None = None) -> BatchResult:  # fmt: skip
        """Process events in order (``sources``: their input partitions); rejections come back by index.

        With a ``sink``, the outputs go to it in order, in parts, while the call runs (not in the result).
        """

    def erase(self, customer_id: str, at: float | None = None) -> Sequence[OutputMessage]:
        """Forget a customer (Kafka tombstone)."""

    def set_rules(self, rules: RuleSet | None) -> None:
        """Swap the campaign rules."""

    def take_change_parts(self, size: int) -> Iterable[Sequence[tuple[str, bytes | None, int | None]]]:
        """Customer records changed since the last call (``None`` = erased), each with its input partition, in
        parts of ``size`` built as they are reached (consumed before the core changes again)."""

    def membership_values(self, customer_ids: Sequence[str], updated_at: Sequence[str]) -> Sequence[bytes | None]:
        """The customers' membership-table record values, each ``updated_at`` its own (``None``: not held)."""

    def drop_partitions(self, partitions: Iterable[int]) -> int:
        """Forget every customer of those input partitions; returns how many."""

    def model_parts(self) -> Mapping[str, bytes]:
        """The model in separately written parts by name (``core``: clock and counters; one per lens)."""

    def lens_quality(self) -> Mapping[str, LensQuality]:
        """Per refined lens, its quality at the latest refinement (the gauges' values)."""

    def stats(self) -> SegmenterStats:
        """Counters and segment sizes per lens."""

    def open_source(self, source: int) -> None:
        """An assigned partition: it holds the watermark until it has events or is marked idle."""

    def set_idle(self, source: int, idle: bool) -> None:
        """A partition read to its end offset (idle: it does not hold the watermark) or with records again."""


class SharedCore(Core, Protocol):
    """A core that assigns with a trainer's model view (:class:`Segmenter` with ``shared=True``)."""

    def load_shared_model(self, view: bytes, *, sink: OutputSink | None = None) -> Sequence[OutputMessage]:
        """Assign with ``view`` from now on; the moves of customers whose segment died go to ``sink`` in parts."""

    def model_versions(self) -> dict[str, int]:
        """Model version of each lens."""

    def take_vectors(self) -> bytes | None:
        """Sampled vectors since the last call."""

    def discard_vectors(self) -> None:
        """Drop sampled vectors of an aborted batch."""


C = TypeVar("C", bound=Core)
"""The core a service drives: :class:`Core` or :class:`SharedCore`."""
C_contra = TypeVar("C_contra", bound=Core, contravariant=True)


class ModelKeeper(Protocol[C_contra]):
    """The model's side of one mode: restore at assignment, follow between polls, write at commit.

    Single mode: :class:`consumer.snapshots.SnapshotKeeper` (the model's
    parts); shared mode: :class:`consumer.views.ViewFollower` (the trainer's
    views in, sampled vectors and partition clocks out).
    """

    def restore(self, core: C_contra, models: Sequence[InRecord]) -> bytes | None:
        """Load the model topic's newest valid model into ``core``; returns the record's value (``None``: none)."""

    def follow(self, core: C_contra, transport: Transport) -> None:
        """Between polls: look for a newer model (applied by :meth:`switch`)."""

    def switch(self, core: C_contra, sink: OutputSink) -> None:
        """At the start of a batch: switch to the newer model found; the moves it causes go to ``sink`` in parts."""

    def records(self, core: C_contra) -> list[OutRecord]:
        """Commit step: the model's records of this batch."""

    def discard(self, core: C_contra) -> None:
        """The batch was aborted: forget what its records claimed was written."""

    def reset(self) -> None:
        """A fresh core: nothing is held or pending."""
