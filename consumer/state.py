"""State changelog encoding and restore.

Two compacted topics hold everything needed to rebuild an instance:

``<group>.state``
    One record per customer, key = customer id (UTF-8), value = the core's
    customer record (:meth:`Segmenter.take_dirty`; binary, version 2 of
    :mod:`segmenter.customer_codec`), ``None`` (a tombstone) once
    the customer is erased. It has as many partitions as the input topic, and a
    customer's record goes to the **same partition number** as the input record
    that changed it (co-partitioning), so whoever owns input partition *p*
    restores exactly state partition *p*.
``<group>.model``
    Single mode: the model in parts (:meth:`Segmenter.model_parts`), one
    partition, key = ``<instance id>/<part>`` (``core``: event clock, counters,
    trigger globals; ``lens:<name>``: one lens's scaler, model and registry), value =
    the part's :mod:`segmenter.codec` record, zlib-compressed; a part is
    written only at a commit that changed it (:class:`ModelTracker`), and the
    newest record of each part is the model at the last commit
    (:func:`restore_model`). Whole-model records of earlier versions
    (:meth:`Segmenter.model_state`, ``format: segmenter-model-1``) still
    restore. Everything is checked before anything is loaded; a record that
    does not inflate, parse or validate is reported at ERROR (topic,
    partition, offset, why); with no valid model the service starts fresh.

Both are written inside the batch's transaction under exactly-once, so what is
restored is always the state as of the last committed input offsets.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import orjson

from consumer.sink import InRecord, OutRecord
from segmenter.errors import SegmenterError, StateError

log = logging.getLogger(__name__)

FORMAT_HEADER = "format"
CUSTOMER_FORMAT = b"segmenter-customer-2"
"""A customer record's header: version 2 (:mod:`segmenter.customer_codec`); a restore reads the version from the
value itself, so the JSON records of version 1 (header ``segmenter-customer-1``) still restore."""
MODEL_FORMAT = b"segmenter-model-1"
"""A whole-model record (:meth:`Segmenter.model_state`), as written before the model was split in parts; still read."""
MODEL_PART_FORMAT = b"segmenter-model-part-1"
"""One part of the model (:meth:`Segmenter.model_parts`), zlib-compressed, keyed by the part's name."""
MAX_MODEL_PART_BYTES = 256 * 1024 * 1024
"""A model part that inflates beyond this is refused (a compression bomb) before it is held in memory."""
_PART_LEVEL = 1
"""zlib level of model parts: about 3x smaller than the codec record at about 0.2 ms per 50 KB lens."""
CLOCK_FORMAT = b"segmenter-clock-1"
VIEW_FORMAT = b"segmenter-view-1"
TRAINER_FORMAT = b"segmenter-trainer-1"
CLOCK_KEY = b"\x00segmenter.clock"
"""Key of a state partition's clock record (its latest event time); marked by ``format: segmenter-clock-1``."""
VIEW_KEY = b"view"
VERSIONS_HEADER = "versions"
"""Header of a view record: the lenses' model versions as JSON (compared without decoding the view)."""
TRAINER_KEY = b"trainer"
_CUSTOMER_HEADERS = ((FORMAT_HEADER, CUSTOMER_FORMAT),)


class StatefulCore(Protocol):
    """The part of the core that restore needs."""

    def load_customer(self, customer_id: str, record: bytes, source: int | None = None) -> None:
        """Load one customer's record (``source``: the input partition it belongs to)."""

    def load_model_state(self, data: bytes) -> None:
        """Load a whole-model record."""

    def load_model_parts(self, parts: Mapping[str, bytes]) -> None:
        """Load the model from its parts."""


@runtime_checkable
class ClockedCore(Protocol):
    """A core with a watermark per input partition (:class:`segmenter.pipeline.Segmenter`)."""

    def take_dirty_clocks(self) -> dict[int, float]:
        """Partitions whose latest event time moved: ``{partition: epoch}``."""

    def load_clock(self, source: int, epoch: float) -> None:
        """Restore a partition's latest event time."""

    def drop_sources(self, keep: Callable[[int | None], bool]) -> None:
        """Forget the clocks of partitions for which ``keep`` is false."""


def changelog_records(changes: Iterable[tuple[str, bytes | None, int | None]], topic: str) -> list[OutRecord]:
    """Changelog records for customers the core changed in this batch (a part of :meth:`Segmenter.take_change_parts`).

    Each goes to its customer's input partition, which the core keeps per
    customer; one without (should not happen at the edge) falls back to the
    key-hash partitioner, the input's own when the input is keyed by customer
    id. Erased customers (``None``) get a tombstone.
    """
    out: list[OutRecord] = []
    append, new = out.append, tuple.__new__  # OutRecord's own __new__ is a Python function; the tuple is the same
    for customer_id, record, partition in changes:
        if partition is None:
            log.warning("no input partition known for customer %r; using the key-hash partitioner", customer_id)
        headers = () if record is None else _CUSTOMER_HEADERS
        append(new(OutRecord, (topic, customer_id.encode(), record, headers, partition)))
    return out


