"""The x86_64 ELF vmlinux loader, first in the list under CONFIG_MULTIKERNEL (spec 2.7.3)."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass

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
from mkd.kexec.placement import ULONG_MAX
from mkd.kexec.purgatory import load_purgatory
from mkd.kexec.segments import KexecBuf, SegmentSource
from mkd.kexec.x86_boot_params import (
    RNG_SEED_VMLINUX,
    BootParamsInput,
    boot_params_layout,
    build_boot_params,
    mk_e820_fill,
)
from mkd.kexec.x86_e820 import host_e820

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
EM_X86_64 = 62
ET_EXEC = 2
ET_DYN = 3
PT_LOAD = 1
PT_NOTE = 4
_EHDR_SIZE = 64
_PHDR = struct.Struct("<IIQQQQQQ")  # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
MK_NOTE_TYPE = 0x4D4B  # "MK"
MK_NOTE_NAME = b"Linux\0"
KERNEL_ALIGN = 0x200000
MIN_KERNEL_LOAD_ADDR = 0x100000
MIN_INITRD_LOAD_ADDR = 0x1000000
_MAX_NOTE_BYTES = 1 << 20  # a note segment larger than this is not a kernel's; do not pull it in
_NOT_FOUND = "multikernel_startup_64 entry offset not found in PT_NOTE"
# The header the loader synthesizes for the new kernel (spec 2.7.3): boot_flag, "HdrS", version
# 2.15, loadflags LOADED_HIGH|KEEP_SEGMENTS|CAN_USE_HEAP, xloadflags KERNEL_64|ABOVE_4G, cmdline_size 0.
_SYNTH_LOADFLAGS = 0xC1


def _synthesized_setup_header() -> bytes:
    header = bytearray(0x268 - 0x1F1)

    def put(offset: int, fmt: str, value: int | bytes) -> None:
        struct.pack_into(fmt, header, offset - 0x1F1, value)

    put(0x1FE, "<H", 0xAA55)
    put(0x202, "4s", b"HdrS")
    put(0x206, "<H", 0x020F)
    put(0x211, "<B", _SYNTH_LOADFLAGS)
    put(0x236, "<H", 0x3)
    return bytes(header)


def probe(inp: ProbeInput) -> None:
    """Every refusal ENOEXEC (spec 2.7.3 probe)."""
    head = inp.head
    if inp.kernel.size < _EHDR_SIZE:
        raise KernelError(errno.ENOEXEC, "File is too short to be an ELF")
    if head[:4] != ELF_MAGIC:
        raise KernelError(errno.ENOEXEC, "Not an ELF file")
    if head[4] != ELFCLASS64:
        raise KernelError(errno.ENOEXEC, "Not a 64-bit ELF")
    e_type, e_machine = struct.unpack_from("<HH", head, 16)
    if e_machine != EM_X86_64:
        raise KernelError(errno.ENOEXEC, "Not an x86-64 ELF")
    if e_type not in (ET_EXEC, ET_DYN):
        raise KernelError(errno.ENOEXEC, "Not an executable ELF")


@dataclass(frozen=True)
class _ProgramHeader:
    p_type: int
    offset: int
    paddr: int
    filesz: int
    memsz: int


def _find_mk_entry(ctx: LoadContext, notes: list[_ProgramHeader]) -> int:
    """The "MK" note's entry, or 0 when there is none usable (entry 0 counts as not found)."""
    for phdr in notes:
        if phdr.offset + phdr.filesz > ctx.kernel.size:
            continue
        data = ctx.kernel.read(phdr.offset, min(phdr.filesz, _MAX_NOTE_BYTES))
        at = 0
        while at + 12 <= len(data):
            namesz, descsz, note_type = struct.unpack_from("<III", data, at)
            name_at = at + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            next_at = desc_at + ((descsz + 3) & ~3)
            if next_at > len(data):
                break
            if (
                note_type == MK_NOTE_TYPE
                and namesz == len(MK_NOTE_NAME)
                and (data[name_at : name_at + namesz] == MK_NOTE_NAME)
            ):
                if descsz == 8:  # older revisions: {u64 entry}
                    return int(struct.unpack_from("<Q", data, desc_at)[0])
                if descsz >= 16:  # {u64 entry, u32 ipi_abi_version, u32 reserved}
                    entry, abi = struct.unpack_from("<QI", data, desc_at)
                    return int(entry) if abi == ctx.env.mk_ipi_abi_version else 0
            at = next_at
    return 0


