"""kexec_load_purgatory for x86 (spec 2.7.1 "Purgatory")."""

from __future__ import annotations

import errno

from mkd.errors import KernelError
from mkd.kexec.loader_api import LoadContext
from mkd.kexec.placement import ULONG_MAX
from mkd.kexec.segments import KexecBuf, PlannedSegment, SegmentSource

MIN_PURGATORY_ADDR = 0x3000
# The simulated purgatory is one blob of alloc sections with 16-byte alignment and no bss, so
# bufsz == memsz == purgatory_bytes and buf_align 16 (raised to a page by kexec_add_buffer).
_PURGATORY_SECTION_ALIGN = 16


def load_purgatory(ctx: LoadContext) -> PlannedSegment:
    size = ctx.env.purgatory_bytes
    if size <= 0:
        raise KernelError(errno.EINVAL, "built-in purgatory is empty")
    return ctx.segments.add_buffer(
        KexecBuf(
            kind="purgatory",
            source=SegmentSource(length=size),  # zeros: the blob itself is not simulated
            bufsz=size,
            memsz=size,
            buf_align=_PURGATORY_SECTION_ALIGN,
            buf_min=MIN_PURGATORY_ADDR,
            buf_max=ULONG_MAX,
            top_down=True,
        )
    )
