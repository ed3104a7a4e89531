"""The x86 boot_params segment: boot_params + command line + setup_data (spec 2.7.2 "B", 2.7.3 "B′")."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from mkd.kexec.env import KexecEnv

BOOT_PARAMS_SIZE = 4096  # sizeof(struct boot_params)
MAX_ELFCOREHDR_STR_LEN = 30  # room for " elfcorehdr=0x<addr>" reserved for every image
SETUP_DATA_HEADER = 16  # struct setup_data {u64 next; u32 type; u32 len}
EFI_SETUP_DATA = 96
RNG_SEED_BZIMAGE = 32
RNG_SEED_VMLINUX = 512
IMA_SETUP_DATA = 16  # {u64 addr; u64 size}
KHO_DATA = 32
MK_SETUP_DATA = 16  # {u64 fdt_addr; u64 fdt_size} (inferred size, spec 2.7.2)

SETUP_DTB = 2
SETUP_EFI = 4
SETUP_IMA = 8
SETUP_RNG_SEED = 9
SETUP_KEXEC_KHO = 10
SETUP_MULTIKERNEL = 11  # value not read (spec 2.7.2); the simulator's choice

# boot_params offsets (arch/x86/include/uapi/asm/bootparam.h)
_EXT_RAMDISK_IMAGE = 0x0C0
_EXT_RAMDISK_SIZE = 0x0C4
_EXT_CMD_LINE_PTR = 0x0C8
_E820_ENTRIES = 0x1E8
_SETUP_HEADER = 0x1F1
_TYPE_OF_LOADER = 0x210
_LOADFLAGS = 0x211
_RAMDISK_IMAGE = 0x218
_RAMDISK_SIZE = 0x21C
_CMD_LINE_PTR = 0x228
_SETUP_DATA = 0x250
_E820_TABLE = 0x2D0
_E820_MAX_ENTRIES = 128
E820_TYPE_RAM = 1
E820_TYPE_RESERVED = 2
_ONE_MIB = 0x100000


def align16(value: int) -> int:
    return (value + 15) & ~15


@dataclass(frozen=True)
class BootParamsLayout:
    """Where each part of the segment sits; `size` is the segment's bufsz (= memsz before rounding)."""

    cmdline_offset: int
    efi_map_offset: int
    efi_setup_data_offset: int
    setup_data: tuple[tuple[int, int, int], ...]  # (type, offset, payload length), in write order
    size: int


def boot_params_layout(env: KexecEnv, *, cmdline_len: int, rng_seed_len: int, force_dtb: bool) -> BootParamsLayout:
    """B of spec 2.7.2 (rng_seed_len 32) or B′ of 2.7.3 (512)."""
    # ALIGN16(4096 + cmdline_len + 30) + ALIGN16(efi_map_sz)
    params_cmdline = align16(BOOT_PARAMS_SIZE + cmdline_len + MAX_ELFCOREHDR_STR_LEN)
    efi_setup_data_offset = params_cmdline + align16(env.efi_map_size)
    # + 16 + 96: setup_data + efi_setup_data, reserved even when EFI is skipped.
    offset = efi_setup_data_offset + SETUP_DATA_HEADER + EFI_SETUP_DATA
    entries: list[tuple[int, int, int]] = []

    def reserve(setup_type: int, length: int) -> None:
        nonlocal offset
        entries.append((setup_type, offset, length))
        offset += SETUP_DATA_HEADER + length

    # The chain is written in this order: DTB, IMA, KHO, [tree] MULTIKERNEL, RNG (spec 2.7.2).
    if force_dtb and env.host_booted_with_dtb:
        reserve(SETUP_DTB, env.host_dtb_bytes)
    if env.ima_kexec:
        reserve(SETUP_IMA, IMA_SETUP_DATA)
    if env.kho:
        reserve(SETUP_KEXEC_KHO, KHO_DATA)
    if env.multikernel and env.profile == "tree":
        reserve(SETUP_MULTIKERNEL, MK_SETUP_DATA)
    reserve(SETUP_RNG_SEED, rng_seed_len)
    return BootParamsLayout(
        cmdline_offset=BOOT_PARAMS_SIZE,
        efi_map_offset=params_cmdline,
        efi_setup_data_offset=efi_setup_data_offset,
        setup_data=tuple(entries),
        size=offset,
    )


