"""Reading device-tree blobs the way the kernel's sysfs handlers do: raw, not the daemon's parser.

mkd.devicetree.parse refuses what an operator would not want; the kernel only refuses what its
code checks (spec 5.1, 5.2, 5.4). These helpers open a blob with the kernel's header rules and
decode properties without any schema, so each handler applies exactly its own checks.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Mapping

from mkd.devicetree.fdt import FDT_HEADER_BYTES, FDT_MAGIC, DtNode, open_dtb
from mkd.errors import KernelError

U64_INVALID = 0xFFFF_FFFF_FFFF_FFFF  # the tree's "no CPU" marker (spec 4)
FDT_MIN_VERSION = 16  # libfdt reads versions 16 and 17
FDT_LAST_COMP_VERSION = 17


def einval(detail: str) -> KernelError:
    return KernelError(errno.EINVAL, detail)


def check_header(data: bytes, *, exact_size: bool) -> bytes:
    """fdt_check_header on a sysfs write; returns the blob cut to fdt_totalsize (spec 5.1 rules 1-2, 5.2).

    `exact_size`: the tree baseline refuses a write whose length is not fdt_totalsize (5.1 rule 2).
    v2 and overlays do not compare (5.2 step 1): bytes past totalsize are ignored, and a blob that
    claims more than was written is refused (simulator: the kernel would read past its buffer).
    """
    if len(data) < FDT_HEADER_BYTES:
        raise einval(f"truncated DTB: {len(data)} bytes, shorter than the FDT header")
    magic, totalsize = struct.unpack_from(">II", data)
    if magic != FDT_MAGIC:
        raise einval(f"bad FDT magic 0x{magic:08x}")
    version, last_comp_version = struct.unpack_from(">II", data, 20)
    if version < FDT_MIN_VERSION or last_comp_version > FDT_LAST_COMP_VERSION:
        raise einval(f"unsupported FDT version {version} (last compatible {last_comp_version})")
    if totalsize > len(data) or (exact_size and totalsize != len(data)):
        raise einval(f"fdt_totalsize is {totalsize} bytes but {len(data)} bytes were written")
    return data[:totalsize]


def open_kernel_blob(data: bytes, *, exact_size: bool) -> DtNode:
    """The root of a blob written to sysfs; a bad header or structure is EINVAL."""
    return open_dtb(check_header(data, exact_size=exact_size))


def node_properties(node: DtNode) -> dict[str, bytes]:
    """All properties of `node` (open_dtb refuses a single property over 64 KiB as EINVAL)."""
    return dict(node.properties())


def read_u32(props: Mapping[str, bytes], name: str, where: str) -> int | None:
    """An optional 4-byte cell; another length is EINVAL."""
    value = props.get(name)
    if value is None:
        return None
    if len(value) != 4:
        raise einval(f"{where}/{name}: must be 4 bytes, got {len(value)}")
    return int.from_bytes(value, "big")


def read_u64(props: Mapping[str, bytes], name: str, where: str) -> int | None:
    """An optional 8-byte cell; another length is EINVAL."""
    value = props.get(name)
    if value is None:
        return None
    if len(value) != 8:
        raise einval(f"{where}/{name}: must be 8 bytes, got {len(value)}")
    return int.from_bytes(value, "big")


def read_cells(props: Mapping[str, bytes], name: str, width: int, where: str) -> tuple[int, ...] | None:
    """An optional non-empty list of `width`-byte cells; empty or a ragged length is EINVAL."""
    value = props.get(name)
    if value is None:
        return None
    if not value or len(value) % width:
        raise einval(f"{where}/{name}: must be a non-empty list of {width}-byte cells, got {len(value)} bytes")
    fmt = ">I" if width == 4 else ">Q"
    return tuple(cell for (cell,) in struct.iter_unpack(fmt, value))


def read_string(props: Mapping[str, bytes], name: str) -> str | None:
    """An optional string property: the bytes up to the first NUL (as the kernel's strcmp sees it)."""
    value = props.get(name)
    if value is None:
        return None
    return value.split(b"\0", 1)[0].decode("latin-1")
