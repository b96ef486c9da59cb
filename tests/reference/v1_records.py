"""The changelog's version-1 customer record (JSON), written from a store's columns one customer at a time.

Version 2 (:mod:`segmenter.customer_codec`) replaced it in the product; restore still reads version 1, and
the tests write it from here.
"""

from __future__ import annotations

from typing import Any

from segmenter.features import _FIRST, _LAST, _LPUR, _NO_TIME, _SCORED, BASE_EPOCH, NO_PENDING, FeatureStore


def v1_record(store: FeatureStore, row: int, names: list[str]) -> dict[str, Any]:
    """One customer's record in the changelog's JSON version 1, read column by column from the store.

    The reference the binary records (:mod:`segmenter.customer_codec`) must decode to, and the old
    records a restore still reads (:meth:`FeatureStore.load_record`).
    """
    t = store.t[row].tolist()
    d = store.dedup_size
    pos = int(store.hpos[row])
    ring = store.h[row, :d].tolist() if d else []
    ring = ring[pos:] + ring[:pos]  # oldest first
    return {
        "f": store.f[row].tolist(),
        "t": [
            t[_FIRST] + BASE_EPOCH,
            t[_LAST] + BASE_EPOCH,
            None if t[_LPUR] == _NO_TIME else t[_LPUR] + BASE_EPOCH,
            t[_SCORED] + BASE_EPOCH,
        ],
        "h": [x for x in ring if x],
        "s": {
            name: [
                int(store.seg[row, i]),
                int(store.dwell[row, i]),
                int(store.since[row, i]) + BASE_EPOCH,
                int(store.prev[row, i]),
                int(store.mver[row, i]),
                None if store.pend[row, i] == NO_PENDING else int(store.pend[row, i]) + BASE_EPOCH,
            ]
            for i, name in enumerate(names)
        },
    }
