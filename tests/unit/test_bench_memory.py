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


def test_the_cost_is_the_difference_of_the_cheapest_blocks_whatever_lands_in_the_others() -> None:
    # mass moves in two known blocks and one new block, as the consumer at 500k customers showed
    cost = new_customer_cost(_blocks([60, 61, 59, 900, 60, 2400], [20, 2000, 21, 19, 700, 20]))
    assert cost["new"]["min_us"] == pytest.approx(59)
    assert cost["known"]["min_us"] == pytest.approx(19)
    assert cost["extra_us"] == pytest.approx(40)
    assert cost["extra_median_us"] == pytest.approx(60.5 - 20.5)
    assert cost["extra_mean_us"] == pytest.approx(590 - 463.3333, abs=1e-3)
    assert cost["new"]["blocks"] == cost["known"]["blocks"] == 6
    uneven = new_customer_cost(_blocks([60, 61, 59, 900, 60, 2400], [20, 2000, 21, 700, 800, 20]))
    assert uneven["extra_us"] == pytest.approx(39)  # three dear known blocks of six: the medians go wrong
    assert uneven["extra_median_us"] < 0


def test_the_mass_move_rows_pick_the_steps_with_a_mass_move() -> None:
    from bench.memory import MASS_MOVE_OUTPUTS, mass_move_rows  # noqa: PLC0415

    def steps(*peaks_outputs: tuple[int, int]) -> dict[str, object]:
        return {"steps": [{"step": f"s{i}", "peak_rss": p, "outputs": o} for i, (p, o) in enumerate(peaks_outputs)]}

    big = MASS_MOVE_OUTPUTS
    after = steps((900_000_000, 10), (400_000_000, 3 * big), (600_000_000, big))
    before = steps((500_000_000, 10), (2_000_000_000, 3 * big), (700_000_000, big))
    most, dearest = mass_move_rows("m", after, before)
    assert (most.measured, most.reference, most.ratio) == (400, 2000, 0.2)  # the step with the most outputs
    assert (dearest.measured, dearest.reference) == (600, 2000)  # the dearest step with a mass move, not s0
    none, _ = mass_move_rows("m", steps((900_000_000, big - 1)), None)
    assert none.measured is None and none.note == "no step with a mass move"


def _result(rss_mb: dict[int, float]) -> dict[str, object]:
    rss = [{"customers": n, "rss": int(mb * 1e6)} for n, mb in rss_mb.items()]
    return {"rss": rss, "peak_rss": 0, "stopped": None, "cost": None, "steps": []}


def test_the_slope_is_reported_over_each_span_and_from_250k_to_the_largest_size() -> None:
    from bench.memory import TARGET_BYTES, consumer_rows  # noqa: PLC0415

    after = _result({50_000: 300, 250_000: 340, 500_000: 440, 1_000_000: 540})
    before = _result({50_000: 300, 250_000: 330, 500_000: 450, 1_000_000: 780})
    slopes = {r.metric: r for r in consumer_rows(after, before) if r.metric.startswith("RSS slope")}
    assert list(slopes) == [f"RSS slope {a} to {b} customers" for a, b in
                            [("50,000", "250,000"), ("250,000", "500,000"), ("500,000", "1,000,000"),
                             ("250,000", "1,000,000")]]  # fmt: skip
    long = slopes["RSS slope 250,000 to 1,000,000 customers"]
    assert long.measured == pytest.approx(200e6 / 750_000)
    assert long.reference == pytest.approx(450e6 / 750_000)
    assert long.measured is not None
    assert long.passed is (long.measured <= TARGET_BYTES)
    assert not slopes["RSS slope 250,000 to 500,000 customers"].passed  # 400 B per customer
    # three sizes: 250k to the largest is a consecutive span already
    three = consumer_rows(_result({50_000: 300, 250_000: 340, 500_000: 440}))
    assert [r.metric for r in three if r.metric.startswith("RSS slope")] == [
        "RSS slope 50,000 to 250,000 customers", "RSS slope 250,000 to 500,000 customers"]  # fmt: skip
