"""Shared mode (scale-out): the records that travel between processes and the trainer.

Processes in shared mode (``Segmenter(config, shared=True)``) never learn: they
publish sampled lens vectors (:func:`encode_vectors`) and assign with the
newest *view* of one :class:`ModelTrainer`, which learns from every process's
vectors and publishes versioned views and its own snapshot. Every record is a
:mod:`segmenter.codec` record (code-free; kind, version, sizes and values
checked on load).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from segmenter import codec
from segmenter.config import SegmenterConfig
from segmenter.errors import StateError
from segmenter.lenses.lens import Lens
from segmenter.outputs import SegmentLifecycle

__all__ = ["ModelTrainer", "decode_vectors", "decode_view", "encode_vectors", "load_lens_view"]

logger = logging.getLogger(__name__)


_VECTORS_VERSION = 3
"""Vectors record version (1 was a pickle; 3 added ``erased``)."""
_VIEW_VERSION = 2
_TRAINER_VERSION = 2
"""Record versions (1 were pickles)."""


def encode_vectors(
    lens_names: list[str], keys: list[int], rows: list[list[list[float]]], erased: list[int] | None = None
) -> bytes:
    """Encode sampled vectors: customer hashes and, per lens, one raw vector per hash (original units).

    ``erased``: hashes of customers erased since the last record; the trainer
    forgets them (before the record's vectors, which are newer).
    """
    data = {
        "erased": np.asarray(erased or [], dtype=np.uint32),
        "keys": np.asarray(keys, dtype=np.uint32),
        "lenses": {
            name: np.asarray(r, dtype=np.float64).reshape(len(keys), -1 if keys else 0)
            for name, r in zip(lens_names, rows, strict=True)
        },
    }
    return codec.encode("vectors", _VECTORS_VERSION, data)


def decode_vectors(
    blob: bytes, lens_names: list[str], dims: list[int] | None = None
) -> tuple[
    np.ndarray[Any, np.dtype[np.uint32]],
    list[np.ndarray[Any, np.dtype[np.float64]]],
    np.ndarray[Any, np.dtype[np.uint32]],
]:
    """Inverse of :func:`encode_vectors`: keys, per lens (``lens_names`` order) the vectors, and the erased hashes.

    ``dims``: each lens's feature count.

    Raises
    ------
    StateError
        Corrupt data, another version, other lenses, or non-finite values.
    """
    try:
        tree = codec.decode(blob, "vectors", _VECTORS_VERSION)
    except StateError:  # a v2 record (a process not upgraded yet): no erased hashes
        tree = codec.decode(blob, "vectors", _VECTORS_VERSION - 1)
        tree = {**codec.expect_dict(tree, "vectors record"), "erased": np.zeros(0, np.uint32)}
    data = codec.expect_dict(tree, "vectors record")
    keys = codec.expect_array(data.get("keys"), "vectors keys", np.uint32, (None,))
    erased = codec.expect_array(data.get("erased"), "vectors erased", np.uint32, (None,))
    lenses = codec.expect_dict(data.get("lenses"), "vectors lenses")
    if list(lenses) != lens_names:
        raise StateError(f"vectors record lenses {list(lenses)} differ from the config's {lens_names}")
    mats = [
        codec.expect_array(lenses[name], f"vectors of lens {name!r}", np.float64,
                           (len(keys), None if dims is None or not len(keys) else dims[i]), finite=True)
        for i, name in enumerate(lens_names)
    ]  # fmt: skip
    return keys, mats, erased


def decode_view(view: bytes, lens_names: list[str], features: list[tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """The per-lens states of a :meth:`ModelTrainer.view` record, checked against the config's lenses.

    Raises
    ------
    StateError
        Corrupt data, another version or other lenses.
    """
    data = codec.expect_dict(codec.decode(view, "view", _VIEW_VERSION), "model view")
    lenses = codec.expect_dict(data.get("lenses"), "model view lenses")
    got = [tuple(f) for f in codec.expect_list(data.get("features"), "model view features")]
    if list(lenses) != lens_names or got != features:
        raise StateError(f"model view lenses {list(lenses)} differ from the config's {lens_names}")
    return {name: codec.expect_dict(lenses[name], f"model view lens {name!r}") for name in lens_names}


def load_lens_view(lens: Lens, state: dict[str, Any]) -> list[int]:
    """Load one lens's state of a view (:func:`decode_view`) into a process's lens.

    Returns the segment numbers that were live and are no longer (merged,
    split, retired), sorted; none while the lens is not ready. The caller
    re-assigns their customers (cause ``model``).
    """
    before = set(lens.registry.live()) if lens.ready else set()
    lens.load_state(state)
    if not lens.ready:
        return []
    return sorted(n for n in before if not lens.is_live(n))


class ModelTrainer:
    """The learning half of the core in shared mode: lenses learnt from the vectors every process samples.

    One trainer per consumer group (the Kafka edge elects it) feeds the
    vectors to :meth:`Lens.observe` in the order it reads them, refines every
    ``refine.every_events`` vectors on a hash-sampled set of customers' latest
    vectors, and publishes :meth:`view` (what the processes assign with) and
    :meth:`state` (everything a successor needs to continue identically).

    Parameters
    ----------
    config
        The same configuration every process uses.

    Examples
    --------
    >>> from segmenter.config import default_config
    >>> trainer = ModelTrainer(default_config())
    >>> trainer.model_versions()
    {'value': 0, 'engagement': 0}
    >>> ModelTrainer.from_state(default_config(), trainer.state()).model_versions()
    {'value': 0, 'engagement': 0}
    """

    def __init__(self, config: SegmenterConfig) -> None:
        self.config = config
        self._lenses = [Lens(lc, config.seed) for lc in config.lenses]
        self._names = [lc.name for lc in config.lenses]
        self._fnames = [tuple(lc.features) for lc in config.lenses]
        self._vectors = 0
        self._refine_round = 0
        self._sample: dict[int, list[list[float]]] = {}
        self._threshold = 2**32

    @property
    def lenses(self) -> list[Lens]:
        """The lenses, in config order."""
        return list(self._lenses)

    @property
    def vectors(self) -> int:
        """Vectors learnt so far."""
        return self._vectors

    def model_versions(self) -> dict[str, int]:
        """Each lens's model version."""
        return {lens.name: lens.model_version for lens in self._lenses}

    def apply(self, blob: bytes) -> list[SegmentLifecycle]:
        """Learn one :func:`encode_vectors` record; returns the lifecycle messages it causes.

        Raises
        ------
        StateError
            The record cannot be decoded (the caller skips it).
        """
        keys, mats, erased = decode_vectors(blob, self._names, [len(f) for f in self._fnames])
        for key in erased.tolist():  # an erased customer's sampled vectors go (its hash's threshold slot too)
            self._sample.pop(key, None)
        out: list[SegmentLifecycle] = []
        every = self.config.refine.every_events
        cap = self.config.refine.sample_size
        lenses = self._lenses
        for i, key in enumerate(keys.tolist()):
            rows = [m[i] for m in mats]
            for lens, raw in zip(lenses, rows, strict=True):
                out.extend(lens.observe(raw))
            if key < self._threshold:
                self._sample[key] = [r.tolist() for r in rows]
                if len(self._sample) > 2 * cap:
                    kept = sorted(self._sample)[:cap]
                    self._threshold = kept[-1] + 1
                    self._sample = {k: self._sample[k] for k in kept}
            self._vectors += 1
            if every and self._vectors % every == 0:
                out.extend(self._refine())
        return out

    def _refine(self) -> list[SegmentLifecycle]:
        self._refine_round += 1
        keys = sorted(self._sample)[: self.config.refine.sample_size]
        if not keys:
            return []
        out: list[SegmentLifecycle] = []
        for li, lens in enumerate(self._lenses):
            if lens.ready:
                out.extend(lens.refine(np.asarray([self._sample[k][li] for k in keys], dtype=np.float64)))
        logger.debug("trainer refinement %d on %d customers", self._refine_round, len(keys))
        return out

    def view(self) -> bytes:
        """What the processes assign with: every lens's state (they never learn from it)."""
        data = {"features": self._fnames, "versions": self.model_versions(),
                "lenses": {lens.name: lens.state() for lens in self._lenses}}  # fmt: skip
        return codec.encode("view", _VIEW_VERSION, data)

    def state(self) -> bytes:
        """Everything a successor needs to continue identically (the view, the refine sample, counters)."""
        keys = sorted(self._sample)
        sample = {
            "keys": np.asarray(keys, dtype=np.uint32),
            "lenses": [np.asarray([self._sample[k][li] for k in keys], dtype=np.float64).reshape(
                len(keys), len(lens.feature_names)) for li, lens in enumerate(self._lenses)],
        }  # fmt: skip
        data = {"view": self.view(), "vectors": self._vectors, "refine_round": self._refine_round,
                "sample": sample, "threshold": self._threshold}  # fmt: skip
        return codec.encode("trainer-state", _TRAINER_VERSION, data)

    @classmethod
    def from_state(cls, config: SegmenterConfig, data: bytes) -> ModelTrainer:
        """Rebuild a trainer from :meth:`state` output.

        Raises
        ------
        StateError
            Corrupt data, another version, other lenses or values out of range.
        """
        state = codec.expect_dict(codec.decode(data, "trainer-state", _TRAINER_VERSION), "trainer state")
        trainer = cls(config)
        view = state.get("view")
        if not isinstance(view, bytes):
            raise StateError("trainer state: 'view' must be a view record")
        lenses = decode_view(view, trainer._names, trainer._fnames)
        for lens in trainer._lenses:
            lens.load_state(lenses[lens.name])
        trainer._vectors = codec.expect_int(state.get("vectors"), "trainer state vectors", 0)
        trainer._refine_round = codec.expect_int(state.get("refine_round"), "trainer state refine_round", 0)
        sample = codec.expect_dict(state.get("sample"), "trainer state sample")
        keys = codec.expect_array(sample.get("keys"), "trainer sample keys", np.uint32, (None,))
        mats_in = codec.expect_list(sample.get("lenses"), "trainer sample lenses")
        if len(mats_in) != len(trainer._lenses):
            raise StateError(f"trainer sample holds {len(mats_in)} lenses, the config {len(trainer._lenses)}")
        mats = [
            codec.expect_array(m, "trainer sample vectors", np.float64, (len(keys), len(f)), finite=True).tolist()
            for m, f in zip(mats_in, trainer._fnames, strict=True)
        ]
        trainer._sample = {int(k): [mat[i] for mat in mats] for i, k in enumerate(keys.tolist())}
        trainer._threshold = codec.expect_int(state.get("threshold"), "trainer state threshold", 0, 2**32)
        return trainer
