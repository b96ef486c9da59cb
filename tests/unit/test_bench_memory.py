"""bench/memory.py's new-customer cost: blocks of both phases alike, outlier blocks left out of both."""

from __future__ import annotations

import pytest

from bench.memory import block_plan, block_size, new_customer_cost


def test_a_refinement_every_five_blocks_falls_on_both_phases_in_turn() -> None:
    block = block_size(100_000, refine_every=20_000)
    assert block == 4000
    plan = block_plan(12)
    assert plan.count("new") == plan.count("known") == 12
    for offset in range(5):  # wherever the refinement period starts
        hit = [plan[i] for i in range(offset, len(plan), 20_000 // block)]
        assert abs(hit.count("new") - hit.count("known")) <= 1, (offset, hit)


def test_small_runs_still_get_blocks() -> None:
    assert block_size(2000, refine_every=20_000) == 250
    assert block_size(100_000, refine_every=0) == 4000


def _blocks(new_us: list[float], known_us: list[float], events: int = 1000) -> list[dict[str, object]]:
    return [{"phase": p, "events": events, "cpu_s": us * events / 1e6}
            for p, values in (("new", new_us), ("known", known_us)) for us in values]  # fmt: skip


def test_the_cost_is_the_difference_of_the_medians_whatever_lands_in_a_few_blocks() -> None:
    # a refinement (2000 us per event) in one known block and a growth in one new block
    cost = new_customer_cost(_blocks([60, 61, 59, 900, 60], [20, 2000, 21, 19, 20]))
    assert cost["new"]["median_us"] == pytest.approx(60)
    assert cost["known"]["median_us"] == pytest.approx(20)
    assert cost["extra_us"] == pytest.approx(40)
    assert cost["extra_mean_us"] == pytest.approx(228 - 416)  # the means: what the old measurement got wrong
    assert cost["new"]["blocks"] == cost["known"]["blocks"] == 5
