"""Shared mode (scale-out): the records that travel between processes and the trainer.

Processes in shared mode (``Segmenter(config, shared=True)``) never learn: they
publish sampled lens vectors (:func:`encode_vectors`) and assign with the
newest *view* of one :class:`ModelTrainer`, which learns from every process's
vectors and publishes versioned views and its own snapshot. All records are
pickles of our own topics (trusted data), each with a version checked on load.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import numpy as np

from segmenter.config import SegmenterConfig
from segmenter.errors import StateError
from segmenter.lenses.lens import Lens
from segmenter.outputs import SegmentLifecycle

__all__ = ["ModelTrainer", "decode_vectors", "decode_view", "encode_vectors", "unpickle_versioned"]

logger = logging.getLogger(__name__)


_VECTORS_VERSION = 1
_VIEW_VERSION = 1
_TRAINER_VERSION = 1


def encode_vectors(lens_names: list[str], keys: list[int], rows: list[list[list[float]]]) -> bytes:
    """Encode sampled vectors: customer hashes and, per lens, one raw vector per hash (original units)."""
    data = {
        "v": _VECTORS_VERSION,
        "keys": np.asarray(keys, dtype=np.uint32),
        "lenses": {name: np.asarray(r, dtype=np.float64) for name, r in zip(lens_names, rows, strict=True)},
    }
    return pickle.dumps(data, protocol=5)


def decode_vectors(
    blob: bytes, lens_names: list[str]
) -> tuple[np.ndarray[Any, np.dtype[np.uint32]], list[np.ndarray[Any, np.dtype[np.float64]]]]:
    """Inverse of :func:`encode_vectors`, lenses in ``lens_names`` order.

    Raises
    ------
    StateError
        Corrupt data, another version or other lenses.
    """
    try:
        data = pickle.loads(blob)  # our own vectors topic (trusted)
        if data["v"] != _VECTORS_VERSION:
            raise StateError(f"vectors version {data['v']!r}, expected {_VECTORS_VERSION}")
        keys = data["keys"]
        mats = [data["lenses"][name] for name in lens_names]
    except StateError:
        raise
    except Exception as exc:
        raise StateError(f"vectors record cannot be decoded: {exc!r}") from None
    if any(len(m) != len(keys) for m in mats):
        raise StateError("vectors record: lenses hold different numbers of rows")
    return keys, mats


def unpickle_versioned(data: bytes, what: str, version_key: str, version: int) -> dict[str, Any]:
    """Load one of our own pickled records (state, snapshot, view: trusted data) and check its version.

    Raises
    ------
    StateError
        Corrupt data or another version.
    """
    try:
        loaded = pickle.loads(data)
    except Exception as exc:
        raise StateError(f"{what} cannot be decoded: {exc!r}") from None
    if not isinstance(loaded, dict) or loaded.get(version_key) != version:
        raise StateError(f"unsupported {what} version (expected {version})")
    return loaded


def decode_view(view: bytes, lens_names: list[str], features: list[tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """The per-lens states of a :meth:`ModelTrainer.view` record, checked against the config's lenses.

    Raises
    ------
    StateError
        Corrupt data, another version or other lenses.
    """
    data = unpickle_versioned(view, "model view", "v", _VIEW_VERSION)  # our own model topic
    if list(data["lenses"]) != lens_names or [tuple(f) for f in data["features"]] != features:
        raise StateError(f"model view lenses {list(data['lenses'])} differ from the config's {lens_names}")
    lenses: dict[str, dict[str, Any]] = data["lenses"]
    return lenses


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
        keys, mats = decode_vectors(blob, self._names)
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
        data = {"v": _VIEW_VERSION, "features": self._fnames, "versions": self.model_versions(),
                "lenses": {lens.name: lens.state() for lens in self._lenses}}
        return pickle.dumps(data, protocol=5)

    def state(self) -> bytes:
        """Everything a successor needs to continue identically (the view, the refine sample, counters)."""
        keys = sorted(self._sample)
        sample = {
            "keys": np.asarray(keys, dtype=np.uint32),
            "lenses": [np.asarray([self._sample[k][li] for k in keys], dtype=np.float64).reshape(
                len(keys), len(lens.feature_names)) for li, lens in enumerate(self._lenses)],
        }
        data = {"v": _TRAINER_VERSION, "view": self.view(), "vectors": self._vectors,
                "refine_round": self._refine_round, "sample": sample, "threshold": self._threshold}
        return pickle.dumps(data, protocol=5)

    @classmethod
    def from_state(cls, config: SegmenterConfig, data: bytes) -> ModelTrainer:
        """Rebuild a trainer from :meth:`state` output.

        Raises
        ------
        StateError
            Corrupt data, another version or other lenses.
        """
        state = unpickle_versioned(data, "trainer state", "v", _TRAINER_VERSION)  # our own model topic
        trainer = cls(config)
        lenses = decode_view(state["view"], trainer._names, trainer._fnames)
        for lens in trainer._lenses:
            lens.load_state(lenses[lens.name])
        trainer._vectors = int(state["vectors"])
        trainer._refine_round = int(state["refine_round"])
        sample = state["sample"]
        mats = [m.tolist() for m in sample["lenses"]]
        trainer._sample = {int(k): [mat[i] for mat in mats] for i, k in enumerate(sample["keys"].tolist())}
        trainer._threshold = int(state["threshold"])
        return trainer
