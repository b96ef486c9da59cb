"""``ChangedCustomers``: the customers with a segment change in an open batch, packed until its commit.

A batch remembers each customer whose segments changed, with the ``emitted_at``
of its latest change, for the membership-table records its commit sends (step 2
of :class:`consumer.checkpoint.CommitSteps`). A mass move (an inactivity sweep,
a refinement's rescoring) changes hundreds of thousands of customers in one
batch; a ``dict[str, str]`` of them kept every id as a Python string (64 bytes
each in CPython's small-object arenas) from the change to the commit, while
the core kept allocating its own long-lived objects among them. The arenas
they filled stay with the process (an arena is returned only when all of it is
free): the running consumer's RSS kept about 100 bytes per customer of them at
500,000 customers. Here the ids of each run of changes with one ``emitted_at``
are packed into one fixed-width ``numpy`` bytes array (a single block of
memory) and become strings again at the commit, a chunk at a time.

Ids ending in a NUL character do not survive a fixed-width bytes array (it
pads with NULs); they are kept as strings beside the arrays.

Examples
--------
>>> changed = ChangedCustomers()
>>> changed.add_many(["c2", "c1"], "t1"); changed.add("c3", "t2"); changed.add("c2", "t3")
>>> len(changed), list(changed.chunks(2))
(3, [(['c1', 'c2'], ['t1', 't3']), (['c3'], ['t2'])])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["ChangedCustomers"]

_PACK_AFTER = 4096
"""Changes added one at a time are packed once this many wait (or at a new ``emitted_at``)."""


class ChangedCustomers:
    """Customer id -> ``emitted_at`` of its latest segment change in the batch, packed (see the module)."""

    def __init__(self) -> None:
        self._packed: list[npt.NDArray[np.bytes_]] = []
        self._stamps: list[str] = []
        """``emitted_at`` of each packed array."""
        self._waiting: list[str] = []
        self._waiting_stamp = ""
        self._nul: dict[str, str] = {}
        """Ids ending in NUL -> ``emitted_at`` of their latest change."""

    def add(self, customer_id: str, emitted_at: str) -> None:
        """A segment change of ``customer_id`` emitted at ``emitted_at`` (later calls win)."""
        if emitted_at != self._waiting_stamp or len(self._waiting) >= _PACK_AFTER:
            self._pack()
            self._waiting_stamp = emitted_at
        self._waiting.append(customer_id)

    def add_many(self, customer_ids: Sequence[str], emitted_at: str) -> None:
        """Segment changes of many customers, all emitted at ``emitted_at``."""
        self._pack()
        self._store(customer_ids, emitted_at)

    def __len__(self) -> int:
        """The number of distinct customers (unpacks the ids: for tests and checks, not the commit's path)."""
        return len(self.as_dict())

    def as_dict(self) -> dict[str, str]:
        """Every customer -> ``emitted_at`` of its latest change."""
        return {cid: stamp for ids, stamps in self.chunks(2**62) for cid, stamp in zip(ids, stamps, strict=True)}

    def chunks(self, size: int) -> Iterator[tuple[list[str], list[str]]]:
        """The distinct customers in sorted order (of their ids, as ``sorted``) with their ``emitted_at``, ``size``
        at a time (only a chunk of the ids are strings at once)."""
        self._pack()
        every = np.concatenate(self._packed) if self._packed else np.zeros(0, "S1")
        which = np.repeat(np.arange(len(self._packed), dtype=np.int64), [len(p) for p in self._packed])
        # the latest change of each id: its first occurrence from the end (np.unique's sort is stable)
        unique, first = np.unique(every[::-1], return_index=True)
        latest = which[::-1][first]
        if self._nul:  # rare: everything as strings, sorted with the ids that end in NUL
            merged = dict(zip((b.decode() for b in unique.tolist()), (self._stamps[i] for i in latest.tolist()),
                              strict=True))  # fmt: skip
            merged.update(self._nul)
            ids = sorted(merged)
            for start in range(0, len(ids), size):
                chunk = ids[start : start + size]
                yield chunk, [merged[c] for c in chunk]
            return
        for start in range(0, len(unique), size):
            yield ([b.decode() for b in unique[start : start + size].tolist()],
                   [self._stamps[i] for i in latest[start : start + size].tolist()])  # fmt: skip

    def _pack(self) -> None:
        if self._waiting:
            self._store(self._waiting, self._waiting_stamp)
            self._waiting = []

    def _store(self, customer_ids: Sequence[str], emitted_at: str) -> None:
        encoded = [c.encode() for c in customer_ids]
        if any(e.endswith(b"\x00") for e in encoded):
            for cid, e in zip(customer_ids, encoded, strict=True):
                if e.endswith(b"\x00"):
                    self._nul[cid] = emitted_at
            encoded = [e for e in encoded if not e.endswith(b"\x00")]
        if encoded:
            self._packed.append(np.array(encoded, np.bytes_))
            self._stamps.append(emitted_at)
