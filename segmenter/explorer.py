"""The segment explorer: what the segments are, how big, and how their sizes move in event time.

Pure: the document is built from the lenses (or a replay snapshot) and a
bounded :class:`SizeHistory`; :func:`render_page` embeds it into one
self-contained HTML page (inline CSS and JS, no external scripts, fonts or
styles: it opens without network). The consumer serves the document as
``/segments`` and the page as ``/`` (:mod:`consumer.explorer`); ``segmenter
profile --html OUT.html SNAPSHOT`` writes the page for a snapshot or checkpoint.

The document::

    {"source": str, "live": bool, "watermark": ISO | null,
     "lenses": [{"name", "model_version", "features": [...], "customers",
                 "segments": [{"id", "name", "size", "profile": {"centroid", "z", ...}, "rule"}],
                 "history": [{"t": ISO, "sizes": {segment id: size}}]}]}

``profile`` is the segment's profile as lifecycle messages carry it (centroid
in original units, ``z`` in standard deviations of the population); ``rule`` is
the profile's rule when it has one, else null.

Examples
--------
>>> h = SizeHistory(max_points=4, step_s=10)
>>> for t in range(0, 100, 10):
...     h.add(float(t), {"value": {"value-1": t}})
>>> [p["sizes"]["value"]["value-1"] for p in h.points()]
[0, 40, 80, 90]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol

import orjson

from segmenter.lenses.naming import SegmentProfile

__all__ = ["ProfiledLens", "SizeHistory", "lens_sizes", "live_document", "render_page", "snapshot_document"]

_PLACEHOLDER = "/*__EXPLORER_DATA__*/null"


class ProfiledLens(Protocol):
    """What the explorer reads of a lens (:class:`segmenter.lenses.lens.Lens`)."""

    name: str
    feature_names: tuple[str, ...]
    model_version: int

    def profiles(self) -> list[SegmentProfile]:
        """Profiles of the live segments."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class SizeHistory:
    """Segment sizes per lens over event time, at most ``max_points`` points.

    A point is kept when event time moved at least ``step_s`` past the last
    kept one (a later sample replaces the newest point meanwhile, so the newest
    sizes are always there). When full, every other point is dropped and the
    step doubles: the whole span stays covered at a coarser resolution.
    """

    def __init__(self, max_points: int = 240, step_s: float = 3600.0) -> None:
        self.max_points = max(4, max_points)
        self.step_s = step_s
        self._points: list[tuple[float, dict[str, dict[str, int]]]] = []

    def __len__(self) -> int:
        return len(self._points)

    def add(self, t: float, sizes: Mapping[str, Mapping[str, int]]) -> None:
        """Record the sizes at event time ``t`` (epoch seconds).

        Earlier times than the newest point's are ignored; at the same time, the newest point's sizes are replaced.
        """
        copy = {lens: dict(s) for lens, s in sizes.items()}
        points = self._points
        if points and t < points[-1][0]:
            return
        if points and (t == points[-1][0] or (len(points) >= 2 and points[-1][0] - points[-2][0] < self.step_s)):
            points[-1] = (t, copy)
            return
        points.append((t, copy))
        if len(points) > self.max_points:
            self._points = [*points[:-1:2], points[-1]]
            self.step_s *= 2

    def points(self, lens: str | None = None) -> list[dict[str, Any]]:
        """``[{"t": ISO, "sizes": ...}]``: all lenses, or one lens's ``{segment id: size}``."""
        if lens is None:
            return [{"t": _iso(t), "sizes": s} for t, s in self._points]
        return [{"t": _iso(t), "sizes": s.get(lens, {})} for t, s in self._points]


def lens_sizes(lenses: Iterable[ProfiledLens]) -> dict[str, dict[str, int]]:
    """``{lens: {segment id: size}}`` of the live segments."""
    return {lens.name: {p.id: p.size for p in lens.profiles()} for lens in lenses}


def _segment(profile: SegmentProfile) -> dict[str, Any]:
    data = profile.as_dict()
    return {"id": profile.id, "name": profile.name, "size": profile.size, "profile": data, "rule": data.get("rule")}


def live_document(
    lenses: Sequence[ProfiledLens],
    history: SizeHistory,
    watermark: float | None,
    source: str = "live",
    live: bool = True,
) -> dict[str, Any]:
    """The explorer document of a running core's lenses."""
    out = []
    for lens in lenses:
        segments = [_segment(p) for p in lens.profiles()]
        out.append(
            {
                "name": lens.name,
                "model_version": lens.model_version,
                "features": list(lens.feature_names),
                "customers": sum(s["size"] for s in segments),
                "segments": segments,
                "history": history.points(lens.name),
            }
        )
    return {"source": source, "live": live, "watermark": None if watermark is None else _iso(watermark), "lenses": out}


def snapshot_document(lines: Iterable[Mapping[str, Any]], source: str) -> dict[str, Any]:
    """The explorer document of a ``replay --snapshot`` file's decoded lines.

    A segment's centroid is the mean of its customers' features, ``z`` that mean
    in standard deviations of all customers; the history is the one point the
    snapshot is. Customers without a segment in a lens are not counted in it.
    """
    members: dict[str, dict[str, list[Mapping[str, float]]]] = defaultdict(lambda: defaultdict(list))
    names: dict[tuple[str, str], str] = {}
    everyone: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for line in lines:
        for lens, ref in line["segments"].items():
            feats = line.get("features", {}).get(lens, {})
            everyone[lens].append(feats)
            if ref:
                members[lens][ref["id"]].append(feats)
                names[(lens, ref["id"])] = ref["name"]
    lenses = []
    for lens in sorted(everyone):
        features = sorted({f for feats in everyone[lens] for f in feats})
        mean, std = _moments(everyone[lens], features)
        segments = []
        for sid, rows in sorted(members[lens].items(), key=lambda kv: (-len(kv[1]), kv[0])):
            centroid = dict(zip(features, _moments(rows, features)[0], strict=True))
            z = {f: (centroid[f] - m) / s if s > 0 else 0.0 for f, m, s in zip(features, mean, std, strict=True)}
            profile = SegmentProfile(segment=0, id=sid, name=names[(lens, sid)], size=len(rows), centroid=centroid, z=z)
            segments.append(_segment(profile))
        sizes = {s["id"]: s["size"] for s in segments}
        lenses.append(
            {
                "name": lens,
                "model_version": None,
                "features": features,
                "customers": sum(sizes.values()),
                "segments": segments,
                "history": [{"t": None, "sizes": sizes}],
            }
        )
    return {"source": source, "live": False, "watermark": None, "lenses": lenses}


def _moments(rows: Sequence[Mapping[str, float]], features: Sequence[str]) -> tuple[list[float], list[float]]:
    n = max(1, len(rows))
    mean = [sum(float(r.get(f, 0.0)) for r in rows) / n for f in features]
    var = [sum((float(r.get(f, 0.0)) - m) ** 2 for r in rows) / n for f, m in zip(features, mean, strict=True)]
    return mean, [math.sqrt(v) for v in var]


def render_page(document: Mapping[str, Any] | None) -> str:
    """The explorer page with ``document`` embedded (``None``: the page loads ``segments`` itself)."""
    template = resources.files("segmenter").joinpath("templates/explorer.html").read_text(encoding="utf-8")
    data = "null" if document is None else orjson.dumps(document).decode()
    # inside <script>: a "</" in a segment name must not close the element
    return template.replace(_PLACEHOLDER, data.replace("</", "<\\/"), 1)
