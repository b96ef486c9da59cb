"""ChangedCustomers: the packed changed set gives what the dict of id -> latest emitted_at gave, in sorted order."""

from __future__ import annotations

import random

import pytest

from consumer.changed_customers import ChangedCustomers

_IDS = ["c0000001", "c0000002", "c10", "c1", "é-client", "z", "a\x00b", "a", "a\x00", "a\x00\x00", "\x00", "日本"]


def _apply(ops: list[tuple[list[str], str, bool]]) -> tuple[ChangedCustomers, dict[str, str]]:
    changed, want = ChangedCustomers(), {}
    for ids, stamp, many in ops:
        if many:
            changed.add_many(ids, stamp)
        else:
            for cid in ids:
                changed.add(cid, stamp)
        want.update(dict.fromkeys(ids, stamp))
    return changed, want


@pytest.mark.parametrize("seed", range(20))
def test_the_chunks_are_the_sorted_customers_with_their_latest_emitted_at(seed: int) -> None:
    rng = random.Random(seed)
    ops = [(rng.choices(_IDS, k=rng.randint(0, 6)), f"t{i}", rng.random() < 0.5) for i in range(rng.randint(0, 12))]
    changed, want = _apply(ops)
    size = rng.randint(1, 5)
    chunks = list(changed.chunks(size))
    assert all(0 < len(ids) <= size and len(ids) == len(stamps) for ids, stamps in chunks)
    got = [(cid, stamp) for ids, stamps in chunks for cid, stamp in zip(ids, stamps, strict=True)]
    assert got == sorted(want.items())
    assert changed.as_dict() == want
    assert len(changed) == len(want)


def test_changes_added_one_at_a_time_are_packed_past_a_bound_and_the_latest_wins() -> None:
    changed, want = _apply([([f"c{i % 5000:07d}" for i in range(9000)], "t1", False), (["c0000007"], "t2", False),
                            ([f"c{i:07d}" for i in range(3)], "t3", True)])  # fmt: skip
    assert changed.as_dict() == want
    assert want["c0000007"] == "t2" and want["c0000001"] == "t3" and want["c0004999"] == "t1"
    assert not changed._waiting  # the chunks packed what waited


def test_an_empty_set_has_no_chunks() -> None:
    assert list(ChangedCustomers().chunks(10)) == []
    assert ChangedCustomers().as_dict() == {}
