"""Erasure markers: which erased customers' older events must not bring their profile back.

After an erasure the core holds nothing about the customer, so a re-delivered
event or a late one (within the lateness) would start a fresh profile from
data that was meant to be gone. :class:`ErasureMarkers` keeps, per erasure,
only an 8-byte hash of the id (blake2b, :func:`id_hash`; never the id) and the
erasure's event time, in two sorted numpy arrays. An event of a marked
customer at or before that time is dropped (counted, not dead-lettered: a dead
letter would copy the customer's data back into a topic); a later event starts
a new profile.

A marker is dropped once the watermark (the slowest source's clock minus the
lateness, :mod:`segmenter.clock`) passes the erasure time: from then on such
old events are outside the lateness window the contract promises to cover.

Examples
--------
>>> m = ErasureMarkers()
>>> m.add(id_hash("c1"), 100)
>>> m.hits([id_hash("c1"), id_hash("c1"), id_hash("c2")], [100, 101, 50]).tolist()
[True, False, False]
>>> m.expire(101); len(m)
0
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from segmenter import codec
from segmenter.errors import StateError

__all__ = ["ErasureMarkers", "id_hash"]


def id_hash(customer_id: str) -> int:
    """The marker key of a customer id: the first 8 bytes of its blake2b digest, as an unsigned int."""
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "little")


class ErasureMarkers:
    """Erased customers' id hashes and erasure times (relative seconds), sorted by hash (see the module)."""

    def __init__(self) -> None:
        self._keys: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)
        self._times: npt.NDArray[np.int64] = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: int, t: int) -> None:
        """Mark ``key`` erased at ``t`` (a later erasure of the same key keeps the later time)."""
        k = np.uint64(key)
        i = int(np.searchsorted(self._keys, k))
        if i < len(self._keys) and self._keys[i] == k:
            self._times[i] = max(int(self._times[i]), t)
            return
        self._keys = np.insert(self._keys, i, k)
        self._times = np.insert(self._times, i, t)

    def hits(self, keys: Sequence[int], times: Sequence[int]) -> npt.NDArray[np.bool_]:
        """Per event, True when its customer is marked and its time is at or before the erasure."""
        if not len(self._keys) or not len(keys):
            return np.zeros(len(keys), np.bool_)
        k = np.asarray(keys, np.uint64)
        i = np.minimum(np.searchsorted(self._keys, k), len(self._keys) - 1)
        hit: npt.NDArray[np.bool_] = (self._keys[i] == k) & (np.asarray(times, np.int64) <= self._times[i])
        return hit

    def expire(self, watermark: int) -> None:
        """Drop the markers whose erasure time the watermark has passed."""
        keep = self._times >= watermark
        if not keep.all():
            self._keys, self._times = self._keys[keep], self._times[keep]

    def state(self) -> dict[str, Any]:
        """The markers as a :mod:`~segmenter.codec` value (hashes and times only)."""
        return {"keys": self._keys.copy(), "times": self._times.copy()}

    def load_state(self, value: Any) -> None:
        """Restore :meth:`state` output (``None``: none, the older model state).

        Raises
        ------
        StateError
            Not two arrays of the same length, or hashes not sorted and distinct.
        """
        if value is None:
            self._keys, self._times = np.zeros(0, np.uint64), np.zeros(0, np.int64)
            return
        data = codec.expect_dict(value, "erasure markers")
        keys = codec.expect_array(data.get("keys"), "erasure marker keys", np.uint64, (None,))
        times = codec.expect_array(data.get("times"), "erasure marker times", np.int64, (len(keys),))
        if len(keys) > 1 and not bool((keys[1:] > keys[:-1]).all()):
            raise StateError("erasure marker keys are not sorted and distinct")
        self._keys, self._times = keys.copy(), times.copy()
