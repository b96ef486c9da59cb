"""The core's model-state records: model state, model parts and snapshots, checked before anything changes.

A core's *model* is its lenses (scalers, models, registries) plus a small
*core state*: the event-time clock, the counters, the trigger engine's global
state and the erasure markers (:class:`CoreState`). It travels as one
:mod:`~segmenter.codec` record (:func:`encode_model_state`, kind
``model-state``), or as one record per part so an edge writes only what changed
(:func:`encode_model_parts`: ``"core"`` and ``"lens:<name>"``). A snapshot
(:func:`encode_snapshot`) is a model-state record plus every customer's columns
and the trigger engine's full state.

Every decoder here validates the whole record and returns typed values; the
caller (:class:`~segmenter.pipeline.Segmenter`) applies them only afterwards,
so a refused record changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segmenter import codec
from segmenter.config import SegmenterConfig
from segmenter.erasures import ErasureMarkers
from segmenter.errors import StateError
from segmenter.lenses.lens import Lens

__all__ = [
    "LENS_PART_PREFIX",
    "STATE_VERSION",
    "CoreState",
    "Counters",
    "check_lens_states",
    "decode_model_parts",
    "decode_model_state",
    "decode_snapshot",
    "encode_model_parts",
    "encode_model_state",
    "encode_snapshot",
]

STATE_VERSION = 2
"""Version of the model-state and snapshot records (1 was a pickle)."""
_MODEL_KIND = "model-state"
_CORE_KIND = "model-core"
_LENS_KIND = "lens-state"
_PART_VERSION = 1
"""Version of the model-part records."""
_CORE_PART = "core"
LENS_PART_PREFIX = "lens:"
"""Name of a lens's part in :func:`encode_model_parts` (then the lens name)."""
_SNAPSHOT_KIND = "snapshot"
_CLOCK_BOUND = 2**33
"""Clock values (seconds from BASE_EPOCH) beyond this are refused on restore (the columns hold int32 times)."""
_INT_COUNTERS = ("events", "refine_round", "late", "isolated", "duplicates", "erasures", "after_erasure")
_OPTIONAL_COUNTERS = frozenset({"isolated", "after_erasure"})
"""Counters absent from older states (their "future" counted refused events, never applied: 0 isolated)."""


@dataclass(frozen=True)
class Counters:
    """The core's counters, as the model state holds them."""

    events: int = 0
    refine_round: int = 0
    late: int = 0
    isolated: int = 0
    duplicates: int = 0
    erasures: int = 0
    after_erasure: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    """Segment changes per cause."""
    triggers: dict[str, int] = field(default_factory=dict)
    """Campaign triggers emitted per campaign."""

    def state(self) -> dict[str, Any]:
        """The counters as a :mod:`~segmenter.codec` value."""
        out: dict[str, Any] = {k: getattr(self, k) for k in _INT_COUNTERS}
        out["changes"], out["triggers"] = dict(self.changes), dict(self.triggers)
        return out

    @classmethod
    def from_state(cls, value: Any) -> Counters:
        """Validate :meth:`state` output.

        Raises
        ------
        StateError
            Not a mapping, or a counter missing, negative or of the wrong type.
        """
        c = codec.expect_dict(value, "model state counters")
        ints = {
            k: codec.expect_int(c.get(k, 0) if k in _OPTIONAL_COUNTERS else c.get(k), f"model state counter {k}", 0)
            for k in _INT_COUNTERS
        }
        return cls(**ints, changes=_count_map(c, "changes"), triggers=_count_map(c, "triggers"))


