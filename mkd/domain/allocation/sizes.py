"""Byte sizes as people read them in error messages."""

from __future__ import annotations

from mkd.kernel_types import PAGE_SIZE

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
