"""Process-wide garbage-collector settings, applied by the command-line entry points.

The pipeline allocates a few short-lived objects per event (the validated event,
its timestamp, strings). With CPython's default generation-0 threshold of 700
allocations a collection runs every few hundred events, and the older
generations' collections walk everything that start-up loaded and everything
the lenses hold. :func:`tune_gc` moves what exists at start-up into the
permanent generation (:func:`gc.freeze`: never scanned again) and raises the
generation-0 threshold, so collections are rare; reference cycles are still
collected. ``bench/replay_throughput.py`` measured the offline pipeline at about
90k events/s with the defaults and 105k events/s with these settings.

The Kafka consumer holds a whole poll of records (up to ``batch_size``, 20,000)
and their events alive while it processes them, so each generation-0
collection walks tens of thousands of live young objects: at a threshold of
50,000 the collector took 3.0-3.5 us of CPU per event of the consumer
(generations 0 and 1, 100k events of 10k customers, ``gc.callbacks``), at
500,000 about 0.4 us. Only cyclic garbage waits for a collection (the rest is
freed by reference counting), and the pipeline makes little of it.

Process-wide state: call it once, from ``__main__`` (like the logging configuration).
"""

from __future__ import annotations

import gc

__all__ = ["GEN0_THRESHOLD", "tune_gc"]

GEN0_THRESHOLD = 500_000
"""Allocations (net of deallocations) between two generation-0 collections."""


def tune_gc() -> None:
    """Freeze the objects alive now and raise the generation-0 threshold (see the module docstring)."""
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
