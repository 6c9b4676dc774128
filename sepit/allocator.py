"""Keep freed memory in the process (glibc malloc), set once at the start of every `sepit` command.

PyTorch on a CPU allocates and frees many tensors of a few MB per step. With glibc's defaults, blocks above the
(dynamic) mmap threshold are mapped and unmapped each time and the heap top is trimmed back to the system, so
every step faults its pages in again. Measured on 60 steps of the tiny stage-2 fit (2 CPUs, BENCHMARKS.md
"Allocator"): 8.6x fewer page faults, 6x less system time, +35 % steps/s. The resident size then stays at its
peak, which a training or evaluation run reaches anyway.

Skipped where the C library is not glibc, and where the user set any MALLOC_* variable (their choice wins).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (malloc.h) and the values set: the largest mmap threshold glibc accepts on 64-bit
# (DEFAULT_MMAP_THRESHOLD_MAX), and trim / top pad far above any step's churn.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 256 << 20}


def keep_freed_memory() -> bool:
    """-> whether the settings were applied."""
    if any(name.startswith("MALLOC_") or name == "GLIBC_TUNABLES" for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1 for param, value in SETTINGS.items())
