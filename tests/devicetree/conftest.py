"""Fixtures for the device-tree library tests: sample pools and instances, and a tree reader."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mkd.devicetree.dts import dtb_to_dts, dts_to_dtb
from mkd.devicetree.fdt import DtNode, open_dtb
from mkd.kernel_types import InstanceSpec, KernelInstance, MemChunk, PoolSpec

TreeDict = dict[str, dict[str, bytes]]


def _walk(node: DtNode, out: TreeDict) -> None:
    out[node.path] = dict(node.properties())
    for child in node.children():
        _walk(child, out)


@pytest.fixture
def tree_dict() -> Callable[[bytes], TreeDict]:
    """A DTB as {node path: {property: value bytes}}: its meaning, independent of blob layout."""

    def read(dtb: bytes) -> TreeDict:
        out: TreeDict = {}
        _walk(open_dtb(dtb), out)
        return out

    return read


@pytest.fixture
def via_dts() -> Callable[[bytes], bytes]:
    """DTB → dtc → DTS text → dtc → DTB."""

    def round_trip(dtb: bytes) -> bytes:
        return dts_to_dtb(dtb_to_dts(dtb))

    return round_trip


@pytest.fixture
def pool() -> PoolSpec:
    return PoolSpec(
        cpus=(2, 3, 4, 5, 6, 7),
        memory_base=0x1_0000_0000,
        memory_bytes=1 << 30,
        llc_way_mask=0xF0,
        devices=("0000:65:00.0", "uart1"),
    )


@pytest.fixture
def pool_chunks() -> tuple[MemChunk, ...]:
    return (MemChunk(0x1_0000_0000, 1 << 29, 0), MemChunk(0x2_0000_0000, 1 << 29, 1))


@pytest.fixture
def instance_specs() -> tuple[InstanceSpec, ...]:
    return (
        InstanceSpec(
            id=1,
            name="web",
            cpus=(3, 2),
            memory_bytes=512 << 20,
            llc_way_mask=0x30,
            devices=("0000:65:00.0",),
            numa_node=0,
        ),
        InstanceSpec(id=7, name="db.primary", cpus=(4,), memory_bytes=256 << 20),
    )


@pytest.fixture
def kernel_instance() -> KernelInstance:
    return KernelInstance(
        id=1,
        name="web",
        kernel_state="ready",
        cpus=(1,),
        memory=(MemChunk(0x1_0000_0000, 256 << 20), MemChunk(0x1_4000_0000, 256 << 20)),
        memory_bytes=512 << 20,
        llc_way_mask=None,
        devices=(),
        kimage=None,
    )
