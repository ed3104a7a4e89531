"""The x86_64 bzImage64 loader (spec 2.7.2), with the tree's multikernel additions and 2.7.5."""

from __future__ import annotations

import errno

from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE
from mkd.kexec.loader_api import (
    KexecLoader,
    LoadContext,
    LoaderResult,
    ProbeInput,
    add_boot_params_segment,
    add_initrd_segment,
)
from mkd.kexec.placement import ULONG_MAX, round_up
from mkd.kexec.purgatory import load_purgatory
from mkd.kexec.segments import KexecBuf, SegmentSource
from mkd.kexec.x86_boot_params import (
    MAX_ELFCOREHDR_STR_LEN,
    RNG_SEED_BZIMAGE,
    BootParamsInput,
    boot_params_layout,
    build_boot_params,
    mk_e820_fill,
)
from mkd.kexec.x86_e820 import host_e820

MIN_KERNEL_LOAD_ADDR = 0x100000
MIN_INITRD_LOAD_ADDR = 0x1000000

LOADED_HIGH = 0x01
XLF_KERNEL_64 = 0x01
XLF_CAN_BE_LOADED_ABOVE_4G = 0x02
XLF_5LEVEL = 0x20


def _u8(head: bytes, offset: int) -> int:
    return head[offset] if offset < len(head) else 0


def _u16(head: bytes, offset: int) -> int:
    return int.from_bytes(head[offset : offset + 2].ljust(2, b"\0"), "little")


def _u32(head: bytes, offset: int) -> int:
    return int.from_bytes(head[offset : offset + 4].ljust(4, b"\0"), "little")


def _u64(head: bytes, offset: int) -> int:
    return int.from_bytes(head[offset : offset + 8].ljust(8, b"\0"), "little")


def _refuse(message: str) -> KernelError:
    return KernelError(errno.ENOEXEC, message)


def probe(inp: ProbeInput) -> None:
    """bzImage64_probe, every refusal ENOEXEC, in the spec 2.7.2 order."""
    head = inp.head
    if inp.kernel.size < 1024:  # probe step 1
        raise _refuse("File is too short to be a bzImage")
    if head[0x202:0x206] != b"HdrS":  # probe step 2
        raise _refuse("Not a bzImage")
    if _u16(head, 0x1FE) != 0xAA55:  # probe step 3
        raise _refuse("No x86 boot sector present")
    if _u16(head, 0x206) < 0x020C:  # probe step 4
        raise _refuse("Must be at least protocol version 2.12")
    if not _u8(head, 0x211) & LOADED_HIGH:  # probe step 5
        raise _refuse("zImage not a bzImage")
    xloadflags = _u16(head, 0x236)
    if not xloadflags & XLF_KERNEL_64:  # probe step 6
        raise _refuse("Not a bzImage64. XLF_KERNEL_64 is not set.")
    if not xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G:  # probe step 7
        raise _refuse("XLF_CAN_BE_LOADED_ABOVE_4G is not set.")
    # probe step 8 (32-bit EFI runtime) only logs at debug level.
    if not xloadflags & XLF_5LEVEL and inp.env.five_level_paging:  # probe step 9
        raise _refuse("bzImage cannot handle 5-level paging mode.")
    # spec 2.7.5 option (b): the kerf-documented policy refuses bzImages for multikernel outright.
    if inp.multikernel and inp.env.profile == "tree" and inp.env.bzimage_policy == "reject":
        raise _refuse("bzImage cannot be spawned as a multikernel instance; load the extracted vmlinux")


def load(ctx: LoadContext) -> LoaderResult:
    head, env = ctx.head, ctx.env
    # Load pre-check 1 (XLF_MULTIKERNEL_IPI_V4) exists only in a fork, not in the tree: not simulated.
    setup_sects = _u8(head, 0x1F1) or 4
    kern16 = (setup_sects + 1) * 512
    if ctx.kernel.size < kern16:  # load pre-check 2
        raise KernelError(errno.ENOEXEC, "bzImage truncated")
    cmdline_size = _u32(head, 0x238)
    if ctx.cmdline_len > cmdline_size:  # load pre-check 3
        raise KernelError(errno.EINVAL, "Kernel command line too long")
    if ctx.cmdline_len + MAX_ELFCOREHDR_STR_LEN > cmdline_size:  # load pre-check 4
        raise KernelError(errno.EINVAL, "Kernel command line too long to add elfcorehdr=")

    purgatory = load_purgatory(ctx)  # segment 0: still loaded for multikernel in the tree

    layout = boot_params_layout(
        env, cmdline_len=ctx.cmdline_len, rng_seed_len=RNG_SEED_BZIMAGE, force_dtb=ctx.force_dtb
    )
    params = add_boot_params_segment(ctx, layout.size)  # segment 1: B bytes, filled in once all is placed

    pref_address = _u64(head, 0x258)
    ctx.segments.add_buffer(  # segment 2: the protected-mode kernel
        KexecBuf(
            kind="kernel",
            source=SegmentSource(path=ctx.kernel.path, offset=kern16, length=ctx.kernel.size - kern16),
            bufsz=ctx.kernel.size - kern16,
            memsz=round_up(_u32(head, 0x260), PAGE_SIZE),
            buf_align=_u32(head, 0x230),
            buf_min=pref_address if pref_address >= MIN_KERNEL_LOAD_ADDR else MIN_KERNEL_LOAD_ADDR,
            buf_max=ULONG_MAX,
            top_down=True,
        )
    )

    # segment 3; initrd_addr_max is not consulted
    initrd_placed = add_initrd_segment(
        ctx, buf_align=PAGE_SIZE, buf_min=MIN_INITRD_LOAD_ADDR, buf_max=ULONG_MAX, top_down=True
    )

    # The setup header copied is 0x202 + jump byte - 0x1f1 bytes long.
    header_len = 0x202 + _u8(head, 0x201) - 0x1F1
    mk_tree = ctx.multikernel and env.profile == "tree"
    params.source = SegmentSource(
        data=build_boot_params(
            layout,
            BootParamsInput(
                setup_header=head[0x1F1 : 0x1F1 + header_len],
                mem=params.mem,
                cmdline=ctx.cmdline,
                initrd=initrd_placed,
                # tree multikernel: the instance's own map instead of the host e820.
                e820=mk_e820_fill(ctx.instance_memory) if mk_tree else host_e820(env),
                ima_buffer=ctx.ima_buffer,
            ),
        )
    )
    return LoaderResult(
        start=purgatory.mem,  # the relocated purgatory entry
        mk_boot_params=params.mem if ctx.multikernel else None,
        # The bzImage loader never sets mk_kernel_entry, so the tree cannot spawn it (spec 2.7.5 a).
        mk_kernel_entry=None,
        spawnable=not mk_tree,
    )


BZIMAGE64 = KexecLoader(name="bzImage64", probe=probe, load=load)
