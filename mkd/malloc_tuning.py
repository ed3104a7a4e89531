"""glibc malloc settings for a process that streams large uploads through Python bytes objects.

uvloop, httptools and uvicorn each allocate a fresh 64–256 KiB buffer per socket read. glibc gives
blocks of that size their own mmap and unmaps them on free, so every read pays ~64 page faults and
the zeroing of fresh pages: measured on a bare ASGI app draining 512 MiB, 870,000 faults and ~550
MiB/s, against ~5,000 faults and ~1.9 GiB/s once such blocks come from the heap and stay there.
Setting the thresholds explicitly also turns off glibc's sliding mmap threshold, so the behaviour
does not depend on what the process happened to free first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MiB = 1 << 20


@dataclass(frozen=True)
class MallocSettings:
    # Blocks below this come from the heap and are reused; a 64 MiB initrd read still gets its
    # own mapping and goes back to the kernel when freed.
    mmap_threshold: int = 4 * MiB
    # Free memory at the top of the heap kept for reuse instead of being returned at once: enough
    # for an upload's queued batches (mkd.images.store keeps at most ~5 MiB in flight).
    trim_threshold: int = 32 * MiB
    top_pad: int = 4 * MiB


def tune_malloc(settings: MallocSettings = MallocSettings()) -> bool:
    """Apply `settings` to this process's glibc allocator; False where the C library is not glibc
    (musl has no mallopt), in which case nothing changes."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name)
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success and 0 on error.
    return all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, settings.mmap_threshold),
        (M_TRIM_THRESHOLD, settings.trim_threshold),
        (M_TOP_PAD, settings.top_pad),
    ))
