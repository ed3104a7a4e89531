"""The arm64 Image loader and load_other_segments (spec 2.7.4)."""

from __future__ import annotations

import errno
import struct

from mkd.errors import KernelError
from mkd.kexec.arm64_dtb import DtbInput, build_kexec_dtb
from mkd.kexec.loader_api import KexecLoader, LoadContext, LoaderResult, ProbeInput, add_initrd_segment
from mkd.kexec.placement import ULONG_MAX, align_down
from mkd.kexec.segments import KexecBuf, SegmentSource

ARM64_IMAGE_MAGIC = b"ARM\x64"
_HEADER_SIZE = 64
MIN_KIMG_ALIGN = 0x200000
MK_BOOT_DTB_SIZE = 64 << 10  # asm/multikernel.h at 38cf5cc1
_SZ_1G = 1 << 30
_FLAG_BE = 0x1
_PAGE_SIZE_FIELD = {1: 4096, 2: 16384, 3: 65536}  # flags bits 1-2; 0 = unspecified


def probe(inp: ProbeInput) -> None:
    """image_probe: both refusals are EINVAL, so "no loader" on arm64 is EINVAL (spec 2.7.1 step 2)."""
    if inp.kernel.size < _HEADER_SIZE:
        raise KernelError(errno.EINVAL, "File is too short to be an arm64 Image")
    if inp.head[56:60] != ARM64_IMAGE_MAGIC:
        raise KernelError(errno.EINVAL, "Bad arm64 Image magic")


def load(ctx: LoadContext) -> LoaderResult:
    env = ctx.env
    text_offset, image_size, flags = struct.unpack_from("<QQQ", ctx.head, 8)
    # Load check 1 (crash images) cannot apply: the simulator prepares no crash images.
    if image_size == 0:  # load check 2
        raise KernelError(errno.EINVAL, "Image size is 0")
    if bool(flags & _FLAG_BE) and not env.arm64_mixed_endian:  # load check 3 (the kernel is little endian)
        raise KernelError(errno.EINVAL, "Big-endian Image on a CPU without mixed-endian support")
    granule = _PAGE_SIZE_FIELD.get((flags >> 1) & 0x3)
    if granule is not None and granule not in env.arm64_page_sizes:  # load check 4
        raise KernelError(errno.EINVAL, f"CPU lacks the Image's {granule // 1024}K page size")

    kernel_buf = KexecBuf(  # segment 0: the whole file, bottom-up, 2 MiB aligned
        kind="kernel",
        source=SegmentSource(path=ctx.kernel.path, offset=0, length=ctx.kernel.size),
        bufsz=ctx.kernel.size,
        memsz=image_size + text_offset,
        buf_align=MIN_KIMG_ALIGN,
        buf_min=0,
        buf_max=ULONG_MAX,
        top_down=False,
    )
    kernel_index = len(ctx.segments.segments)
    # spec 2.7.4 (mainline image_load): the kernel's place may leave no room for the other segments,
    # so each failure drops them and the kernel and tries again above the previous kernel; it ends
    # when kexec_add_buffer itself fails, with that errno.
    while True:
        kernel = ctx.segments.add_buffer(kernel_buf)
        try:
            _load_other_segments(ctx, kernel.mem, kernel.mem + kernel.memsz)
        except KernelError:
            ctx.segments.rollback(kernel_index)  # load_other_segments' rollback, then nr_segments -= 1
            kernel_buf.buf_min = kernel.mem + kernel.memsz
            continue
        break
    # Only now is the kernel segment moved by text_offset (its pool allocation stays as it was).
    kernel.mem += text_offset
    kernel.memsz -= text_offset
    return LoaderResult(start=kernel.mem)


def _load_other_segments(ctx: LoadContext, kernel_mem: int, kernel_end: int) -> None:
    """load_other_segments: initrd and DTB, nothing below the kernel."""
    initrd_placed = add_initrd_segment(
        ctx, buf_align=0, buf_min=kernel_end,
        buf_max=align_down(kernel_mem, _SZ_1G) + 32 * _SZ_1G,  # a 1 GiB-aligned 32 GiB window
        top_down=False,
    )
    dtb = build_kexec_dtb(DtbInput(cmdline=ctx.cmdline, initrd=initrd_placed, ima_buffer=ctx.ima_buffer))
    # tree multikernel: room for mk_build_boot_dtb to rewrite the DTB in place at every spawn.
    mk_tree = ctx.multikernel and ctx.env.profile == "tree"
    ctx.segments.add_buffer(
        KexecBuf(
            kind="dtb",
            source=SegmentSource(data=dtb),
            bufsz=len(dtb),
            memsz=max(len(dtb), MK_BOOT_DTB_SIZE) if mk_tree else len(dtb),
            buf_align=MIN_KIMG_ALIGN,  # not across a 2 MiB boundary
            buf_min=kernel_end,
            buf_max=ULONG_MAX,
            top_down=True,
        )
    )


ARM64_IMAGE = KexecLoader(name="arm64-image", probe=probe, load=load)
