"""Numba's numpy support loaded without ``scipy.linalg``, applied by the command-line entry points.

Numba loads its numpy support (``numba.np.arraymath``) at the first call of a
compiled function, and that module asks at its import whether BLAS is there
(``_check_blas()`` -> ``import scipy.linalg.cython_blas``), only to choose how
its compiled ``np.correlate`` and ``np.convolve`` multiply. That import loads
all of ``scipy.linalg``: about 0.1 s of CPU of every process start, for a BLAS
that the core's compiled code never calls (it has no ``np.dot``, ``@``,
``np.linalg``, ``np.correlate`` or ``np.convolve``).

:func:`load_numba_without_scipy` imports ``numba.np.arraymath`` with an import
hook that refuses ``scipy.linalg`` and its submodules, and removes the hook
before it returns, whatever happens: a later ``import scipy.linalg`` (or a
compiled ``np.dot``, which imports it when typed) works as usual. What stays is
numba's answer for that process: compiled ``np.correlate`` and ``np.convolve``
use numba's own loop instead of BLAS. A process that has already imported
``scipy.linalg`` (or numba's numpy support) is left as it is.

Process-wide state: call it once, from ``__main__``, before the first compiled
call (like :mod:`segmenter.gc_tuning`).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["BLOCKED", "load_numba_without_scipy"]

BLOCKED = "scipy.linalg"
"""The package refused (with its submodules) while numba's numpy support loads."""

_NUMPY_SUPPORT = "numba.np.arraymath"


class _Refuse(MetaPathFinder):
    """An import hook that makes :data:`BLOCKED` and its submodules unavailable."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Raise :class:`ImportError` for :data:`BLOCKED` and its submodules; ``None`` (not mine) otherwise."""
        if fullname == BLOCKED or fullname.startswith(BLOCKED + "."):
            raise ImportError(f"{fullname} is not imported while numba's numpy support loads", name=fullname)
        return None


def load_numba_without_scipy() -> bool:
    """Import numba's numpy support with :data:`BLOCKED` refused (see the module docstring).

    Returns
    -------
    bool
        Whether the hook was used: ``False`` if the process had already imported
        numba's numpy support or :data:`BLOCKED`.
    """
    if _NUMPY_SUPPORT in sys.modules or BLOCKED in sys.modules:
        return False
    hook = _Refuse()
    sys.meta_path.insert(0, hook)
    try:
        importlib.import_module(_NUMPY_SUPPORT)
    finally:
        sys.meta_path.remove(hook)
    return True
