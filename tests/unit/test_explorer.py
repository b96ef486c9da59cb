"""The segment explorer's document, its bounded history, the page and the HTTP routes."""

from __future__ import annotations

import itertools
import re
import urllib.request

import orjson

from consumer.metrics import Health, Metrics, MetricsServer, default_routes
from segmenter.explorer import SizeHistory, render_page, snapshot_document
from tests.unit.explorer_support import explored


def test_history_stays_bounded_and_spans_the_whole_event_time() -> None:
    history = SizeHistory(max_points=50, step_s=60)
    for t in range(0, 100_000, 7):
        history.add(float(t), {"value": {"value-1": t}})
    points = history.points("value")
    sizes = [p["sizes"]["value-1"] for p in points]
    assert len(points) <= 50
    assert sizes[0] == 0 and sizes[-1] == 99_995, "first and newest sample kept"
    assert sizes == sorted(sizes)
    gaps = [b - a for a, b in itertools.pairwise(sizes[:-1])]  # the newest point is the latest sample
    assert min(gaps) >= 60, "kept points are at least one step apart"
    history.add(5.0, {"value": {"value-1": -1}})
    assert history.points("value")[-1]["sizes"]["value-1"] == 99_995, "an older time than the newest is ignored"


def test_document_is_the_live_segments_with_profiles_and_history() -> None:
    seg, explorer = explored()
    doc = orjson.loads(explorer.document())
    assert [lens["name"] for lens in doc["lenses"]] == [lens.name for lens in seg.lenses]
    assert doc["live"] is True and doc["watermark"].startswith("2026-02")
    for lens, data in zip(seg.lenses, doc["lenses"], strict=True):
        profiles = lens.profiles()
        assert profiles, "the run must have segments"
        assert [(s["id"], s["name"], s["size"]) for s in data["segments"]] == [(p.id, p.name, p.size) for p in profiles]
        for s, p in zip(data["segments"], profiles, strict=True):
            assert s["profile"]["centroid"] == {k: round(v, 6) for k, v in p.centroid.items()}
            assert set(s["profile"]["z"]) == set(lens.feature_names)
            assert s["rule"] == s["profile"].get("rule")
        assert data["customers"] == sum(p.size for p in profiles)
        history = data["history"]
        assert len(history) > 5
        assert history[-1]["sizes"] == {p.id: p.size for p in profiles}


def test_snapshot_document_means_and_z() -> None:
    lines = [
        {
            "customer_id": f"c{i}",
            "segments": {"value": {"id": f"value-{1 + i % 2}", "name": f"n{i % 2}"}},
            "features": {"value": {"spend": float(i % 2) * 10}},
        }
        for i in range(10)
    ]
    doc = snapshot_document(lines, "snap")
    [lens] = doc["lenses"]
    by_id = {s["id"]: s for s in lens["segments"]}
    assert by_id["value-2"]["profile"]["centroid"] == {"spend": 10.0}
    assert by_id["value-2"]["profile"]["z"] == {"spend": 1.0}
    assert by_id["value-1"]["profile"]["z"] == {"spend": -1.0}
    assert lens["customers"] == 10


def test_page_is_self_contained_and_embeds_the_document_safely() -> None:
    doc = {
        "source": "x",
        "live": False,
        "watermark": None,
        "lenses": [
            {
                "name": "v",
                "model_version": 1,
                "features": [],
                "customers": 0,
                "history": [],
                "segments": [{"id": "v-1", "name": "</script><b>", "size": 0, "profile": {}, "rule": None}],
            }
        ],
    }
    page = render_page(doc)
    assert page.count("</script>") == 1, "a name must not close the script element"
    assert "<\\/script><b>" in page
    assert not re.search(r"<script[^>]+src=|<link\b|@import|url\(|https?://(?!www\.w3\.org/2000/svg)", page)
    assert render_page(None).count("const EMBEDDED = null;") == 1


def test_the_http_server_serves_segments_and_the_page() -> None:
    _, explorer = explored()
    metrics, health = Metrics(), Health()
    server = MetricsServer({**default_routes(metrics, health), **explorer.routes()}, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/segments", timeout=5) as reply:
            assert reply.headers["Content-Type"] == "application/json"
            assert reply.read() == explorer.document()
        with urllib.request.urlopen(f"{base}/?refresh=1", timeout=5) as reply:
            assert reply.headers["Content-Type"].startswith("text/html")
            page = reply.read().decode()
        assert "Segment explorer" in page and orjson.loads(explorer.document())["lenses"][0]["name"] in page
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as reply:
            assert b"segmenter_events_in_total" in reply.read()
    finally:
        server.stop()


def test_a_sample_at_the_newest_time_replaces_its_sizes() -> None:
    history = SizeHistory(step_s=60)
    history.add(0.0, {"value": {"value-1": 1}})
    history.add(100.0, {"value": {"value-1": 2}})
    history.add(100.0, {"value": {"value-1": 3}})
    assert [p["sizes"]["value-1"] for p in history.points("value")] == [1, 3]