@dataclass(frozen=True)
class CoreState:
    """The core state beside the lenses: what the ``"core"`` part holds."""

    features: list[tuple[str, ...]]
    """Per lens, its feature names (must match the config on restore)."""
    clock: tuple[Any, ...]
    """:meth:`~segmenter.clock.EventClock.state` output."""
    counters: Counters
    triggers: dict[str, Any] | None
    """:meth:`~segmenter.triggers.engine.TriggerEngine.global_state` output (``None``: no rules)."""
    markers: ErasureMarkers

    def tree(self) -> dict[str, Any]:
        """The core state as a :mod:`~segmenter.codec` value."""
        return {
            "features": self.features,
            "clock": self.clock,
            "triggers": self.triggers,
            "erasures": self.markers.state(),
            "counters": self.counters.state(),
        }

    @classmethod
    def from_tree(cls, state: Mapping[str, Any], features: list[tuple[str, ...]]) -> CoreState:
        """Validate :meth:`tree` output against the config's ``features`` (per lens).

        Raises
        ------
        StateError
            Other features than the config's, or a clock, counter or marker out of range.
        """
        got = [tuple(f) for f in codec.expect_list(state.get("features"), "model state features")]
        if got != features:
            raise StateError(f"model state features {got} differ from the config's")
        clock = _clock(state.get("clock"))
        counters = Counters.from_state(state.get("counters"))
        triggers = state.get("triggers")
        if triggers is not None:
            triggers = codec.expect_dict(triggers, "model state triggers")
        markers = ErasureMarkers()
        markers.load_state(state.get("erasures"))
        return cls(got, clock, counters, triggers, markers)


def check_lens_states(config: SegmenterConfig, lenses: Mapping[str, Any]) -> None:
    """Dry run: load each lens state into a fresh lens, so a bad state is refused before any real lens changes.

    Raises
    ------
    StateError
        A lens state the lens refuses.
    """
    for lc in config.lenses:
        Lens(lc, config.seed).load_state(lenses[lc.name])


def encode_model_state(lenses: Mapping[str, Any], core: CoreState) -> bytes:
    """The ``model-state`` record: every lens state (by name, config order) and the core state."""
    return codec.encode(_MODEL_KIND, STATE_VERSION, {"lenses": dict(lenses), **core.tree()})


def decode_model_state(
    data: bytes, names: list[str], features: list[tuple[str, ...]]
) -> tuple[dict[str, Any], CoreState]:
    """Inverse of :func:`encode_model_state`, checked against the config's lens ``names`` and ``features``.

    The lens states are returned as decoded: check them with :func:`check_lens_states`.

    Raises
    ------
    StateError
        Not a model-state record of this version, corrupt data, or other lenses than the config's.
    """
    state = codec.expect_dict(codec.decode(data, _MODEL_KIND, STATE_VERSION), "model state")
    lenses = codec.expect_dict(state.get("lenses"), "model state lenses")
    if list(lenses) != names:
        raise StateError(f"model state lenses {list(lenses)} differ from the config's {names}")
    return lenses, CoreState.from_tree(state, features)


def encode_model_parts(lenses: Mapping[str, Any], core: CoreState) -> dict[str, bytes]:
    """The model state as one record per part: ``"core"`` and ``"lens:<name>"`` per lens."""
    parts = {_CORE_PART: codec.encode(_CORE_KIND, _PART_VERSION, core.tree())}
    for name, state in lenses.items():
        parts[LENS_PART_PREFIX + name] = codec.encode(_LENS_KIND, _PART_VERSION, state)
    return parts


def decode_model_parts(
    parts: Mapping[str, bytes], names: list[str], features: list[tuple[str, ...]]
) -> tuple[dict[str, Any], CoreState]:
    """Inverse of :func:`encode_model_parts`, checked as :func:`decode_model_state`.

    Raises
    ------
    StateError
        A part is missing, unknown, corrupt or of another version.
    """
    wanted = [_CORE_PART, *(LENS_PART_PREFIX + n for n in names)]
    if sorted(parts) != sorted(wanted):
        raise StateError(f"model parts {sorted(parts)} differ from the config's {sorted(wanted)}")
    core = codec.expect_dict(_decode_part(parts, _CORE_PART, _CORE_KIND), "model core")
    lenses = {n: _decode_part(parts, LENS_PART_PREFIX + n, _LENS_KIND) for n in names}
    return lenses, CoreState.from_tree(core, features)


