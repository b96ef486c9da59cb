"""The explorer page rendered by real headless Chromium: a screenshot, and the rendered DOM's content."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import orjson

from segmenter.__main__ import main as segmenter_main
from segmenter.explorer import render_page
from tests.unit.explorer_support import check_lens, dump_dom, explored, rendered_lenses, screenshot, table_rows, text


def test_live_document_with_history_renders(tmp_path: Path) -> None:
    _, explorer = explored()
    doc = {**orjson.loads(explorer.document()), "live": False}
    page = tmp_path / "explorer.html"
    page.write_text(render_page(doc), encoding="utf-8")
    dom = dump_dom(page.as_uri())
    cards = rendered_lenses(dom)
    assert list(cards) == [lens["name"] for lens in doc["lenses"]]
    for lens in doc["lenses"]:
        check_lens(cards[lens["name"]], lens)
        assert len(re.findall(r"<path d=\"M", cards[lens["name"]])) >= len(lens["segments"]), "lines over time"
    screenshot(page.as_uri(), "explorer-history.png")


def test_profile_html_of_a_snapshot_renders(tmp_path: Path) -> None:
    seg, _ = explored()
    snapshot = tmp_path / "snapshot.jsonl"
    snapshot.write_bytes(b"".join(orjson.dumps(v.as_json()) + b"\n" for v in seg.customer_views()))
    out = tmp_path / "profile.html"
    assert segmenter_main(["profile", "--html", str(out), str(snapshot)]) == 0
    dom = dump_dom(out.as_uri())
    cards = rendered_lenses(dom)
    expected: dict[str, Counter[tuple[str, str]]] = {}
    for view in seg.customer_views():
        for lens, ref in view.segments.items():
            if ref is not None:
                expected.setdefault(lens, Counter())[(ref.id, ref.name)] += 1
    assert set(cards) == set(expected)
    for name, card in cards.items():
        rows = table_rows(card)
        assert set(rows) == {sid for sid, _ in expected[name]}
        for (sid, seg_name), size in expected[name].items():
            row = " ".join(text(rows[sid]).split())
            assert seg_name in row and f"{size:,}" in row, row
        assert len(re.findall(r'<rect [^>]*class="series"', card)) == len(rows), "one bar per segment"
    screenshot(out.as_uri(), "explorer-snapshot.png")
