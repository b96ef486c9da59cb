"""tune_malloc: after it, a block above the threshold gets its own mapping even once glibc raised its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import ctypes, sys
from segmenter.malloc_tuning import MMAP_THRESHOLD, tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
libc.free(libc.malloc(16 << 20))  # a freed 16 MiB mapping: glibc alone raises its threshold to 16 MiB
before = libc.mallinfo2().hblks
block = libc.malloc(4 * MMAP_THRESHOLD)
print(tuned, libc.mallinfo2().hblks - before)
libc.free(block)
"""


def _mapped(mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_blocks_above_the_threshold_are_mapped_after_tuning_only() -> None:
    """A process of its own: the setting is process-wide and must not reach the test process."""
    assert _mapped("default") == "None 0"  # glibc's dynamic threshold: the block came from the heap
    assert _mapped("tuned") == "True 1"  # fixed threshold: its own mapping, unmapped when freed
