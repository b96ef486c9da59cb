"""JSON Schemas (draft 2020-12) of the published contracts, generated from the pydantic models.

``segmenter schema`` prints them; docs/schemas/ holds them as files
(``segmenter schema --out docs/schemas``; a test checks the files are
current). Five documents:

``customer_event``
    The input event (:class:`~segmenter.events.CustomerEvent`), with the rule the
    model checks in code (``amount`` is required for ``purchase`` and ``refund``)
    spelled out as an ``if``/``then``.
``segment_change``, ``campaign_trigger``, ``segment_lifecycle``
    The output messages (:mod:`segmenter.outputs`) as published: every field is
    present (null where the model allows it) and ``emitted_at`` is stamped.
``membership_record``
    A value of the membership topic (:class:`~segmenter.membership.MembershipRecord`).

Examples
--------
>>> docs = schemas()
>>> sorted(docs)
['campaign_trigger', 'customer_event', 'membership_record', 'segment_change', 'segment_lifecycle']
>>> docs["segment_change"]["properties"]["kind"]["const"]
'segment_change'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from segmenter.events import MONETARY_TYPES, CustomerEvent
from segmenter.membership import MembershipRecord
from segmenter.outputs import CampaignTrigger, SegmentChange, SegmentLifecycle

__all__ = ["DRAFT", "NAMES", "render", "schemas", "write_files"]

DRAFT = "https://json-schema.org/draft/2020-12/schema"

_OUTPUTS: dict[str, type[BaseModel]] = {
    "segment_change": SegmentChange,
    "campaign_trigger": CampaignTrigger,
    "segment_lifecycle": SegmentLifecycle,
}
_DATE_TIME = {"type": "string", "format": "date-time"}
NAMES = tuple(sorted(("customer_event", *_OUTPUTS, "membership_record")))
"""The names of :func:`schemas`, without generating them (the command line's choices)."""


def _titled(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "$schema": DRAFT,
        "title": name,
        "description": description,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def _event_schema() -> dict[str, Any]:
    schema = CustomerEvent.model_json_schema(mode="validation")
    schema["allOf"] = [
        {
            "if": {"properties": {"type": {"enum": sorted(t.value for t in MONETARY_TYPES)}}, "required": ["type"]},
            "then": {"required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0}}},
        }
    ]
    return _titled(
        "customer_event",
        schema,
        "An input event (JSON, UTF-8; Kafka key = customer_id). "
        "Unknown top-level fields are rejected; free-form data goes under 'properties'.",
    )


def _published(name: str, model: type[BaseModel]) -> dict[str, Any]:
    """A model's schema as its messages are published: every field present, ``emitted_at`` stamped."""
    schema = model.model_json_schema(mode="serialization")
    props = schema["properties"]
    for key in ("emitted_at", "event_ts", "updated_at"):
        if key in props:
            props[key] = {**_DATE_TIME, "title": props[key].get("title", key)}
    for prop in props.values():
        prop.pop("default", None)
    schema["required"] = list(props)
    doc = (model.__doc__ or name).strip().split("\n\n")[0]
    return _titled(name, schema, doc)


def schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by name (the names of the files in docs/schemas/)."""
    out = {"customer_event": _event_schema()}
    out.update({name: _published(name, model) for name, model in _OUTPUTS.items()})
    membership = _published("membership_record", MembershipRecord)
    membership["$defs"]["MembershipEntry"]["properties"]["since"] = {**_DATE_TIME, "title": "Since"}
    out["membership_record"] = membership
    return dict(sorted(out.items()))


def render(schema: dict[str, Any]) -> bytes:
    """One schema as the file holds it: indented JSON, keys in generation order, a final newline."""
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n"


def write_files(directory: Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every schema into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_bytes(render(schema))
        paths.append(path)
    return paths
