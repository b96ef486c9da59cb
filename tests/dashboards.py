"""The Grafana dashboard of the compose stack, and the metric names a /metrics exposition really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "segmenter.json"
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("_sum", "_count", "_created"),
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template-variable queries."""
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    out += [v["definition"] for v in board.get("templating", {}).get("list", []) if v.get("type") == "query"]
    return out


def metric_names(expressions: list[str]) -> set[str]:
    """The segmenter metric names the expressions use."""
    return {name for expr in expressions for name in re.findall(r"\b(segmenter_[a-z0-9_]+)\b", expr)}


def exported_names(exposition: str) -> set[str]:
    """Every series name an exposition declares (``# TYPE``) or has samples of."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def sampled_names(exposition: str) -> set[str]:
    """Series names with at least one sample in the exposition."""
    return {s.name for family in text_string_to_metric_families(exposition) for s in family.samples}
