"""The compiled population standardisation equals numpy's mean, std and scaling bit for bit, in every layout."""

from __future__ import annotations

import numpy as np
import pytest

from segmenter.lenses import OnlineScaler
from segmenter.lenses.population import standardise
from segmenter.lenses.scaling import ScalerSnapshot

MIN_STD = 1e-4


def _numpy(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ScalerSnapshot.of_population and scale_matrix computed before: numpy along the rows."""
    mean = t.mean(axis=0)
    std = t.std(axis=0)
    std = np.where(std > MIN_STD, std, 1.0)
    return mean, std, (t - mean) / std


def _layouts(a: np.ndarray) -> dict[str, np.ndarray]:
    return {"C": np.ascontiguousarray(a), "F": np.asfortranarray(a), "strided rows": a[::3],
            "reversed columns": np.asfortranarray(a)[:, ::-1]}  # fmt: skip


@pytest.mark.parametrize("n", [1, 7, 8, 130, 1_000, 8_193, 70_001])
@pytest.mark.parametrize("d", [1, 2, 5])
def test_equals_numpy_bit_for_bit(n: int, d: int) -> None:
    rng = np.random.default_rng([n, d])
    a = rng.lognormal(0.0, 3.0, (n, d)) * rng.choice([-1.0, 0.0, 1.0], (n, d))
    a[:, 0] = 2.5 if d > 1 else a[:, 0]  # a constant column (std 1.0)
    for layout, t in _layouts(a).items():
        mean, std, scaled = standardise(t, MIN_STD)
        want_mean, want_std, want_scaled = _numpy(t)
        assert np.array_equal(mean, want_mean) and np.array_equal(std, want_std), layout
        assert np.array_equal(scaled, want_scaled), layout
        assert scaled.flags.f_contiguous == want_scaled.flags.f_contiguous, layout  # numpy's order="K"


def test_refinement_space_unchanged() -> None:
    """The lens's path (the pipeline hands over a Fortran-ordered column selection) gives numpy's snapshot."""
    rng = np.random.default_rng(1)
    mat = rng.lognormal(2.0, 2.0, (20_000, 6))[:, [0, 2, 3, 5]]
    sc = OnlineScaler(["recency_days", "orders", "net_spend", "conversion"])
    t = sc.transform_matrix(mat)
    space, xs = ScalerSnapshot.population_scaled(sc.heavy, t)
    mean, std, scaled = _numpy(t)
    assert space.mean == tuple(mean.tolist()) and space.std == tuple(std.tolist())
    assert np.array_equal(xs, scaled) and np.array_equal(xs, space.scale_matrix(t))
    assert ScalerSnapshot.of_population(sc.heavy, t) == space


def test_transform_matrix_is_signed_log1p_bit_for_bit() -> None:
    rng = np.random.default_rng(2)
    raw = rng.lognormal(0.0, 4.0, (5_000, 3)) * rng.choice([-1.0, 0.0, 1.0], (5_000, 3))
    raw[0, 1] = -0.0
    sc = OnlineScaler(["orders", "conversion", "net_spend"])
    got = sc.transform_matrix(raw)
    want = raw.copy()
    want[:, [0, 2]] = np.sign(raw[:, [0, 2]]) * np.log1p(np.abs(raw[:, [0, 2]]))
    assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_transform_matrix_layouts_and_checks(order: str) -> None:
    rng = np.random.default_rng(3)
    raw = rng.lognormal(0.0, 4.0, (3_000, 4)) * rng.choice([-1.0, 0.0, 1.0], (3_000, 4))
    raw = {"C": raw, "F": np.asfortranarray(raw), "strided": raw[::2]}[order]
    sc = OnlineScaler(["orders", "conversion", "net_spend", "aov"])
    got = sc.transform_matrix(raw)
    want = np.array(raw, copy=True)
    want[:, [0, 2, 3]] = np.sign(want[:, [0, 2, 3]]) * np.log1p(np.abs(want[:, [0, 2, 3]]))
    assert np.array_equal(got, want) and got.flags.f_contiguous == want.flags.f_contiguous
    assert np.array_equal(got[:, 1], raw[:, 1])  # a column without log1p is copied as it is
    for bad in (np.nan, np.inf, -np.inf):
        broken = np.array(raw, copy=True)
        broken[-1, 1] = bad  # a column without log1p
        with pytest.raises(ValueError, match="non-finite"):
            sc.transform_matrix(broken)
