"""The peer application's features, and the capacity bench at a tiny size (no broker; no timing assertions)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench import capacity, report
from bench.peer_quix import PeerFeatures, peer_step
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.features import FEATURE_NAMES, FeatureStore, event_kind

pytestmark = pytest.mark.timeout(120)

TYPES = ["session_start", "product_view", "add_to_cart", "purchase", "email_open", "email_click", "page_view"]


def _events(n: int) -> list[dict[str, Any]]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out: list[dict[str, Any]] = []
    for i in range(n):
        event: dict[str, Any] = {
            "event_id": f"e{i}",
            "customer_id": "c1",
            "type": TYPES[(i * 5) % len(TYPES)],
            "ts": (t0 + timedelta(hours=7 * i + (i % 3))).isoformat(),
        }
        if event["type"] == "purchase":
            event["amount"] = 10.0 + 7 * i
        out.append(event)
    return out


def test_the_peer_computes_the_cores_features_of_the_default_lenses() -> None:
    config = default_config()
    store = FeatureStore(config.features, len(config.lenses))
    peer = PeerFeatures(config)
    acc: dict[str, float] = {}
    for event in _events(40):
        ev = parse_event(json.dumps(event).encode())
        t = store.to_seconds(ev.epoch)
        row = store.ingest(ev.customer_id, ev.event_id, event_kind(ev.type), t, ev.amount)
        ours = dict(zip(FEATURE_NAMES, store.vector(row, store.last_time(row)), strict=True))
        theirs = peer.vector(acc, peer.update(acc, event))
        for name, value in theirs.items():
            assert value == pytest.approx(ours[name], rel=1e-5, abs=1e-6), (event["event_id"], name)
    used = {f for lc in config.lenses for f in lc.features}
    assert used <= set(theirs)


class _State:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


def test_the_peer_step_keeps_state_per_customer_and_emits_each_change_once() -> None:
    step = peer_step(default_config())
    state = _State()
    changes = [step(event, state) for event in _events(30)]
    first = changes[0]
    assert [c["lens"] for c in first] == ["value", "engagement"] and all(c["from"] is None for c in first)
    segments = state.data["customer"]["segments"]
    last: dict[str, Any] = {}
    for batch in changes:
        for change in batch:
            assert change["from"] == last.get(change["lens"]) and change["to"] != change["from"]
            last[change["lens"]] = change["to"]
    assert last == segments


def test_capacity_writes_rows_consistent_with_its_measurements_and_a_report_section(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["--customers", "60", "--days", "3", "--max-events", "3000", "--vector-every", "1", "10", "--out", str(out)]
    assert capacity.main(argv) == 0
    result = json.loads((out / "capacity.json").read_text())
    m = result["data"]
    trainer = m["trainer_vectors_per_s"]
    assert set(trainer) == {"both lenses", "value", "engagement"} and all(v > 0 for v in trainer.values())
    groups = {r["metric"]: r["measured"] for r in result["rows"] if "largest group" in r["metric"]}
    for k in (1, 10):
        cpu = m["process_cpu_per_event"][str(k)]
        expected = math.floor(1 + trainer["both lenses"] * k * cpu)
        assert groups[f"vector_every={k}: largest group of full-speed processes"] == expected >= 1
    text = report.write_report(out, tmp_path / "RESULTS.md", plots=False).read_text()
    assert "## Capacity of shared mode" in text and "| 10 |" in text and "a trainer per lens" in text
