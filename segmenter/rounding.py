"""Python's ``round(x, ndigits)`` over a whole array at once, with the same results bit for bit.

``round(x, n)`` is correctly rounded: it gives the double nearest to ``k / 10**n``,
``k`` the integer nearest to the exact ``x * 10**n`` (ties to even). numpy's
``rint(x * 10**n) / 10**n`` computes the same ``k`` except where the product's
own rounding moved it across a half-integer; the division of two exact doubles
is then correctly rounded too. So :func:`round_half_even` takes numpy's result
everywhere except the few values whose scaled product lies within a safety band
of a half-integer, or is too large (or not finite) for the argument above, and
rounds those with Python.

Examples
--------
>>> values = [0.12345, 2.5e-5, -1.00005]
>>> round_half_even(np.array(values), 4).tolist() == [round(v, 4) for v in values]
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["round_half_even"]

_BAND = 2.0**-48
"""Scaled products this close (relative: 16 units in the last place) to a half-integer are rounded by Python."""
_SMALL = 32
"""Fewer values than this are rounded by Python directly (numpy's per-call overhead would dominate)."""
_LARGEST = 2.0**50
"""Scaled products beyond this (in magnitude) are rounded by Python."""


def round_half_even(x: np.ndarray[Any, np.dtype[np.float64]], ndigits: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """``round(v, ndigits)`` of every element of ``x`` (any shape), as a new float64 array.

    Parameters
    ----------
    x
        The values; NaN and infinities come back as Python's ``round`` returns them (unchanged).
    ndigits
        Decimal places, ``0 <= ndigits <= 15``.
    """
    x = np.asarray(x, np.float64, order="C")  # in C order: the fixes below write through ``out.reshape(-1)``
    if x.size < _SMALL:
        return np.array([round(v, ndigits) for v in x.reshape(-1).tolist()], np.float64).reshape(x.shape)
    scale = 10.0**ndigits
    with np.errstate(invalid="ignore", over="ignore"):
        p = x * scale
        out = np.rint(p) / scale
        dist = np.abs(np.abs(p - np.floor(p)) - 0.5)
        risky = ~(dist > _BAND * np.maximum(1.0, np.abs(p))) | ~(np.abs(p) < _LARGEST)
    if risky.any():
        flat_x, flat_out = x.reshape(-1), out.reshape(-1)
        for i in np.flatnonzero(risky.reshape(-1)).tolist():
            flat_out[i] = round(float(flat_x[i]), ndigits)
    return out
