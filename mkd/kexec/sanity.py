"""sanity_check_segment_list: four loops, in this order (spec 2.7.1 step 10)."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE
from mkd.kexec.env import KexecEnv
from mkd.kexec.segments import PlannedSegment

_ADDRESS_SPACE = 1 << 64


def destination_memory_limit(env: KexecEnv) -> int:
    """KEXEC_DESTINATION_MEMORY_LIMIT: MAXMEM-1 on x86_64 (2^46, or 2^52 with 5-level paging), -1UL on arm64."""
    if env.arch == "x86_64":
        return (1 << (52 if env.five_level_paging else 46)) - 1
    return _ADDRESS_SPACE - 1


def sanity_check_segment_list(env: KexecEnv, segments: Sequence[PlannedSegment]) -> None:
    limit = destination_memory_limit(env)
    # Loop 1: wrap, page alignment, destination limit -> EADDRNOTAVAIL.
    for segment in segments:
        mstart, mend = segment.mem, segment.mem + segment.memsz
        if mend >= _ADDRESS_SPACE:
            raise KernelError(errno.EADDRNOTAVAIL, f"{segment.kind} segment wraps around")
        if mstart % PAGE_SIZE or mend % PAGE_SIZE:
            raise KernelError(errno.EADDRNOTAVAIL, f"{segment.kind} segment is not page aligned")
        if mend >= limit:
            raise KernelError(errno.EADDRNOTAVAIL, f"{segment.kind} segment ends above {limit:#x}")
    # Loop 2: any two segments overlap -> EINVAL.
    for index, segment in enumerate(segments):
        mstart, mend = segment.mem, segment.mem + segment.memsz
        for earlier in segments[:index]:
            pstart, pend = earlier.mem, earlier.mem + earlier.memsz
            if mend > pstart and mstart < pend:
                raise KernelError(errno.EINVAL, f"{segment.kind} segment overlaps the {earlier.kind} segment")
    # Loop 3: bufsz > memsz -> EINVAL (kexec_add_buffer does not check it).
    for segment in segments:
        if segment.bufsz > segment.memsz:
            raise KernelError(
                errno.EINVAL,
                f"{segment.kind} segment: bufsz {segment.bufsz:#x} exceeds memsz {segment.memsz:#x}",
            )
    # Loop 4: one segment, or all together, above half of totalram_pages -> EINVAL.
    half = (env.total_ram_bytes // PAGE_SIZE) // 2
    total_pages = 0
    for segment in segments:
        pages = (segment.memsz + PAGE_SIZE - 1) // PAGE_SIZE
        if pages > half:
            raise KernelError(errno.EINVAL, f"{segment.kind} segment is larger than half of RAM")
        total_pages += pages
    if total_pages > half:
        raise KernelError(errno.EINVAL, "the segments together are larger than half of RAM")
