"""Byte sizes as people read them in error messages."""

from __future__ import annotations

PAGE_SIZE = 4096
# rfc-v2 carries memory-bytes as a u32; the largest page-aligned u32 (DESIGN "Shapes").
U32_MEMORY_MAX = 0xFFFFF000

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def format_bytes(size: int) -> str:
    """Exact size in the largest unit that divides it ("512 MiB", "1536 MiB", "100 bytes")."""
    if size != 0:
        for unit, scale in _UNITS:
            if size % scale == 0:
                return f"{size // scale} {unit}"
    return f"{size} bytes"


def is_page_aligned(value: int) -> bool:
    return value % PAGE_SIZE == 0
