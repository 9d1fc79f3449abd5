"""Keep freed host memory mapped, so CPU training does not page-fault its buffers every step.

XLA:CPU allocates each step's activations afresh with ``malloc``. glibc serves blocks above
its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps them on ``free``, and
XLA's worker threads get their own arenas, whose heaps are trimmed back to the kernel; either
way every step touches newly mapped pages: about 268,000 minor page faults (1 GiB) per
EfficientNet-B0 step at 128 px, batch 32, about a third of the step's time on this machine
(docs/performance.md). ``keep_freed_memory()`` makes glibc serve every block from one arena
that is never unmapped or trimmed, so after the first step the same pages are reused. The price
is that the process keeps its peak heap until it exits, which suits a training run, and the one
arena costs about 7 % for EfficientNet-B0 at 224 px (where ``FSA_MALLOC_TUNING=0`` is faster).

It must run before the threads that allocate are started (before importing JAX, in practice),
changes nothing where the C library is not glibc, and ``FSA_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters, from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
ENV_SWITCH = "FSA_MALLOC_TUNING"

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to use one arena, never ``mmap`` and never trim; True if it took."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV_SWITCH, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
    _applied = all(mallopt(param, value) == 1 for param, value in settings)
    return _applied
