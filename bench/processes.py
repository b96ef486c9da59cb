"""The environment of the measured child processes (whole-process benchmarks).

Kept apart from :mod:`bench.common`, which imports the product: the bare river
process (:mod:`bench.replay_process` ``--bare``) must not pay those imports.
"""

from __future__ import annotations

import os
from pathlib import Path


def process_env(*first_on_path: Path) -> dict[str, str]:
    """The environment of a measured child process: this one's, as an installed package would run.

    ``first_on_path`` go first on ``PYTHONPATH``. ``PYTHONDONTWRITEBYTECODE`` is dropped: an installed
    package's modules have their bytecode cached (pip compiles them at install; the measured commands'
    unmeasured first run writes it here), while with it set every measured run would compile the project's
    sources again (about 5% of a dense replay), a cost no user's process pays.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    path = [*(str(p) for p in first_on_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path)
    return env
