"""The shared stability contract of every lens algorithm (in the manner of river's ``test_estimators.py``).

Every algorithm goes through the same machinery: online model, weighted Lloyd
steps seeded from the live segments at each refinement, stable ids. On a
stationary population the segments keep their ids across refreshes and
refinements (and through a slow drift), births stay bounded, and a lens
restored from its state in the middle continues exactly like the original.

The stream is the hard case for a summarising model (DenStream, DBSTREAM,
CluStream): one group of customers acts 200 times less often than the others,
so the model's faded micro-clusters hardly ever cover it while the
population, which every refinement sees, holds as many of them as of any
other group; and within every group the customers on one side act more often,
so the summary's centers are off the population's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from segmenter import codec
from segmenter.lenses import Lens

from .helpers import ALGOS, BLOBS, blobs, config

pytestmark = pytest.mark.timeout(120)

RARE = 3
"""The blob whose customers act rarely."""
RARE_RATE = 1.0 / 200.0
BUSY_SIDE = 4.0
"""Within each blob, customers on the positive side of the first feature act this many times more often."""
DRIFT = np.array([0.0, 1.0, 0.0])
"""Direction of the slow drift of the last phases (well below a match threshold per refinement)."""
PHASE = 2000
"""Observations between two refinements (10 refreshes at ``refresh_every=200``)."""


def _population() -> tuple[np.ndarray, np.ndarray]:
    """800 customers, about 200 per blob; the event stream draws them at their blob's rate."""
    return blobs(800, seed=4)


def _stream(population: np.ndarray, labels: np.ndarray, n: int, seed: int, drift: float) -> np.ndarray:
    """``n`` observations drawn at the customers' rates; the whole population slides by ``drift`` along them."""
    side = population[:, 0] > BLOBS[labels, 0]
    rate = np.where(labels == RARE, RARE_RATE, 1.0) * np.where(side, BUSY_SIDE, 1.0)
    rng = np.random.default_rng(seed)
    slide = np.outer(np.linspace(0.0, drift, n), DRIFT)
    return population[rng.choice(len(population), size=n, p=rate / rate.sum())] + slide


def _phase(lens: Lens, stream: np.ndarray, population: np.ndarray) -> list[Any]:
    """Observe ``stream``, then refine on the whole population.

    Returns the messages, the segment centers after each refresh, and last the segments of the blobs' centers.
    """
    out: list[Any] = []
    version = lens.model_version
    for x in stream:
        out += [m.model_dump() for m in lens.observe(x)]
        if lens.model_version != version:  # a refresh: where the segments are now
            version = lens.model_version
            out.append(lens.kernel_view()[:2])
    out += [m.model_dump() for m in lens.refine(population)]
    shift = population.mean(axis=0) - _population()[0].mean(axis=0)
    out.append([lens.assign(p + shift, None, 0).segment for p in BLOBS])
    return out


@pytest.mark.parametrize("algorithm", ALGOS)
def test_stationary_population_keeps_ids_births_bounded_state_round_trips(algorithm: str) -> None:
    population, labels = _population()
    cfg = config(algorithm)
    lens = Lens(cfg, seed=0)
    first = _phase(lens, population[np.random.default_rng(5).permutation(len(population))], population)
    ids = first[-1]
    assert len(set(ids)) == len(BLOBS), f"{algorithm}: the first refinement should give each blob a segment"
    live = lens.registry.live()

    restored: Lens | None = None
    for phase, drift in enumerate((0.0, 0.0, 0.4, 0.4)):
        if phase == 1:  # restore from the state in the middle of the run, after refreshes and a refinement
            restored = Lens(cfg, seed=0)
            restored.load_state(codec.decode(codec.encode("lens", 1, lens.state()), "lens", 1))
        stream = _stream(population, labels, PHASE, seed=10 + phase, drift=drift)
        population = population + drift * DRIFT
        out = _phase(lens, stream, population)
        assert out[-1] == ids, f"{algorithm}: phase {phase} moved a blob to another segment"
        assert lens.registry.live() == live, f"{algorithm}: phase {phase} retired or added segments"
        if restored is not None:
            assert _phase(restored, stream, population) == out, f"{algorithm}: the restored lens diverged"
    ever = len(lens.registry.segments)
    assert ever <= 2 * len(live) + 2, f"{algorithm}: {ever} segments born for {len(live)} live"
