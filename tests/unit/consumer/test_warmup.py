"""The start-up warm-up of the compiled core."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from consumer.warmup import WARM_UP_EVENTS, warm_up, warm_up_stream
from segmenter.config import SegmenterConfig, default_config
from segmenter.events import CustomerEvent, parse_event
from segmenter.lenses.scaling import signed_expm1, signed_log1p
from segmenter.outputs import SegmentLifecycle
from segmenter.pipeline import BatchResult, Segmenter


class _Lens:
    def __init__(self) -> None:
        self.reads = 0

    def profiles(self) -> Sequence[object]:
        self.reads += 1
        return []


class _Recording:
    def __init__(self) -> None:
        self.batches: list[tuple[list[CustomerEvent], list[int | None]]] = []
        self.lenses = [_Lens(), _Lens()]
        self.quality_reads = 0

    def lens_quality(self) -> dict[str, object]:
        self.quality_reads += 1
        return {}

    def process_batch(self, events: Sequence[CustomerEvent], sources: Sequence[int | None]) -> BatchResult:
        self.batches.append((list(events), list(sources)))
        return BatchResult([], [])


def test_warm_up_runs_its_events_then_the_stream_through_one_fresh_core() -> None:
    cores: list[_Recording] = []

    def make() -> _Recording:
        cores.append(_Recording())
        return cores[-1]

    stream = warm_up_stream(customers=10, events=1200)
    assert warm_up(make, stream) >= 0
    assert len(cores) == 1
    (events, sources), *rest = cores[0].batches
    assert [e.event_id for e in events] == ["warm-up-1", "warm-up-2"]
    assert len({e.customer_id for e in events}) == 1 and sources == [0] * len(WARM_UP_EVENTS)
    assert [len(batch) for batch, _ in rest] == [500, 500, 200]
    assert [e for batch, _ in rest for e in batch] == stream
    assert cores[0].quality_reads == 1 and [lens.reads for lens in cores[0].lenses] == [1, 1]  # then what is lazy


def test_the_warm_up_stream_is_valid_spans_days_and_the_real_core_takes_it() -> None:
    stream = warm_up_stream()
    assert stream == warm_up_stream()  # deterministic
    assert len({e.customer_id for e in stream}) == 1000 and len({e.event_id for e in stream}) == len(stream)
    assert stream[-1].epoch - stream[0].epoch > 7 * 86_400  # a weekly refinement, daily re-scoring
    core = Segmenter(default_config())
    warm_up(lambda: core)
    stats = core.stats()
    assert stats.events == len(WARM_UP_EVENTS) + len(stream) and stats.late == stats.duplicates == 0
    assert stats.customers == 1001 and sum(stats.changes.values()) > 0  # the lenses warmed up and moved customers


def test_after_the_warm_up_a_real_stream_loads_no_more_compiled_code() -> None:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-m", "tests.unit.consumer.warmup_coverage"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), "OPENBLAS_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # each would cost its first batch a load or compile


def test_the_warm_up_runs_with_a_short_lens_warm_up_too() -> None:
    """Lenses ready after 200 vectors refine on a population whose first engagement feature barely varies.

    Scaled by that std (about 1e-6), a center 0.1 away went to 10^5 and overflowed expm1 when named: the
    consumer stopped at start-up (the integration tests' config; any user's short warm-up).
    """
    data = default_config().model_dump()
    for lens in data["lenses"]:
        lens["warmup"] = 200
    core = Segmenter(SegmenterConfig.model_validate(data))
    first = [parse_event(raw) for raw in WARM_UP_EVENTS]
    core.process_batch(first, [0] * len(first))
    stream = warm_up_stream()
    centroids = []
    for at in range(0, len(stream), 500):
        result = core.process_batch(stream[at : at + 500], [0] * len(stream[at : at + 500]))
        centroids += [m.profile["centroid"] for m in result.outputs if isinstance(m, SegmentLifecycle) and m.profile]
        for lens in core.lenses:
            if lens.snapshot is not None and lens.registry.live():
                scaled = np.asarray(lens.registry.scaled_centers(lens.registry.live(), lens.snapshot))
                assert np.abs(scaled).max() < 1e3, (lens.name, lens.snapshot)  # centers near the customers
    assert centroids  # segments were born, renamed or refined
    assert all(math.isfinite(v) and abs(v) < 1e6 for c in centroids for v in c.values())


def test_signed_expm1_saturates_instead_of_overflowing() -> None:
    assert math.isfinite(signed_expm1(1e4)) and math.isfinite(signed_expm1(-1e4))
    assert signed_expm1(signed_log1p(12.5)) == pytest.approx(12.5)
