"""segmenter.numba_probes: numba's registries load without scipy.linalg and cffi, and both import afterwards.

Each case runs in a fresh interpreter: the probes run once per process, and this one has imported scipy already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_REFUSED = "print(sorted(m for m in sys.modules if m.startswith(('scipy.linalg', 'cffi', 'pycparser'))))"


def _run(code: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()


def test_the_probes_leave_scipy_linalg_and_cffi_importable_afterwards() -> None:
    code = (
        "import sys; from segmenter.numba_probes import load_numba_probes, _Refuse\n"
        f"print(load_numba_probes()); {_REFUSED}\n"
        "print(any(isinstance(f, _Refuse) for f in sys.meta_path))\n"
        "import scipy.linalg.cython_blas, cffi, numba, numpy as np; cffi.FFI()\n"
        "print(numba.njit(lambda a, b: np.dot(a, b))(np.ones(3), np.ones(3)))"
    )
    assert _run(code) == ["['scipy.linalg', 'cffi']", "[]", "False", "3.0"]


def test_a_probe_stands_aside_once_its_package_is_imported() -> None:
    code = (
        "import sys, scipy.linalg; from segmenter.numba_probes import load_numba_probes\n"
        "print(load_numba_probes()); import numba.np.arraymath as am; print(am._HAVE_BLAS)"
    )
    assert _run(code) == ["['cffi']", "True"]


def test_a_replay_process_imports_neither_scipy_linalg_nor_cffi(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(
        b'{"event_id":"e1","customer_id":"c1","type":"purchase","ts":"2026-01-02T00:00:00Z","amount":20}\n'
    )
    code = f"import sys, segmenter.__main__ as cli; cli.main(['-q', 'replay', sys.argv[1]]); {_REFUSED}"
    assert _run(code, str(events)) == ["[]"]


def test_the_consumers_start_up_and_warm_up_import_neither_scipy_linalg_nor_cffi() -> None:
    # main() up to build_service, whose warm-up (the first compiled calls) runs here; then an invalid-config exit
    code = (
        "import sys, consumer.__main__ as m\n"
        "from consumer.warmup import warm_up; from segmenter.config import default_config\n"
        "from segmenter.errors import ConfigError; from segmenter.pipeline import Segmenter\n"
        "def build(*_):\n"
        "    warm_up(lambda: Segmenter(default_config()))\n"
        "    raise ConfigError('stop here')\n"
        f"m.build_service = build; print(m.main([])); {_REFUSED}"
    )
    assert _run(code) == ["2", "[]"]
