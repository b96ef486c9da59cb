"""Shared fixtures for the lens tests: per-algorithm parameters and blob streams."""

from __future__ import annotations

from typing import Any

import numpy as np

from segmenter.lenses import Lens, LensConfig

FEATURES = ["a", "b", "c"]

# Parameters that make every algorithm find well-separated blobs in scaled space.
PARAMS: dict[str, dict[str, Any]] = {
    "kmeans": {"n_clusters": 4, "halflife": 0.1},
    "streamkmeans": {"n_clusters": 4, "chunk_size": 20, "halflife": 0.1},
    "denstream": {
        "decaying_factor": 0.01,
        "beta": 0.5,
        "mu": 3,
        "epsilon": 0.5,
        "n_samples_init": 100,
        "stream_speed": 50,
    },
    "dbstream": {
        "clustering_threshold": 0.6,
        "fading_factor": 0.001,
        "cleanup_interval": 50,
        "intersection_factor": 0.1,
        "minimum_weight": 2,
    },
    "clustream": {"n_macro_clusters": 4, "max_micro_clusters": 20, "time_gap": 100, "halflife": 0.1},
}
ALGOS = sorted(PARAMS)

BLOBS = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 6.0]])


def config(algorithm: str, **overrides: Any) -> LensConfig:
    base: dict[str, Any] = {
        "name": "t",
        "features": FEATURES,
        "algorithm": algorithm,
        "params": PARAMS[algorithm],
        "warmup": 200,
        "learn_every": 1,
        "batch_size": 16,
        "refresh_every": 200,
        "match_threshold": 1.0,
    }
    base.update(overrides)
    return LensConfig(**base)


def make_lens(algorithm: str, seed: int = 0, **overrides: Any) -> Lens:
    return Lens(config(algorithm, **overrides), seed=seed)


def blobs(n: int, seed: int = 0, centers: np.ndarray = BLOBS, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points around ``centers`` (features a, b, c are not heavy-tailed: linear units)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(centers), n)
    return centers[labels] + rng.normal(0.0, spread, (n, centers.shape[1])), labels


def feed(lens: Lens, X: np.ndarray) -> list[Any]:
    out: list[Any] = []
    for x in X:
        out += lens.observe(x)
    return out
