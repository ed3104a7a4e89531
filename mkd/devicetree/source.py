"""Turn a request body (DTS text or DTB, the bytes decide) into the root of a validated tree."""

from __future__ import annotations

from mkd.devicetree.dts import dts_to_dtb, is_dtb
from mkd.devicetree.fdt import DtNode, invalid, open_dtb
from mkd.devicetree.limits import MAX_DT_BYTES
from mkd.errors import PayloadTooLarge


def load_tree(data: bytes, *, max_bytes: int = MAX_DT_BYTES) -> DtNode:
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"device tree is {len(data)} bytes; the limit is {max_bytes} ([limits] max_dt_bytes)")
    if is_dtb(data):
        return open_dtb(data)
    # DESIGN "Input in both profiles": without the FDT magic the body must be DTS text.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            f"neither a DTB (first bytes {data[:4].hex()}, not the FDT magic d00dfeed) "
            f"nor UTF-8 DTS text (bad byte at offset {exc.start})"
        ) from exc
    if "\0" in text:
        raise invalid("neither a DTB (no FDT magic d00dfeed) nor DTS text (it contains NUL bytes)")
    return open_dtb(dts_to_dtb(text))