@dataclass
class ModelTracker:
    """Writes the model parts that differ from the ones last written or loaded, one record per part.

    A part's record is keyed ``<instance id>/<part>`` (parts: ``core``,
    ``lens:<name>``), so the compacted topic keeps one record per part and
    writer and a restore reads a few, all of one writer; its value is the
    part's codec record, zlib-compressed (:func:`inflate_part`).
    """

    instance_id: str
    digests: dict[str, bytes] = field(default_factory=dict)

    def records(self, parts: Mapping[str, bytes], topic: str) -> list[OutRecord]:
        """The records of the parts that changed (none when the model did not change)."""
        out = []
        for name in sorted(parts):
            digest = _digest(parts[name])
            if self.digests.get(name) != digest:
                self.digests[name] = digest
                value = zlib.compress(parts[name], _PART_LEVEL)
                key = f"{self.instance_id}/{name}".encode()
                out.append(OutRecord(topic, key, value, ((FORMAT_HEADER, MODEL_PART_FORMAT),), 0))
        return out

    def holds(self, parts: Mapping[str, bytes]) -> bool:
        """True when every part is what was last written or loaded (the core already holds it)."""
        if not parts or self.digests.keys() != parts.keys():
            return False
        return all(self.digests[name] == _digest(value) for name, value in parts.items())

    def loaded(self, parts: Mapping[str, bytes] | None) -> None:
        """Remember what was restored (``None``: nothing, or a whole-model record: every part is written next)."""
        self.digests = {} if parts is None else {name: _digest(value) for name, value in parts.items()}

    def reset(self) -> None:
        """Forget the digests (after a failed batch every part is written at the next commit)."""
        self.digests = {}


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def inflate_part(value: bytes) -> bytes:
    """The codec record of a model-part record's value.

    Raises
    ------
    StateError
        Not zlib data, truncated, or larger than :data:`MAX_MODEL_PART_BYTES` inflated.
    """
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(value, MAX_MODEL_PART_BYTES)
    except zlib.error as exc:
        raise StateError(f"model part is not zlib data: {exc}") from None
    if inflater.unconsumed_tail:
        raise StateError(f"model part inflates beyond {MAX_MODEL_PART_BYTES} bytes")
    if not inflater.eof:
        raise StateError("model part is truncated")
    return data


def where(rec: InRecord) -> str:
    """``topic[partition]@offset`` of a record, for logs."""
    return f"{rec.topic}[{rec.partition}]@{rec.offset}"


@dataclass
class BadRecords:
    """Reports each record that cannot be restored once at ERROR (later restores of it log at DEBUG)."""

    seen: set[tuple[str, int, int]] = field(default_factory=set)

    def report(self, rec: InRecord, what: str, why: object) -> None:
        """Log that ``rec`` (a ``what``) is skipped because of ``why``."""
        coords = (rec.topic, rec.partition, rec.offset)
        level = logging.DEBUG if coords in self.seen else logging.ERROR
        self.seen.add(coords)
        log.log(level, "%s record %s (key %r) cannot be restored and is skipped: %s", what, where(rec), rec.key, why)


def newest_valid(
    records: Sequence[InRecord], load: Callable[[InRecord], object], what: str, bad: BadRecords
) -> InRecord | None:
    """Try ``load`` on the records from the newest to the oldest; the first that loads wins.

    A record for which ``load`` raises :class:`StateError` (or any other
    exception: a record must never stop a restore) is reported through ``bad``
    and the next older one is tried. Returns the record loaded, or ``None``.
    """
    for rec in sorted(records, key=lambda r: r.offset, reverse=True):
        try:
            load(rec)
        except StateError as exc:
            bad.report(rec, what, exc)
            continue
        except Exception as exc:
            log.debug("loading %s record %s failed", what, where(rec), exc_info=True)
            bad.report(rec, what, repr(exc))
            continue
        return rec
    return None


def clock_records(clocks: Mapping[int, float], topic: str) -> list[OutRecord]:
    """One clock record per input partition whose latest event time moved, to the same state partition."""
    return [
        OutRecord(topic, CLOCK_KEY, orjson.dumps({"max_epoch": epoch}), ((FORMAT_HEADER, CLOCK_FORMAT),), p)
        for p, epoch in sorted(clocks.items())
    ]


def _is_clock(rec: InRecord) -> bool:
    return rec.key == CLOCK_KEY and (FORMAT_HEADER, CLOCK_FORMAT) in rec.headers


def _clock_epoch(rec: InRecord) -> float | None:
    """The epoch of a clock record, or ``None`` (reported at ERROR) when it is not a finite number."""
    assert rec.value is not None
    try:
        value = orjson.loads(rec.value)
        epoch = value["max_epoch"] if isinstance(value, dict) else None
    except (orjson.JSONDecodeError, KeyError):
        epoch = None
    if isinstance(epoch, bool) or not isinstance(epoch, int | float) or not math.isfinite(epoch):
        log.error("clock record %s is not a number; ignored (the partition's clock starts from its events)", where(rec))
        return None
    return float(epoch)


