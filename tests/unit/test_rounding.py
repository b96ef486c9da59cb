"""round_half_even is Python's round(x, n), bit for bit, on random, halfway and extreme values."""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segmenter.rounding import round_half_even


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


def _same_as_python(values: list[float], ndigits: int) -> None:
    got = round_half_even(np.array(values, np.float64), ndigits).tolist()
    for v, g in zip(values, got, strict=True):
        want = round(v, ndigits)
        assert _bits(g) == _bits(want) or (math.isnan(g) and math.isnan(want)), (v, ndigits, g, want)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50), st.sampled_from([4, 6]))
def test_any_double(values: list[float], ndigits: int) -> None:
    _same_as_python(values, ndigits)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=50), st.sampled_from([4, 6]),
       st.integers(-3, 3))  # fmt: skip
def test_near_halfway(ks: list[int], ndigits: int, ulps: int) -> None:
    """Values at and a few units in the last place around k.5 / 10**n, where the product's rounding matters."""
    values = []
    for k in ks:
        v = (k + 0.5) / 10**ndigits
        for _ in range(abs(ulps)):
            v = math.nextafter(v, math.inf if ulps > 0 else -math.inf)
        values.append(v)
    _same_as_python(values, ndigits)


def test_known_cases_and_shape() -> None:
    values = [0.00015, 2.675, 1.00005, -0.00001, -0.0, 1e300, -1e17, 5e-324, 123456.78905, 0.5e-4]
    for many in (values, values * 10):  # Python's own round below 32 values, numpy's from there
        _same_as_python(many, 4)
        _same_as_python(many, 6)
    grid = np.array(values[:6], np.float64).reshape(2, 3)
    assert round_half_even(grid, 4).shape == (2, 3)


def test_fortran_ordered_input_is_rounded_like_python() -> None:
    """A column selection (``vals[:, [0, 1]]``) comes back in Fortran order: the values rounded by Python count too."""
    halfway = 6.80375  # just below 6.80375: round() gives 6.8037, numpy's rint(x * 1e4) 6.8038
    columns = np.full((40, 6), halfway)[:, [0, 2, 3]]
    assert columns.flags.f_contiguous and not columns.flags.c_contiguous
    got = round_half_even(columns, 4)
    assert got.tolist() == [[round(halfway, 4)] * 3] * 40
