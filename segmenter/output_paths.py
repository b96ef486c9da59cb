"""Refusing an output path that is an input path (opening it for writing would truncate the input first).

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> (d / "in.jsonl").write_text("x") and None
>>> overwritten_input({"the input": d / "in.jsonl"}, {"--output": d / "sub" / ".." / "in.jsonl"})  # doctest: +ELLIPSIS
'--output .../sub/../in.jsonl is the same file as the input .../in.jsonl; choose another path'
>>> overwritten_input({"the input": d / "in.jsonl"}, {"--output": d / "out.jsonl", "--log": None}) is None
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["overwritten_input", "same_file"]


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same path once symlinks are resolved, or hard links of one file."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def overwritten_input(inputs: Mapping[str, Path | None], outputs: Mapping[str, Path | None]) -> str | None:
    """What is wrong if an output is an input or another output (named as the user gave them), else ``None``.

    ``inputs`` and ``outputs`` map a name for the user (an option such as
    ``--output``, or ``the events file``) to a path; ``None`` paths are not given.
    """
    seen = [(name, path) for name, path in inputs.items() if path is not None]
    for name, path in outputs.items():
        if path is None:
            continue
        for other, other_path in seen:
            if same_file(path, other_path):
                return f"{name} {path} is the same file as {other} {other_path}; choose another path"
        seen.append((name, path))
    return None
