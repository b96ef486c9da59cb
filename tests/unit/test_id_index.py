"""IdIndex against a dict: adds, removals (backward-shift deletion), growth, arena compaction, batch lookups."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter import id_index
from segmenter.id_index import IdIndex


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=600), st.sampled_from(["c", "ü-", "x" * 40]))
def test_behaves_like_a_dict(ops: list[tuple[bool, int]], prefix: str) -> None:
    index = IdIndex()
    model: dict[str, int] = {}
    free: list[int] = []
    for add, k in ops:
        cid = f"{prefix}{k}"
        if add and cid not in model:
            row = free.pop() if free else len(model) + len(free)
            index.add(cid, row)
            model[cid] = row
        elif not add:
            held = model.pop(cid) if cid in model else None
            assert index.remove(cid) == held
            if held is not None:
                free.append(held)
    assert len(index) == len(model)
    probe = [f"{prefix}{k}" for k in range(301)]
    assert index.get_many(probe).tolist() == [model.get(c, -1) for c in probe]
    assert all(index.get(c) == model.get(c) for c in probe)
    assert all(index.id_of(row) == cid for cid, row in model.items())
    rows = list(model.values())[::-1] * 2  # any order, repeats
    assert index.ids_of(np.array(rows, np.int64)) == [index.id_of(r) for r in rows]


def test_many_removals_compact_the_arena_and_keep_every_survivor() -> None:
    rnd = random.Random(5)
    index = IdIndex()
    ids = [f"customer-{i:08d}-{rnd.randrange(10**9)}" for i in range(6000)]
    for row, cid in enumerate(ids):
        index.add(cid, row)
    gone = set(rnd.sample(range(6000), 5000))
    for row in sorted(gone):
        assert index.remove(ids[row]) == row
    assert index.nbytes() < 600_000  # the arena was compacted (and the table kept its size)
    assert len(index) == 1000
    assert index.get_many(ids).tolist() == [-1 if r in gone else r for r in range(6000)]
    assert all(index.id_of(r) == ids[r] for r in range(6000) if r not in gone)
    kept = np.array([r for r in range(6000) if r not in gone], np.int64)
    assert index.ids_of(kept) == [ids[r] for r in kept.tolist()]
    assert index.ids_of(kept[:0]) == []


def test_duplicate_add_is_refused() -> None:
    index = IdIndex()
    index.add("a", 0)
    with pytest.raises(KeyError, match="already indexed"):
        index.add("a", 1)
    assert index.get_many([]).tolist() == []


def test_a_row_costs_six_bytes_besides_its_id_and_its_table_slots() -> None:
    """A ``uint32`` offset and a ``uint16`` length per reserved row (the layout the memory budget counts)."""
    index = IdIndex()
    empty = index.nbytes()
    index.reserve_rows(10_000)
    assert index.nbytes() - empty == 6 * 10_000


def test_ids_beyond_what_the_offsets_address_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(id_index, "_MAX_ARENA", 6000)
    index = IdIndex()
    ids = [f"c{i:07d}" for i in range(700)]  # 5,600 bytes fit
    index.add_many(ids, np.arange(700, dtype=np.int64))
    with pytest.raises(MemoryError, match="more instances"):
        index.add_many([f"d{i:07d}" for i in range(100)], np.arange(700, 800, dtype=np.int64))
    with pytest.raises(MemoryError, match="more instances"):
        for i in range(100):
            index.add(f"e{i:07d}", 800 + i)
    assert index.get_many(ids).tolist() == list(range(700))


def test_order_of_sorts_the_ids_of_rows_and_extra_ids_as_sorted_sorts_the_strings() -> None:
    rng = random.Random(3)
    alphabet = ["a", "b", "z", "\x00", "\x01", "é", "日", "0"]
    names = sorted({"".join(rng.choices(alphabet, k=rng.randint(1, 6))) for _ in range(300)})
    rng.shuffle(names)
    index = IdIndex()
    held, extra = names[:200], names[200:]
    for row, cid in enumerate(held):
        index.add(cid, row)
    rows = np.array(rng.sample(range(200), 150), np.int64)
    order = index.order_of(rows, extra)
    both = [held[r] for r in rows.tolist()] + extra
    assert [both[i] for i in order.tolist()] == sorted(both)
    assert index.order_of(np.zeros(0, np.int64)).tolist() == []
