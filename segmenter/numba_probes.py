"""Numba's probes for optional libraries run without them, applied by the command-line entry points.

At the first call of a compiled function numba loads its typing and lowering
registries, and two of their modules probe at import for an optional library
the core's compiled code never uses:

- ``numba.np.arraymath`` asks whether BLAS is there (``_check_blas()`` ->
  ``import scipy.linalg.cython_blas``), only to choose how its compiled
  ``np.correlate`` and ``np.convolve`` multiply; that import loads all of
  ``scipy.linalg``, about 0.1-0.2 s of CPU;
- ``numba.core.typing.cffi_utils`` imports ``cffi`` and builds a ``cffi.FFI()``
  (which parses C declarations with pycparser), about 30-50 ms, for compiled
  code that calls cffi functions.

The core's compiled code has no ``np.dot``, ``@``, ``np.linalg``,
``np.correlate``, ``np.convolve`` or cffi call. :func:`load_numba_probes`
imports those two modules first, each with an import hook that refuses its
library (with its submodules), and removes the hook before it returns,
whatever happens: a later ``import scipy.linalg`` or ``import cffi`` works as
usual, and so does a compiled ``np.dot`` (numba imports the BLAS when it types
one). What stays is numba's answer for that process: compiled
``np.correlate`` and ``np.convolve`` use numba's own loop instead of BLAS, and
compiled code cannot call cffi functions. A probe whose module or library the
process has already imported is left as it is.

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

__all__ = ["PROBES", "load_numba_probes"]

PROBES = (("numba.np.arraymath", "scipy.linalg"), ("numba.core.typing.cffi_utils", "cffi"))
"""(numba's probing module, the package refused with its submodules while it loads)."""


class _Refuse(MetaPathFinder):
    """An import hook that makes one package and its submodules unavailable."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Raise :class:`ImportError` for the package and its submodules; ``None`` (not mine) otherwise."""
        if fullname == self.package or fullname.startswith(self.package + "."):
            raise ImportError(f"{fullname} is not imported while numba probes for it", name=fullname)
        return None


def load_numba_probes() -> list[str]:
    """Import each of :data:`PROBES`' modules with its package refused (see the module docstring).

    Returns
    -------
    list[str]
        The packages refused: not those the process had already imported, nor
        those whose numba module it had.
    """
    refused = []
    for module, package in PROBES:
        if module in sys.modules or package in sys.modules:
            continue
        hook = _Refuse(package)
        sys.meta_path.insert(0, hook)
        try:
            importlib.import_module(module)
        finally:
            sys.meta_path.remove(hook)
        refused.append(package)
    return refused
