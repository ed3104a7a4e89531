"""Synthetic kernel images and initrds with exactly the header fields the loaders read (spec 2.7).

Nothing here boots; the images only carry valid-looking headers so the simulated loaders take
the same decisions a kernel would.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

# x86 setup header offsets (spec 2.7.2 table).
_SETUP_SECTS = 0x1F1
_BOOT_FLAG = 0x1FE
_JUMP = 0x200
_HEADER = 0x202
_VERSION = 0x206
_LOADFLAGS = 0x211
_KERNEL_ALIGNMENT = 0x230
_RELOCATABLE = 0x234
_XLOADFLAGS = 0x236
_CMDLINE_SIZE = 0x238
_PAYLOAD_OFFSET = 0x248
_PAYLOAD_LENGTH = 0x24C
_PREF_ADDRESS = 0x258
_INIT_SIZE = 0x260


def bzimage(
    *,
    setup_sects: int = 27,
    boot_flag: int = 0xAA55,
    header: bytes = b"HdrS",
    version: int = 0x020F,
    loadflags: int = 0x01,
    xloadflags: int = 0x3,
    cmdline_size: int = 2047,
    kernel_alignment: int = 0x200000,
    pref_address: int = 0x1000000,
    init_size: int = 0x2A1E000,
    payload_offset: int = 0,
    payload_length: int = 0,
    total_len: int = 10_485_760,
) -> bytes:
    """A bzImage whose setup header has the given fields ("bz(...)" of spec 2.7.6)."""
    size = max(total_len, 0)
    image = bytearray(max(size, 0x268))
    image[_SETUP_SECTS] = setup_sects & 0xFF
    struct.pack_into("<H", image, _BOOT_FLAG, boot_flag)
    image[_JUMP] = 0xEB  # short jmp over the header, as real images have
    image[_JUMP + 1] = 0x66
    image[_HEADER : _HEADER + 4] = header[:4].ljust(4, b"\0")
    struct.pack_into("<H", image, _VERSION, version)
    image[_LOADFLAGS] = loadflags & 0xFF
    struct.pack_into("<I", image, _KERNEL_ALIGNMENT, kernel_alignment)
    image[_RELOCATABLE] = 1
    struct.pack_into("<H", image, _XLOADFLAGS, xloadflags)
    struct.pack_into("<I", image, _CMDLINE_SIZE, cmdline_size)
    struct.pack_into("<I", image, _PAYLOAD_OFFSET, payload_offset)
    struct.pack_into("<I", image, _PAYLOAD_LENGTH, payload_length)
    struct.pack_into("<Q", image, _PREF_ADDRESS, pref_address)
    struct.pack_into("<I", image, _INIT_SIZE, init_size)
    kern16 = ((setup_sects or 4) + 1) * 512
    payload_at = kern16 + payload_offset
    if payload_length >= 2 and payload_at + 2 <= size:
        image[payload_at : payload_at + 2] = b"\x1f\x8b"  # a gzip-compressed payload, as kerf expects
    return bytes(image[:size])


_ELF_HEADER = struct.Struct("<4sBBBBB7sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_PT_LOAD = 1
_PT_NOTE = 4
_PF_RX = 5
_KERNEL_VIRT_OFFSET = 0xFFFFFFFF80000000
_MK_NOTE_TYPE = 0x4D4B


def _note(name: bytes, note_type: int, desc: bytes) -> bytes:
    def pad4(data: bytes) -> bytes:
        return data + b"\0" * (-len(data) % 4)

    return struct.pack("<III", len(name), len(desc), note_type) + pad4(name) + pad4(desc)


def vmlinux(
    *,
    pt_loads: Sequence[tuple[int, int, int]] = ((0x1000000, 0x1800000, 0x1000), (0x2800000, 0x200000, 0x1000)),
    mk_entry: int | None = 0x1000040,
    ipi_abi_version: int = 1,
    note_desc_size: int = 16,
    machine: int = 62,
    e_type: int = 2,
    elf_class: int = 2,
    truncate_phdrs: bool = False,
) -> bytes:
    """An ELF64 vmlinux: PT_LOADs given as (paddr, memsz, filesz) and a PT_NOTE.

    The note segment always has a GNU build-id note; the multikernel "MK" note (spec 2.7.3) is added
    when mk_entry is not None, with a 16-byte {entry, ipi_abi_version, reserved} or a legacy 8-byte
    {entry} descriptor.
    """
    notes = _note(b"GNU\0", 3, bytes(range(20)))
    if mk_entry is not None:
        desc = struct.pack("<QII", mk_entry, ipi_abi_version, 0)
        notes += _note(b"Linux\0", _MK_NOTE_TYPE, desc[:note_desc_size].ljust(note_desc_size, b"\0"))
    phnum = len(pt_loads) + 1
    phoff = _ELF_HEADER.size
    notes_offset = phoff + phnum * _PHDR.size
    data_offset = (notes_offset + len(notes) + 0xFFF) & ~0xFFF
    phdrs = bytearray()
    body = bytearray()
    offset = data_offset
    for paddr, memsz, filesz in pt_loads:
        phdrs += _PHDR.pack(_PT_LOAD, _PF_RX, offset, paddr + _KERNEL_VIRT_OFFSET, paddr, filesz, memsz, 0x1000)
        # A recognisable, non-zero pattern so digests of laid-out images differ from zero fill.
        body += (struct.pack("<Q", paddr) * (filesz // 8 + 1))[:filesz]
        offset += filesz
    phdrs += _PHDR.pack(_PT_NOTE, 4, notes_offset, 0, 0, len(notes), len(notes), 4)
    e_entry = (pt_loads[0][0] if pt_loads else 0) + _KERNEL_VIRT_OFFSET
    ident = b"\x7fELF"
    header = _ELF_HEADER.pack(
        ident,
        elf_class,
        1,
        1,
        0,
        0,
        b"\0" * 7,
        e_type,
        machine,
        1,
        e_entry,
        phoff,
        0,
        0,
        _ELF_HEADER.size,
        _PHDR.size,
        phnum,
        64,
        0,
        0,
    )
    image = bytearray(header) + phdrs + notes
    if truncate_phdrs:
        # Keep the ELF header and one program header: e_phoff + e_phnum*56 now exceeds the file.
        return bytes(image[: phoff + _PHDR.size])
    image += b"\0" * (data_offset - len(image))
    image += body
    return bytes(image)


def arm64_image(
    *,
    text_offset: int = 0,
    image_size: int = 0x1E30000,
    file_len: int = 0x1C00000,
    flags: int = 0b0010,
    magic: bytes = b"ARM\x64",
) -> bytes:
    """An arm64 Image (spec 2.7.4 header); flags 0b0010 = little endian, 4K pages."""
    header = struct.pack(
        "<IIQQQQQQ4sI",
        0xFA405A4D,  # "MZ" + a branch, as EFI-stub kernels start
        0,
        text_offset,
        image_size,
        flags,
        0,
        0,
        0,
        magic[:4].ljust(4, b"\0"),
        0x40,
    )
    return (header + b"\0" * max(file_len - len(header), 0))[:file_len]


_INITRD_HEADS: dict[str, bytes] = {
    "cpio": b"070701",
    "gzip": b"\x1f\x8b\x08\x00",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
    "lz4": b"\x02\x21\x4c\x18",
    "bzip2": b"BZh9",
}


def initrd(kind: Literal["cpio", "gzip", "xz", "zstd", "lz4", "bzip2"] = "cpio", size: int = 4096) -> bytes:
    """An initrd of `size` bytes starting with the magic of `kind`."""
    head = _INITRD_HEADS[kind]
    return (head + b"\0" * max(size - len(head), 0))[:size]


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_sized(path: Path, head: bytes, total: int) -> Path:
    """Write `head`, then extend the file with zeros to `total` bytes (sparse where supported)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(head[:total])
        out.truncate(total)
    return path
