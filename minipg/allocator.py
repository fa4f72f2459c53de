"""Keep freed memory for reuse: the C allocator's settings for large temporaries.

Every update of the off-policy algorithms allocates and frees the same large
temporaries: a twin critic's layer output at batch 256 is a (2, 256, 256)
array, 512 KiB in float32, and an update makes dozens.  glibc's malloc
serves blocks above its mmap threshold (128 KiB at start, raised dynamically
as such blocks are freed) with fresh pages from the kernel, and hands the top
of the heap back once more than its trim threshold is free.  Depending on
what else the process allocated, the same update then either reuses warm
heap memory or takes a page fault on every 4 KiB of every temporary:
measured on SAC's preset update (verification/offpolicy_speed.py ``floor``),
0 against about 1,100 page faults per update, and about 40 % of the update's
time.  :func:`keep_freed_memory` fixes both thresholds (mmap 32 MiB, trim
256 MiB), so blocks up to 32 MiB come from the heap and freed ones are kept
for the next update.  The cost is memory the process holds on to after a
peak (at most the trim threshold beyond what it uses).

Only glibc is touched (``mallopt``); elsewhere (macOS, musl, Windows) the
function does nothing and returns False.  It changes the whole process's
allocator, once: the off-policy algorithms call it when they are built
(:class:`minipg.algorithms.offpolicy_common.OffPolicyAlgorithm`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

MMAP_THRESHOLD = 32 * 2**20      # glibc's own upper limit for the dynamic threshold
TRIM_THRESHOLD = 256 * 2**20
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3      # glibc's malloc.h

_done = None                     # the result of the first call (it applies process-wide)


def keep_freed_memory():
    """Set glibc's malloc thresholds (module docstring) once per process; True where
    they are set, False where the C library is not glibc or refuses."""
    global _done
    if _done is None:
        _done = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                             and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            except (OSError, AttributeError):
                _done = False
    return _done
