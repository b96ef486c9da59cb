"""A real core run in batches with the consumer's :class:`Explorer` sampling it, and headless Chromium."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from consumer.explorer import Explorer
from segmenter.explorer import SizeHistory
from segmenter.pipeline import Segmenter
from tests.unit.eventgen import make_events, to_events
from tests.unit.test_pipeline import small_config

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / ".artifacts"  # listed at the end of the run by tests/conftest.py


@cache
def explored() -> tuple[Segmenter, Explorer]:
    """120 customers over 40 days through the core, 100 events per "batch", sampled after each."""
    seg = Segmenter(small_config())
    explorer = Explorer(history=SizeHistory(max_points=60, step_s=6 * 3600))
    events = to_events(make_events(120, 40, seed=5))
    for start in range(0, len(events), 100):
        seg.process_batch(events[start : start + 100], [0] * len(events[start : start + 100]))
        explorer.sample(seg)
    explorer.refresh(seg)
    return seg, explorer


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed: `apt-get install -y chromium` (`make test` installs it)"
    return path


def _run(url: str, *extra: str) -> str:
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=1360,1700",
        "--virtual-time-budget=4000",
        *extra,
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(url: str) -> str:
    """The DOM after the page's scripts ran."""
    return _run(url, "--dump-dom")


def screenshot(url: str, name: str) -> Path:
    """A PNG of the rendered page under tests/.artifacts/ (its path is printed for the test log)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    path.unlink(missing_ok=True)
    _run(url, f"--screenshot={path}")
    assert path.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    print(f"explorer screenshot: {path}")
    return path


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def rendered_lenses(dom: str) -> dict[str, str]:
    """Each lens card's rendered HTML, by lens name."""
    assert 'data-rendered="true"' in dom, "the page's script did not finish rendering"
    return dict(re.findall(r'<section class="card lens" data-lens="([^"]+)">(.*?)</section>', dom, re.S))


def table_rows(card: str) -> dict[str, str]:
    """The segment table's rows (before the heat map), by segment id."""
    table = card.partition('class="heatmap"')[0]
    return dict(re.findall(r'<tr data-segment="([^"]+)">(.*?)</tr>', table, re.S))


def check_lens(card: str, lens: dict[str, Any]) -> None:
    rows = table_rows(card)
    assert list(rows) == [s["id"] for s in lens["segments"]]
    for s in lens["segments"]:
        row = rows[s["id"]]
        assert f'<span class="sname">{html.escape(s["name"], quote=False)}</span>' in row, row
        size = re.search(r'<td class="num size">([\d,]+)<', row)
        assert size and size.group(1) == f"{s['size']:,}", row
    svg = re.search(r'<svg[^>]*class="sizes".*?</svg>', card, re.S)
    assert svg, "no size chart"
    series = set(re.findall(r'data-segment="([^"]+)"[^>]*class="series"', svg.group(0)))
    assert {s["id"] for s in lens["segments"]} <= series, "every live segment is drawn"
    heat = card.split('class="heatmap"')[1]
    assert len(re.findall(r'<td class="cell"', heat)) == len(lens["segments"]) * len(lens["features"])
