"""Property values: big-endian cell encoding for output, checked decoding for input.

Decoders name the node path and property in every refusal, e.g.
"/instances/web/resources/memory-bytes: must be 4 bytes (u32) in a v2 tree, got 8".
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from mkd.devicetree.fdt import invalid


def u32_cells(values: Iterable[int]) -> bytes:
    items = list(values)
    return struct.pack(f">{len(items)}I", *items)


def u64_cells(values: Iterable[int]) -> bytes:
    items = list(values)
    return struct.pack(f">{len(items)}Q", *items)


def cells(values: Iterable[int], width: int) -> bytes:
    return u32_cells(values) if width == 4 else u64_cells(values)


def _width_name(width: int) -> str:
    return "u32" if width == 4 else "u64"


def decode_int(where: str, value: bytes, width: int, context: str = "") -> int:
    """One cell of exactly `width` bytes (4 or 8)."""
    if len(value) != width:
        suffix = f" {context}" if context else ""
        raise invalid(f"{where}: must be {width} bytes ({_width_name(width)}){suffix}, got {len(value)}")
    return int.from_bytes(value, "big")


def decode_int_list(where: str, value: bytes, width: int, context: str = "") -> tuple[int, ...]:
    """A non-empty list of `width`-byte cells."""
    suffix = f" {context}" if context else ""
    if not value:
        raise invalid(f"{where}: must not be empty")
    if len(value) % width:
        raise invalid(
            f"{where}: must be a list of {width}-byte ({_width_name(width)}) cells{suffix}, got {len(value)} bytes"
        )
    fmt = ">I" if width == 4 else ">Q"
    return tuple(cell for (cell,) in struct.iter_unpack(fmt, value))


def decode_string(where: str, value: bytes) -> str:
    """One NUL-terminated printable ASCII string (names, ids, types)."""
    if not value.endswith(b"\0") or b"\0" in value[:-1]:
        raise invalid(f"{where}: must be a single NUL-terminated string")
    text = value[:-1]
    if not text.isascii() or not text.decode().isprintable():
        raise invalid(f"{where}: must be printable ASCII")
    return text.decode()


def decode_string_list(where: str, value: bytes) -> tuple[str, ...]:
    """A `compatible`-style list of NUL-terminated strings."""
    if not value.endswith(b"\0"):
        raise invalid(f"{where}: must be NUL-terminated strings")
    return tuple(decode_string(where, part + b"\0") for part in value[:-1].split(b"\0"))
