"""Prints the numba functions a consumer-like stream still loads or compiles after :func:`warm_up` (run alone)."""

from __future__ import annotations

import gc
import random
from datetime import UTC, datetime, timedelta

import orjson
from numba.core.registry import CPUDispatcher

from consumer.warmup import warm_up
from segmenter.config import default_config
from segmenter.events import parse_event
from segmenter.pipeline import Segmenter

TYPES = ["session_start", "page_view", "product_view", "add_to_cart", "purchase", "email_open", "email_click"]


def overloads() -> dict[str, int]:
    found = (o for o in gc.get_objects() if isinstance(o, CPUDispatcher))
    return {f"{d.py_func.__module__}.{d.py_func.__qualname__}": len(d.overloads) for d in found}


def main() -> None:
    config = default_config()
    warm_up(lambda: Segmenter(config, None))
    before = overloads()
    rnd = random.Random(3)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    events = []
    for i in range(30_000):  # the events of bench/consumer_throughput.py: 3,000 customers, 30 s apart
        kind = rnd.choice(TYPES)
        event: dict[str, object] = {"event_id": f"e{i}", "customer_id": f"c{rnd.randrange(3000)}", "type": kind,
                                    "ts": (start + timedelta(seconds=30 * i)).isoformat()}  # fmt: skip
        if kind == "purchase":
            event["amount"] = round(rnd.uniform(5, 300), 2)
        events.append(parse_event(orjson.dumps(event)))
    core = Segmenter(config, None)
    for at in range(0, len(events), 2000):
        core.process_batch(events[at : at + 2000], [0] * len(events[at : at + 2000]))
    after = overloads()
    print(orjson.dumps(sorted(name for name, n in after.items() if n != before.get(name, 0))).decode())


if __name__ == "__main__":
    main()
