"""The scenarios that look like the world: sparse retail, multi-partition backlogs, a bad clock."""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka.partitioner.default import murmur2 as kafka_murmur2

from producer.__main__ import main
from producer.backlog import backlog_order, kafka_partition, murmur2
from producer.faults import FaultConfig, FaultInjector
from producer.retail import MONTH, SPARSE_TYPES, SparseConfig, SparseRetail
from producer.simulator import DAY
from segmenter.events import validate_event


def _sparse(customers: int = 3000, seed: int = 4) -> tuple[SparseRetail, list[dict[str, object]]]:
    gen = SparseRetail(SparseConfig(customers=customers, seed=seed))
    return gen, [e.event for e in gen.events()]


def test_sparse_is_deterministic_by_seed() -> None:
    first = [orjson.dumps(e) for e in _sparse(400, seed=9)[1]]
    again = [orjson.dumps(e) for e in _sparse(400, seed=9)[1]]
    other = [orjson.dumps(e) for e in _sparse(400, seed=10)[1]]
    assert first == again
    assert first != other


def test_sparse_has_the_shape_of_a_retail_log() -> None:
    gen, events = _sparse()
    cfg = gen.config
    start, end = cfg.start_epoch, cfg.end_epoch
    times = [datetime.fromisoformat(str(e["ts"])).timestamp() for e in events]
    assert times == sorted(times)
    assert start <= times[0] and times[-1] < end
    types = Counter(e["type"] for e in events)
    assert set(types) == {"signup", "purchase", "refund"}
    assert types["purchase"] > 0.75 * len(events)  # few non-purchase events
    purchases: dict[str, list[float]] = defaultdict(list)
    for e, t in zip(events, times, strict=True):
        if e["type"] == "purchase":
            purchases[str(e["customer_id"])].append(t)
    counts = np.array([len(v) for v in purchases.values()])
    assert len(purchases) == cfg.customers == gen.customer_count  # every customer buys
    assert counts.min() == 1 and counts.max() <= 20 and counts.max() >= 15
    assert np.median(counts) <= 3  # most customers buy a few times
    lapsed = np.mean([end - max(v) > 90 * DAY for v in purchases.values()])
    assert lapsed > 0.6  # most customers lapse long before the end
    amounts = np.array([float(e["amount"]) for e in events if e["type"] == "purchase"])  # type: ignore[arg-type]
    assert amounts.min() >= 1.0
    assert np.percentile(amounts, 99.9) > 20 * np.median(amounts)  # heavy tail
    # cohorts arrive over time, more every month
    first_buy = np.array([min(v) for v in purchases.values()])
    arrivals_by_month = np.bincount(((first_buy - start) // MONTH).astype(int))
    assert np.count_nonzero(arrivals_by_month[: int(cfg.cohort_months)]) == int(cfg.cohort_months)
    assert arrivals_by_month[10] > arrivals_by_month[0]
    assert set(gen.persona_counts()) == {t.name for t in SPARSE_TYPES}
    assert {t.customer_id for t in gen.truth} == set(purchases)
    for e in events[::53]:
        validate_event(e)


def test_sparse_refunds_follow_their_purchase_and_signups_come_first() -> None:
    _, events = _sparse(2000, seed=2)
    seen: dict[str, list[str]] = defaultdict(list)
    bought: dict[str, set[float]] = defaultdict(set)
    for e in events:
        cid = str(e["customer_id"])
        if e["type"] == "signup":
            assert not seen[cid]
        if e["type"] == "purchase":
            bought[cid].add(float(e["amount"]))  # type: ignore[arg-type]
        if e["type"] == "refund":
            assert float(e["amount"]) in bought[cid]  # type: ignore[arg-type]
        seen[cid].append(str(e["type"]))
    assert sum(t.count("refund") for t in seen.values()) > 10


def test_murmur2_is_kafkas() -> None:
    rng = np.random.default_rng(0)
    for n in range(0, 30):
        data = bytes(rng.integers(0, 256, n, dtype=np.uint8))
        expected = kafka_murmur2(data)
        assert murmur2(data) & 0xFFFFFFFF == expected & 0xFFFFFFFF
    assert [kafka_partition(f"c{i:07d}".encode(), 3) for i in range(200)].count(0) in range(40, 100)


@pytest.mark.parametrize("order", ["partitions", "blocks"])
def test_backlog_keeps_every_customer_in_order_and_puts_the_partitions_clocks_apart(order: str) -> None:
    gen, events = _sparse(1500, seed=5)
    keys = [str(e["customer_id"]).encode() for e in events]
    idx = backlog_order(keys, order, partitions=3, block_customers=300)  # type: ignore[arg-type]
    assert sorted(idx) == list(range(len(events)))
    per_customer: dict[bytes, list[int]] = defaultdict(list)
    for i in idx:
        per_customer[keys[i]].append(i)
    assert all(v == sorted(v) for v in per_customer.values())
    times = [datetime.fromisoformat(str(events[i]["ts"])).timestamp() for i in idx]
    # how far one partition's clock is ahead of another's when the first third of the backlog is read
    clocks: dict[int, float] = {}
    for i, t in zip(idx[: len(idx) // 3], times, strict=False):
        p = kafka_partition(keys[i], 3)
        clocks[p] = max(clocks.get(p, t), t)
    if order == "partitions":
        assert times != sorted(times)
        assert len(clocks) == 1  # partition 0 alone: the others have not started
        parts = [kafka_partition(keys[i], 3) for i in idx]
        assert parts == sorted(parts)
        for p in range(3):
            part_times = [t for t, q in zip(times, parts, strict=True) if q == p]
            assert part_times == sorted(part_times)
    else:
        span = gen.config.end_epoch - gen.config.start_epoch
        assert min(clocks.values()) > gen.config.start_epoch + 0.8 * span  # every clock ran to the end already
        assert sum(1 for a, b in itertools.pairwise(times) if b < a - 0.5 * span) >= 3  # and jumps back


def test_backlog_order_time_is_the_identity_and_bad_arguments_are_refused() -> None:
    assert backlog_order([b"a", b"b"], "time") == [0, 1]
    with pytest.raises(ValueError, match="unknown backlog order"):
        backlog_order([b"a"], "random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 1"):
        backlog_order([b"a"], "blocks", block_customers=0)


def test_bad_clock_dates_exactly_one_event_a_year_ahead() -> None:
    values = [
        orjson.dumps(
            {"event_id": f"e{i}", "customer_id": "c1", "type": "page_view", "ts": f"2025-03-0{1 + i}T10:00:00Z"}
        )
        for i in range(5)
    ]
    seen: list[tuple[str, dict[str, object]]] = []
    inj = FaultInjector(FaultConfig(bad_clock_at=2), lambda kind, details: seen.append((kind, details)))
    out: list[tuple[bytes, bytes]] = []
    for i, v in enumerate(values):
        inj.process(float(i), b"c1", v, out)
    inj.drain(out)
    sent = [orjson.loads(v) for _, v in out]
    assert [e["event_id"] for e in sent] == [f"e{i}" for i in range(5)]
    moved = [e for e, v in zip(sent, values, strict=True) if orjson.dumps(e) != v]
    assert [e["event_id"] for e in moved] == ["e2"]
    ahead = datetime.fromisoformat(moved[0]["ts"]) - datetime(2025, 3, 3, 10, tzinfo=UTC)
    assert ahead == timedelta(days=365)
    assert inj.counts["bad_clock"] == 1 and seen[0][0] == "bad_clock" and seen[0][1]["ts"] == moved[0]["ts"]
    assert FaultConfig(bad_clock_at=0).active and not FaultConfig().active
    with pytest.raises(ValueError, match="bad_clock_at"):
        FaultConfig(bad_clock_at=-1)


def test_synth_cli_scenario_order_and_bad_clock(tmp_path: Path) -> None:
    out, backlog, summary = tmp_path / "s.jsonl", tmp_path / "b.jsonl", tmp_path / "sum.json"
    base = ["synth", "--scenario", "sparse", "--customers", "200", "--days", "400", "--seed", "3", "--quiet"]
    assert main([*base, "--to", "file", str(out)]) == 0
    assert (
        main(
            [
                *base,
                "--order",
                "partitions",
                "--partitions",
                "3",
                "--bad-clock-at",
                "7",
                "--summary-json",
                str(summary),
                "--to",
                "file",
                str(backlog),
            ]
        )
        == 0
    )
    plain = out.read_bytes().splitlines()
    reordered = backlog.read_bytes().splitlines()
    assert len(plain) == len(reordered) > 200
    assert sorted(plain) != sorted(reordered)  # the bad clock moved one event
    assert len(set(plain) - set(reordered)) == 1
    first = [orjson.loads(v)["customer_id"] for v in reordered]
    parts = [kafka_partition(c.encode(), 3) for c in first]
    assert parts == sorted(parts)
    report = orjson.loads(summary.read_bytes())
    assert report["scenario"] == "sparse" and report["order"] == "partitions"
    assert report["faults"] == {"bad_clock": 1} and report["customers"] == 200
    times = [datetime.fromisoformat(orjson.loads(v)["ts"]) for v in plain]
    assert times[0] >= datetime(2024, 7, 1, tzinfo=UTC) and times[-1] < datetime(2025, 8, 5, tzinfo=UTC)


def test_synth_default_scenario_is_unchanged(tmp_path: Path) -> None:
    """The personas scenario with its defaults still writes what it wrote before the --scenario flag."""
    out = tmp_path / "p.jsonl"
    assert main(["synth", "--customers", "20", "--days", "3", "--seed", "1", "--quiet", "--to", "file", str(out)]) == 0
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["ts"].startswith("2026-01-01") and first["event_id"] == "s1-0"
    assert os.path.getsize(out) > 1000
