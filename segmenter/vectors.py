"""Shared mode: the raw vectors a process samples for the one trainer (see :mod:`segmenter.shared`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from segmenter.shared import encode_vectors

__all__ = ["VectorSample"]


class VectorSample:
    """Raw vectors (one per lens) of sampled events, keyed by the customer's hash, until they are taken.

    Parameters
    ----------
    lens_names
        The lenses, in config order.
    pickers
        Per lens, ``all feature values -> that lens's values``.
    """

    def __init__(self, lens_names: Sequence[str], pickers: Sequence[Callable[[list[float]], Any]]) -> None:
        self._names = list(lens_names)
        self._pick = list(pickers)
        self._keys: list[int] = []
        self._rows: list[list[list[float]]] = [[] for _ in self._names]
        self._erased: dict[int, None] = {}

    def add(self, key: int, values: list[float]) -> None:
        """Keep one event's vectors (``values``: every feature, in :data:`~segmenter.features.FEATURE_NAMES` order)."""
        self._keys.append(key)
        for li, pick in enumerate(self._pick):
            self._rows[li].append([float(v) for v in pick(values)])

    def forget(self, key: int, *, tell_trainer: bool) -> None:
        """An erasure: drop the vectors not yet taken of customer ``key``; ``tell_trainer``: have it forget it too."""
        if key in self._keys:
            keep = [i for i, k in enumerate(self._keys) if k != key]
            self._keys = [self._keys[i] for i in keep]
            self._rows = [[rows[i] for i in keep] for rows in self._rows]
        if tell_trainer:
            self._erased[key] = None

    def take(self) -> bytes | None:
        """The vectors and erased hashes since the last call, encoded for the trainer (``None``: none)."""
        if not self._keys and not self._erased:
            return None
        blob = encode_vectors(self._names, self._keys, self._rows, list(self._erased))
        self.discard()
        return blob

    def discard(self) -> None:
        """Drop the vectors not yet taken (their batch was aborted)."""
        self._keys = []
        self._rows = [[] for _ in self._names]
        self._erased = {}