def restore_customers(core: StatefulCore, records: Iterable[InRecord]) -> int:
    """Replay changelog records into ``core``: the last record per customer wins, tombstones delete.

    Returns how many customers were loaded. A customer record the core refuses
    (corrupt, non-finite or out-of-range values, an unknown segment, another
    version) is reported at ERROR with its topic, partition, offset and
    customer, and that customer starts afresh; a clock record that is not a
    number in range is reported and ignored. Nothing here stops the partition.
    """
    latest: dict[str, InRecord] = {}
    clocks: dict[int, tuple[float, InRecord]] = {}
    for rec in records:
        if rec.key is None:
            continue
        if _is_clock(rec):
            epoch = None if rec.value is None else _clock_epoch(rec)
            if epoch is not None:
                clocks[rec.partition] = (epoch, rec)
            continue
        latest[rec.key.decode("utf-8", errors="replace")] = rec
    if clocks and isinstance(core, ClockedCore):
        _load_clocks(core, clocks)
    loaded = 0
    for customer_id in sorted(latest):
        rec = latest[customer_id]
        if rec.value is None:
            continue
        try:
            core.load_customer(customer_id, rec.value, rec.partition)
        except StateError as exc:
            log.error(
                "state record %s of customer %r cannot be restored; the customer starts afresh: %s",
                where(rec),
                customer_id,
                exc,
            )
            continue
        except Exception:
            log.exception(
                "state record %s of customer %r cannot be loaded; the customer starts afresh", where(rec), customer_id
            )
            continue
        loaded += 1
    return loaded


def _load_clocks(core: ClockedCore, clocks: Mapping[int, tuple[float, InRecord]]) -> None:
    """Restore each partition's clock; one the core refuses is reported and ignored."""
    for partition, (epoch, rec) in sorted(clocks.items()):
        try:
            core.load_clock(partition, epoch)
        except SegmenterError as exc:
            log.error("clock record %s holds %r, which the core refuses; ignored: %s", where(rec), epoch, exc)


def restore_model(
    core: StatefulCore, records: Sequence[InRecord], tracker: ModelTracker, bad: BadRecords
) -> InRecord | None:
    """Single mode: load the newest valid model of the model topic; returns its (newest) record, ``None``: none.

    A writer's model is the newest record of each of its parts (a tombstone
    deletes the part). The candidates, the writers' models and whole-model
    records (``segmenter-model-1``, earlier versions), are tried from the
    newest down; the first that loads wins. A model the core already holds
    (``tracker``) is not loaded again; after loading another writer's model
    or a whole record, every part is written at the next commit. Records
    without a model header, or that do not load, are reported through ``bad``.
    """
    writers: dict[str, dict[str, InRecord]] = {}
    candidates: list[tuple[int, InRecord | dict[str, InRecord]]] = []
    for rec in sorted(records, key=lambda r: r.offset):
        if (FORMAT_HEADER, MODEL_PART_FORMAT) in rec.headers and rec.key is not None:
            writer, _, name = rec.key.decode("utf-8", errors="replace").partition("/")
            parts = writers.setdefault(writer, {})
            if rec.value is None:
                parts.pop(name, None)
            else:
                parts[name] = rec
        elif rec.value is None:
            continue
        elif (FORMAT_HEADER, MODEL_FORMAT) in rec.headers:
            candidates.append((rec.offset, rec))
        else:
            bad.report(rec, "model", f"no '{FORMAT_HEADER}: {MODEL_PART_FORMAT.decode()}' header")
    candidates += [(max(r.offset for r in parts.values()), parts) for parts in writers.values() if parts]
    for _, candidate in sorted(candidates, key=lambda c: c[0], reverse=True):
        if isinstance(candidate, dict):
            chosen = _load_parts(core, candidate, tracker, bad)
        else:
            chosen = newest_valid([candidate], lambda rec: core.load_model_state(rec.value or b""), "model", bad)
            if chosen is not None:
                tracker.loaded(None)
        if chosen is not None:
            return chosen
    tracker.loaded(None)
    return None


def _load_parts(
    core: StatefulCore, parts: Mapping[str, InRecord], tracker: ModelTracker, bad: BadRecords
) -> InRecord | None:
    """Load one writer's model from the newest record of each part; a refused set is reported on its newest record."""
    newest = max(parts.values(), key=lambda r: r.offset)
    values = {}
    for name, rec in sorted(parts.items()):
        assert rec.value is not None
        try:
            values[name] = inflate_part(rec.value)
        except StateError as exc:
            bad.report(rec, "model", exc)
            return None
    own = newest.key is not None and newest.key.startswith(f"{tracker.instance_id}/".encode())
    if own and tracker.holds(values):
        return newest
    try:
        core.load_model_parts(values)
    except Exception as exc:
        log.debug("loading the model parts %s failed", {n: where(r) for n, r in parts.items()}, exc_info=True)
        bad.report(newest, "model", exc if isinstance(exc, StateError) else repr(exc))
        return None
    tracker.loaded(values if own else None)
    return newest