def mk_e820_fill(instance_memory: tuple[tuple[int, int], ...]) -> list[tuple[int, int, int]]:
    """The instance's memory map: a reserved page at 0 keeps the table non-empty, then every instance
    region as RAM with the first 1 MiB left out (spec 2.7.2, tree multikernel)."""
    table = [(0, 0x1000, E820_TYPE_RESERVED)]
    for base, size in sorted(instance_memory):
        start, end = max(base, _ONE_MIB), base + size
        if end > start:
            table.append((start, end - start, E820_TYPE_RAM))
    return table[:_E820_MAX_ENTRIES]


@dataclass(frozen=True)
class BootParamsInput:
    setup_header: bytes  # the kernel's setup header, copied from 0x1f1
    mem: int  # the segment's address
    cmdline: bytes | None
    initrd: tuple[int, int] | None  # (address, length)
    e820: list[tuple[int, int, int]]
    ima_buffer: tuple[int, int] | None
    loadflags: int = 0  # bzImage64 clears it; the vmlinux loader's synthesized header keeps 0xC1


def build_boot_params(layout: BootParamsLayout, params: BootParamsInput) -> bytes:
    """Fill the segment the way setup_boot_parameters does (values the simulator cannot know stay 0)."""
    buf = bytearray(layout.size)
    header = params.setup_header[: BOOT_PARAMS_SIZE - _SETUP_HEADER]
    buf[_SETUP_HEADER : _SETUP_HEADER + len(header)] = header
    buf[_TYPE_OF_LOADER] = 0xD0
    buf[_LOADFLAGS] = params.loadflags
    cmdline_addr = params.mem + layout.cmdline_offset
    struct.pack_into("<I", buf, _CMD_LINE_PTR, cmdline_addr & 0xFFFFFFFF)
    struct.pack_into("<I", buf, _EXT_CMD_LINE_PTR, cmdline_addr >> 32)
    if params.cmdline:
        text = bytearray(params.cmdline)
        text[-1] = 0  # the kernel forces the last byte to NUL
        buf[layout.cmdline_offset : layout.cmdline_offset + len(text)] = text
    if params.initrd is not None:
        addr, length = params.initrd
        struct.pack_into("<I", buf, _RAMDISK_IMAGE, addr & 0xFFFFFFFF)
        struct.pack_into("<I", buf, _RAMDISK_SIZE, length & 0xFFFFFFFF)
        struct.pack_into("<I", buf, _EXT_RAMDISK_IMAGE, addr >> 32)
        struct.pack_into("<I", buf, _EXT_RAMDISK_SIZE, length >> 32)
    buf[_E820_ENTRIES] = len(params.e820)
    for index, (addr, size, kind) in enumerate(params.e820):
        struct.pack_into("<QQI", buf, _E820_TABLE + 20 * index, addr, size, kind)
    # Each entry is pushed on the front of the list, so the last one written heads the chain.
    head = 0
    for setup_type, offset, length in layout.setup_data:
        # Space is reserved for every configured entry, but IMA is written only when there is an
        # IMA buffer and KHO only when KHO is active, which it never is here.
        if setup_type == SETUP_KEXEC_KHO or (setup_type == SETUP_IMA and params.ima_buffer is None):
            continue
        struct.pack_into("<QII", buf, offset, head, setup_type, length)
        payload = offset + SETUP_DATA_HEADER
        if setup_type == SETUP_RNG_SEED:
            buf[payload : payload + length] = os.urandom(length)
        elif setup_type == SETUP_IMA and params.ima_buffer is not None:
            struct.pack_into("<QQ", buf, payload, *params.ima_buffer)
        head = params.mem + offset
    struct.pack_into("<Q", buf, _SETUP_DATA, head)
    return bytes(buf)
