"""TreeWriter: a tree that fills libfdt's sequential-write buffer exactly still finishes."""

from __future__ import annotations

import libfdt

from mkd.devicetree.fdt import TreeWriter, open_dtb


def test_a_tree_that_fills_the_buffer_exactly_finishes() -> None:
    # Find a property size where the raw buffer has no room for the FDT_END token (what made a
    # boot tree start answer 500 in a bench at 300 instances), and check finish() copes.
    for size in range(0, 12000):
        writer = TreeWriter()
        with writer.node(""):
            writer.prop_bytes("big", b"x" * size)
        try:
            writer._sw.as_fdt()
        except libfdt.FdtException:
            break
    else:
        raise AssertionError("no size fills the buffer exactly")
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_bytes("big", b"x" * size)
    blob = writer.finish()
    assert dict(open_dtb(blob).properties())["big"] == b"x" * size