def load(ctx: LoadContext) -> LoaderResult:
    env, size = ctx.env, ctx.kernel.size
    head = ctx.head
    # Parse step: the probe's checks again, with the parser's errnos.
    if size < _EHDR_SIZE or head[:4] != ELF_MAGIC:
        raise KernelError(errno.EINVAL, "Invalid ELF header")
    e_machine = struct.unpack_from("<H", head, 18)[0]
    if head[4] != ELFCLASS64 or e_machine != EM_X86_64:
        raise KernelError(errno.ENOEXEC, "Not an x86-64 ELF64 image")
    e_phoff, e_phnum = struct.unpack_from("<Q", head, 32)[0], struct.unpack_from("<H", head, 56)[0]
    if e_phoff + e_phnum * _PHDR.size > size:
        raise KernelError(errno.EINVAL, "Program headers extend beyond the file")
    table = ctx.kernel.read(e_phoff, e_phnum * _PHDR.size)
    phdrs = [
        _ProgramHeader(p_type, p_offset, p_paddr, p_filesz, p_memsz)
        for p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, p_memsz, _align in _PHDR.iter_unpack(table)
    ]
    entry = _find_mk_entry(ctx, [phdr for phdr in phdrs if phdr.p_type == PT_NOTE])
    if not entry:
        raise KernelError(errno.ENOEXEC, _NOT_FOUND)
    loads = [phdr for phdr in phdrs if phdr.p_type == PT_LOAD]
    if not loads:
        raise KernelError(errno.ENOEXEC, "No PT_LOAD segments")
    load_addr = min(phdr.paddr for phdr in loads)
    # load_size uses the running minimum in header order, as the loader does.
    running_min, load_size = loads[0].paddr, 0
    for phdr in loads:
        running_min = min(running_min, phdr.paddr)
        load_size = max(load_size, phdr.paddr + phdr.memsz - running_min)
    pieces = []
    for phdr in loads:
        filesz = min(phdr.filesz, phdr.memsz)
        if phdr.offset + filesz > size:  # (inferred) the copy would read past the file
            raise KernelError(errno.EINVAL, "PT_LOAD extends beyond the file")
        if filesz:
            pieces.append((phdr.paddr - load_addr, phdr.offset, filesz))

    purgatory = None if ctx.multikernel else load_purgatory(ctx)  # no purgatory for multikernel

    layout = boot_params_layout(
        env, cmdline_len=ctx.cmdline_len, rng_seed_len=RNG_SEED_VMLINUX, force_dtb=ctx.force_dtb
    )
    # No command-line length check at all: the synthesized header's cmdline_size 0 is never read.
    params = add_boot_params_segment(ctx, layout.size)  # segment 1: B bytes, filled in once all is placed
    kernel = ctx.segments.add_buffer(
        KexecBuf(
            kind="kernel",
            source=SegmentSource(path=ctx.kernel.path, length=load_size, pieces=tuple(pieces)),
            bufsz=load_size,
            memsz=load_size,
            buf_align=KERNEL_ALIGN,
            buf_min=MIN_KERNEL_LOAD_ADDR,
            buf_max=ULONG_MAX,
            top_down=False,
        )
    )
    initrd_placed = add_initrd_segment(
        ctx, buf_align=PAGE_SIZE, buf_min=MIN_INITRD_LOAD_ADDR, buf_max=ULONG_MAX, top_down=True
    )

    params.source = SegmentSource(
        data=build_boot_params(
            layout,
            BootParamsInput(
                setup_header=_synthesized_setup_header(),
                mem=params.mem,
                cmdline=ctx.cmdline,
                initrd=initrd_placed,
                e820=mk_e820_fill(ctx.instance_memory) if ctx.multikernel else host_e820(env),
                ima_buffer=ctx.ima_buffer,
                loadflags=_SYNTH_LOADFLAGS,
            ),
        )
    )
    if purgatory is None:  # multikernel: no purgatory; the spawn enters at the MK note's entry
        # X86_SUBARCH_MULTIKERNEL is not written: its value was not read (spec 2.7.3).
        return LoaderResult(
            start=params.mem,
            mk_boot_params=params.mem,
            mk_kernel_entry=kernel.mem + (entry - load_addr),
        )
    return LoaderResult(start=purgatory.mem)


VMLINUX = KexecLoader(name="vmlinux", probe=probe, load=load)
