"""What an image loader (struct kexec_file_ops) gets and gives back (spec 2.7.1 steps 2 and 9)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mkd.kexec.env import KexecEnv
from mkd.kexec.file_read import KexecFile
from mkd.kexec.placement import ULONG_MAX, KimageSegments
from mkd.kexec.segments import KexecBuf, PlannedSegment, SegmentSource


@dataclass(frozen=True)
class ProbeInput:
    env: KexecEnv
    kernel: KexecFile
    head: bytes  # the file's first bytes (at most HEAD_BYTES)
    multikernel: bool


@dataclass
class LoadContext:
    env: KexecEnv
    segments: KimageSegments
    kernel: KexecFile
    head: bytes
    initrd: KexecFile | None
    cmdline: bytes | None  # None: cmdline_len 0
    multikernel: bool
    force_dtb: bool
    instance_memory: tuple[tuple[int, int], ...]  # the instance pool's chunks (mk_e820_fill)
    ima_buffer: tuple[int, int] | None = None  # (mem, memsz) of the IMA segment, when one was added

    @property
    def cmdline_len(self) -> int:
        return len(self.cmdline) if self.cmdline is not None else 0


@dataclass(frozen=True)
class LoaderResult:
    start: int  # image->start
    mk_boot_params: int | None = None
    mk_kernel_entry: int | None = None
    spawnable: bool = True


@dataclass(frozen=True)
class KexecLoader:
    name: str
    probe: Callable[[ProbeInput], None]  # raises KernelError when the image is not this loader's
    load: Callable[[LoadContext], LoaderResult]
    has_verify_sig: bool = False  # none of the simulated loaders can verify signatures


def add_initrd_segment(
    ctx: LoadContext, *, buf_align: int, buf_min: int, buf_max: int, top_down: bool
) -> tuple[int, int] | None:
    """Add the initrd (whole file) as a segment when there is one; returns its (mem, length)."""
    if ctx.initrd is None:
        return None
    initrd = ctx.segments.add_buffer(
        KexecBuf(
            kind="initrd",
            source=SegmentSource(path=ctx.initrd.path, offset=0, length=ctx.initrd.size),
            bufsz=ctx.initrd.size,
            memsz=ctx.initrd.size,
            buf_align=buf_align,
            buf_min=buf_min,
            buf_max=buf_max,
            top_down=top_down,
        )
    )
    return initrd.mem, ctx.initrd.size


MIN_BOOTPARAM_ADDR = 0x3000  # x86: boot_params never goes below this (spec 2.7.2)


def add_boot_params_segment(ctx: LoadContext, size: int) -> PlannedSegment:
    """x86 segment 1: boot_params + command line + setup_data, filled in once all is placed."""
    return ctx.segments.add_buffer(
        KexecBuf(
            kind="boot_params",
            source=SegmentSource(length=size),
            bufsz=size,
            memsz=size,
            buf_align=16,
            buf_min=MIN_BOOTPARAM_ADDR,
            buf_max=ULONG_MAX,
            top_down=True,
        )
    )
