"""segmenter.scipy_guard: numba's numpy support loads without scipy.linalg, and a later import of it still works.

Each case runs in a fresh interpreter: the guard acts once per process, and this one has imported scipy already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SCIPY_LINALG = "print(sorted(m for m in sys.modules if m.startswith('scipy.linalg')))"


def _run(code: str, *args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()


def test_the_guard_leaves_scipy_linalg_importable_afterwards() -> None:
    code = (
        "import sys; from segmenter.scipy_guard import load_numba_without_scipy, _Refuse\n"
        f"print(load_numba_without_scipy()); {_SCIPY_LINALG}\n"
        "print(any(isinstance(f, _Refuse) for f in sys.meta_path))\n"
        "import scipy.linalg.cython_blas, numba, numpy as np\n"
        "print(numba.njit(lambda a, b: np.dot(a, b))(np.ones(3), np.ones(3)))"
    )
    assert _run(code) == ["True", "[]", "False", "3.0"]


def test_the_guard_stands_aside_once_scipy_linalg_is_imported() -> None:
    code = (
        "import sys, scipy.linalg; from segmenter.scipy_guard import load_numba_without_scipy\n"
        "print(load_numba_without_scipy()); import numba.np.arraymath as am; print(am._HAVE_BLAS)"
    )
    assert _run(code) == ["False", "True"]


def test_a_replay_process_does_not_import_scipy_linalg(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(
        b'{"event_id":"e1","customer_id":"c1","type":"purchase","ts":"2026-01-02T00:00:00Z","amount":20}\n'
    )
    code = f"import sys, segmenter.__main__ as cli; cli.main(['-q', 'replay', sys.argv[1]]); {_SCIPY_LINALG}"
    assert _run(code, str(events)) == ["[]"]


def test_the_consumers_start_up_and_warm_up_do_not_import_scipy_linalg() -> None:
    # main() up to build_service, whose warm-up (the first compiled calls) runs here; then an invalid-config exit
    code = (
        "import sys, consumer.__main__ as m\n"
        "from consumer.warmup import warm_up; from segmenter.config import default_config\n"
        "from segmenter.errors import ConfigError; from segmenter.pipeline import Segmenter\n"
        "def build(*_):\n"
        "    warm_up(lambda: Segmenter(default_config()), [])\n"
        "    raise ConfigError('stop here')\n"
        f"m.build_service = build; print(m.main([])); {_SCIPY_LINALG}"
    )
    assert _run(code) == ["2", "[]"]
