"""Informational image format detection for the image store (DESIGN.md "Image").

The loaders' probes decide at load time; this only labels what a file looks like from its head.
"""

from __future__ import annotations

from typing import Literal

ImageFormat = Literal["bzImage", "elf", "arm64-image", "initrd", "unknown"]

HEAD_BYTES = 4096

_INITRD_MAGICS: tuple[bytes, ...] = (
    b"070701",  # cpio newc
    b"070702",  # cpio newc with CRC
    b"\x1f\x8b",  # gzip
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # zstd
    b"\x02\x21\x4c\x18",  # lz4 legacy
    b"\x04\x22\x4d\x18",  # lz4 frame
    b"BZh",  # bzip2
)


def detect_image_format(head: bytes) -> ImageFormat:
    """Label a file from its first HEAD_BYTES bytes."""
    # The x86 boot protocol header: "HdrS" at 0x202 and the boot sector flag at 0x1fe (spec 2.7.2).
    if len(head) >= 0x206 and head[0x202:0x206] == b"HdrS" and head[0x1FE:0x200] == b"\x55\xaa":
        return "bzImage"
    if head[:4] == b"\x7fELF":
        return "elf"
    # arm64 Image header magic at offset 56 (spec 2.7.4).
    if len(head) >= 64 and head[56:60] == b"ARM\x64":
        return "arm64-image"
    if any(head.startswith(magic) for magic in _INITRD_MAGICS):
        return "initrd"
    return "unknown"
