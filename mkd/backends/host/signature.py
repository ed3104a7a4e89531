"""Whether a kernel image carries an Authenticode (PE) signature, as kexec signature checks need.

spec 2.7.1 step 3: with enforcement on, kexec_file_load verifies the image's PE signature; an
image without one (an unsigned bzImage, any extracted vmlinux ELF) is refused.
"""

from __future__ import annotations

import struct
from pathlib import Path

_PE32 = 0x10B
_PE32_PLUS = 0x20B
_SECURITY_DIRECTORY = 4  # IMAGE_DIRECTORY_ENTRY_SECURITY: the Authenticode certificate table


def pe_signature_size(data: bytes) -> int | None:
    """Size of the certificate table of a PE image; None when the bytes are not a PE image."""
    if data[:2] != b"MZ" or len(data) < 0x40:
        return None
    (pe_offset,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe_offset : pe_offset + 4] != b"PE\0\0":
        return None
    optional = pe_offset + 24  # after the signature and the 20-byte COFF header
    if len(data) < optional + 2:
        return None
    (magic,) = struct.unpack_from("<H", data, optional)
    if magic == _PE32:
        count_at, directories = optional + 92, optional + 96
    elif magic == _PE32_PLUS:
        count_at, directories = optional + 108, optional + 112
    else:
        return None
    entry = directories + 8 * _SECURITY_DIRECTORY
    if len(data) < entry + 8:
        return None
    (count,) = struct.unpack_from("<I", data, count_at)
    if count <= _SECURITY_DIRECTORY:
        return 0
    _file_offset, size = struct.unpack_from("<II", data, entry)
    return int(size)


def image_is_pe_signed(path: Path) -> bool:
    """True when the image is a PE file with a non-empty certificate table."""
    with open(path, "rb") as image:
        # The headers sit in the first pages; the table itself is not read or verified here.
        head = image.read(64 * 1024)
    size = pe_signature_size(head)
    return bool(size)
