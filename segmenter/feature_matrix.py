"""Many customers' features at given times in one compiled pass: :meth:`FeatureStore.matrix` and ``vectors_at``.

:func:`fill` writes only the feature columns asked for (a refinement tick needs
the ready lenses' columns, not all of :data:`~segmenter.features.FEATURE_NAMES`),
row by row, without the float64 copies of the store's columns and the dozen
whole-column temporaries of a numpy pass.

The decay factors come in computed (:func:`decays`, numpy's ``exp`` over the
rows' elapsed times): numpy's vectorised ``exp`` and the C library's, which
compiled code calls, differ in the last bit for some inputs, and the refinement
has always decayed with numpy's. The rest is the same IEEE arithmetic as the
numpy pass it replaces, operation for operation (a quotient of float32 values
widened to float64, a difference of int64 times divided by a day), so the matrix
is the same bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from segmenter.features import (  # the store's layout (private to the store and the compiled loops)
    _AMT,
    _CART,
    _EMAIL,
    _FIRST,
    _FREQ,
    _LPUR,
    _NO_TIME,
    _NPUR,
    _NREF,
    _PACT,
    _PVIEW,
    _RAMT,
    _SESS,
    _SPEND,
    DAY,
    FEATURE_NAMES,
)

__all__ = ["DECAY_OF", "decays", "fill"]

_ACTIVITY_DECAY, _FREQUENCY_DECAY, _SPEND_DECAY = range(3)
DECAY_OF = {
    "frequency": _FREQUENCY_DECAY,
    "spend": _SPEND_DECAY,
    "sessions": _ACTIVITY_DECAY,
    "product_views": _ACTIVITY_DECAY,
    "cart_adds": _ACTIVITY_DECAY,
    "email_engagement": _ACTIVITY_DECAY,
}
"""The decay factor (row of :func:`decays`: activity, frequency, spend) each decaying feature is scaled by."""
_DECAY_OF_INDEX = {FEATURE_NAMES.index(name): k for name, k in DECAY_OF.items()}
_DAY = DAY


def decays(
    elapsed: npt.NDArray[np.float64], rates: npt.NDArray[np.float64], columns: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """``exp(-elapsed * rate)`` per row for each decay rate (activity, frequency, spend) ``columns`` use.

    A rate no column uses gets no ``exp`` (its row is left at 1.0).
    """
    out = np.ones((3, len(elapsed)), np.float64)
    for k in sorted({_DECAY_OF_INDEX[c] for c in columns.tolist() if c in _DECAY_OF_INDEX}):
        out[k] = np.exp(-elapsed * rates[k])
    return out


@njit(cache=True)
def fill(  # noqa: C901, PLR0912, PLR0913, PLR0917 - compiled: positional only; one branch per feature
    f: Any, t: Any, rows: Any, times: Any, decay: Any, columns: Any, cap: float, out: Any
) -> None:  # pragma: no cover - compiled
    """``out[i, j]``: feature ``columns[j]`` of ``rows[i]`` at ``times[i]`` (``>=`` its latest event).

    ``decay`` is :func:`decays`'s for the rows; ``cap`` the recency cap in days.
    """
    fa, ff, fs = decay[0], decay[1], decay[2]
    for i in range(len(rows)):
        row = rows[i]
        at = times[i]
        npur = np.float64(f[row, _NPUR])
        for j in range(len(columns)):
            c = columns[j]
            if c == 0:
                lpur = t[row, _LPUR]
                r = (at - np.int64(t[row, _FIRST] if lpur == _NO_TIME else lpur)) / _DAY
                v = r if r < cap else cap
            elif c == 1:
                v = (at - np.int64(t[row, _FIRST])) / _DAY
            elif c == 2:
                v = np.float64(f[row, _FREQ]) * ff[i]
            elif c == 3:
                s = np.float64(f[row, _SPEND]) * fs[i]
                v = s if s > 0.0 else 0.0
            elif c == 4:
                v = np.float64(f[row, _AMT]) / npur if npur > 0.0 else 0.0
            elif c == 5:
                v = np.float64(f[row, _SESS]) * fa[i]
            elif c == 6:
                v = np.float64(f[row, _PVIEW]) * fa[i]
            elif c == 7:
                v = np.float64(f[row, _CART]) * fa[i]
            elif c == 8:
                cart = np.float64(f[row, _CART])
                v = 1.0 - min(1.0, np.float64(f[row, _PACT]) / cart) if cart > 0.0 else 0.0
            elif c == 9:
                pview = np.float64(f[row, _PVIEW])
                v = min(1.0, np.float64(f[row, _PACT]) / pview) if pview > 0.0 else 0.0
            elif c == 10:
                v = np.float64(f[row, _EMAIL]) * fa[i]
            elif c == 11:
                nref = np.float64(f[row, _NREF])
                v = min(1.0, nref / npur) if npur > 0.0 else (1.0 if nref > 0.0 else 0.0)
            elif c == 12:
                v = npur
            else:
                net = np.float64(f[row, _AMT]) - np.float64(f[row, _RAMT])
                v = net if net > 0.0 else 0.0
            out[i, j] = v
