"""bench/peer_quix.py's table: every contender measured, the reference tree's consumer next to ours."""

from __future__ import annotations

from dataclasses import asdict

from bench.peer_quix import REFERENCE, ROLES, Measured, peer_table


def _result(roles: tuple[str, ...]) -> dict[str, object]:
    seconds = {"bare_read": 1.0, "bare_eos": 8.0, "ours": 4.0, REFERENCE: 10.0, "quix": 12.0}
    cpu = {"bare_read": 0.5, "bare_eos": 2.5, "ours": 3.0, REFERENCE: 6.0, "quix": 5.0}
    measured = {role: asdict(Measured(100_000, seconds[role], cpu[role], 300 * 2**20)) for role in roles}
    return {"data": {"measured": {"1": measured}}}


def test_the_reference_row_follows_ours_with_its_ratios() -> None:
    lines = peer_table(_result((*ROLES, REFERENCE)))
    contenders = [line.split(" | ")[1] for line in lines[2:]]
    assert contenders == ["bare read", "bare eos", "ours", "ours reference", "quix"]
    reference = lines[2 + contenders.index("ours reference")]
    assert reference.endswith("| 2.50 | 0.50 |")  # ours: 10 s / 4 s the rate, 3 / 6 the CPU per event


def test_without_a_reference_the_table_has_the_four_contenders() -> None:
    lines = peer_table(_result(ROLES))
    assert [line.split(" | ")[1] for line in lines[2:]] == ["bare read", "bare eos", "ours", "quix"]