def encode_snapshot(model: bytes, customers: Any, triggers: dict[str, Any] | None) -> bytes:
    """The ``snapshot`` record: a model-state record, the customers' columns and the trigger engine's state."""
    return codec.encode(_SNAPSHOT_KIND, STATE_VERSION, {"model": model, "customers": customers, "triggers": triggers})


def decode_snapshot(data: bytes) -> tuple[bytes, Any, dict[str, Any] | None]:
    """Inverse of :func:`encode_snapshot`: the model-state record, the customers' columns (unchecked) and triggers.

    Raises
    ------
    StateError
        Not a snapshot of this version, or corrupt data.
    """
    snap = codec.expect_dict(codec.decode(data, _SNAPSHOT_KIND, STATE_VERSION), "snapshot")
    model = snap.get("model")
    if not isinstance(model, bytes):
        raise StateError("snapshot: 'model' must be a model-state record")
    triggers = snap.get("triggers")
    return model, snap.get("customers"), None if triggers is None else codec.expect_dict(triggers, "snapshot triggers")


def _count_map(counters: Mapping[str, Any], key: str) -> dict[str, int]:
    """A ``{name: count}`` counter of a model state."""
    m = codec.expect_dict(counters.get(key), f"model state counter {key}")
    return {codec.expect_str(n, f"{key} key"): codec.expect_int(v, f"{key} count", 0) for n, v in m.items()}


def _decode_part(parts: Mapping[str, bytes], name: str, kind: str) -> Any:
    """One model-part record, decoded; its errors name the part."""
    try:
        return codec.decode(parts[name], kind, _PART_VERSION)
    except StateError as exc:
        raise StateError(f"model part {name!r}: {exc}") from None


def _clock_value(value: Any, what: str) -> int | None:
    return None if value is None else codec.expect_int(value, f"model state clock {what}", -_CLOCK_BOUND, _CLOCK_BOUND)


def _clock_pairs(value: Any, what: str) -> list[list[int]]:
    """A source's ``[[time, customer key], ...]`` sample."""
    pairs = []
    for pair in codec.expect_list(value, f"model state clock {what}"):
        t, key = codec.expect_list(pair, f"model state clock {what} entry")
        pairs.append([codec.expect_int(t, f"{what} time", -_CLOCK_BOUND, _CLOCK_BOUND),
                      codec.expect_int(key, f"{what} key", 0, 2**32)])  # fmt: skip
    return pairs


def _source_state(value: Any) -> int | tuple[int, int, list[list[int]], list[list[int]]]:
    """One source's ``(clock, latest, sample, ahead)`` (or a bare time, the older form)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return codec.expect_int(value, "model state clock source time", -_CLOCK_BOUND, _CLOCK_BOUND)
    parts = codec.expect_list(value, "model state clock source")
    if len(parts) != 4:
        raise StateError(f"model state clock source: expected 4 values, got {len(parts)}")
    clock = codec.expect_int(parts[0], "model state clock source clock", -_CLOCK_BOUND, _CLOCK_BOUND)
    latest = codec.expect_int(parts[1], "model state clock source latest", -_CLOCK_BOUND, _CLOCK_BOUND)
    return clock, latest, _clock_pairs(parts[2], "sample"), _clock_pairs(parts[3], "ahead")


def _clock(value: Any) -> tuple[Any, ...]:
    """The validated ``(max_t, watermark, next_check, released_at, {source: state})`` of a model state."""
    clock = codec.expect_list(value, "model state clock")
    if len(clock) != 5:
        raise StateError(f"model state clock: expected 5 values, got {len(clock)}")
    max_t, wm, nxt, rel = (_clock_value(v, w) for v, w in zip(clock[:4], ("max", "watermark", "check", "release"),
                                                                strict=True))  # fmt: skip
    sources: dict[int | None, Any] = {}
    for src, state in codec.expect_dict(clock[4], "model state clock sources").items():
        if src is not None:
            codec.expect_int(src, "model state clock source", 0)
        sources[src] = _source_state(state)
    return max_t, wm, nxt, rel, sources
