"""Process-wide C allocator settings, applied by the command-line entry points.

glibc's ``malloc`` serves a block of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB
at start) with its own ``mmap``, returned to the system when the block is freed.
But it *raises* that threshold to the size of each such block freed, up to
32 MiB: after the first large numpy array is freed, arrays up to 32 MiB come
from the heap instead. The feature store's columns grow by copying (old and
new column alive together) and refinement works on temporaries as large as a
column, so the heap fills with freed holes as large as the columns; glibc
returns only the heap's top, and the process's resident memory keeps every
hole. ``bench/memory.py --core`` measured the core alone at 504 bytes of RSS
per customer at 300,000 customers (529 per customer added from 100,000)
against 172 bytes of live columns, and 216 (177) with a fixed threshold.

:func:`tune_malloc` fixes the threshold (``mallopt(M_MMAP_THRESHOLD, ...)``
turns the adjustment off), so every block of :data:`MMAP_THRESHOLD` bytes or
more is mapped and unmapped on its own and freed columns leave the process.
Elsewhere than glibc (no ``mallopt``) it does nothing.

The fixed threshold has a price in page faults: every block of 256 KiB or
more is a fresh mapping whose pages fault on first write. Measured on a
``segmenter replay`` of a sparse 18-month stream (150,000 customers, 515,898
events; two cores, one run each, same session): fixed 42.5 s wall, 5.8 s
system CPU, 1.48M minor faults, 253 MB peak RSS; glibc's dynamic threshold
35.8 s, 0.4 s, 46k, 273 MB; dynamic with ``malloc_trim`` after each chunk of
events 41.8 s, 3.7 s, 800k, 264 MB. On one event each for 300,000 customers:
fixed 24.6 s / 316 MB, dynamic 23.2 s / 349 MB. The replay keeps the fixed
threshold: a replay's memory is measured like the consumer's, and 8-11% more
RSS per customer is not worth 6-16% of wall time; a trim gives back the
faults it saves. Scratch buffers reused across refinements would keep both.

Process-wide state: call it once, from ``__main__``, before the core allocates
(like :func:`segmenter.gc_tuning.tune_gc`).

Smaller blocks (a batch's encoded outputs, about a kilobyte each) still come
from the heap. A batch that moves a large share of the customers at once (an
inactivity sweep, the rescoring after a refinement: hundreds of thousands of
moves at a million customers) leaves its freed blocks as holes between live
ones, which glibc keeps. :func:`release_free_memory` (``malloc_trim``) hands
the free pages inside the heap back; it walks the heap (tens of milliseconds
at a few GB), so the Kafka edge calls it once its commits sent 50,000 records
since the last time (:data:`consumer.checkpoint.TRIM_AFTER_RECORDS`), before
its next poll (when the committed batch and its run are gone too).
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["MMAP_THRESHOLD", "release_free_memory", "tune_malloc"]

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 256 * 1024
"""Blocks of at least this many bytes get their own mapping (a column of a few thousand customers and up)."""
_M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""


def tune_malloc() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD` (see the module); False where there is no ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        logger.debug("no mallopt in this C library: the allocator keeps its own settings")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done: bool = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not done:
        logger.debug("mallopt(M_MMAP_THRESHOLD, %d) was refused", MMAP_THRESHOLD)
    return done


def release_free_memory() -> bool:
    """Return the heap's free pages to the system (glibc ``malloc_trim(0)``); False where there is none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True
