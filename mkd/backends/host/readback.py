"""Parse the device trees the kernel exposes: the tree's pool DTB, instance DTBs, v2 DTS text."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import Any

import libfdt

from mkd.errors import KernelError
from mkd.kernel_types import MemChunk

_NOT_FOUND = (libfdt.NOTFOUND,)


@dataclass(frozen=True)
class PoolReadback:
    """spec 5.1 "Read-back of the root device_tree" (tree): the pool as the kernel sees it."""

    cpus: tuple[int, ...]  # members: free plus lent to instances
    cpus_available: tuple[int, ...]
    chunks: tuple[MemChunk, ...]
    devices: tuple[str, ...]

    @property
    def baseline_applied(self) -> bool:
        return bool(self.cpus or self.chunks)


@dataclass(frozen=True)
class InstanceResources:
    cpus: tuple[int, ...]
    memory_base: int | None
    memory_bytes: int
    devices: tuple[str, ...] = ()


class _Tree:
    """A read-only view of a DTB with lookups that answer None instead of raising."""

    def __init__(self, blob: bytes, what: str) -> None:
        try:
            self.fdt = libfdt.FdtRo(blob)
        except libfdt.FdtException as exc:
            raise KernelError(errno.EIO, f"{what} is not a valid DTB: {exc}") from exc

    def node(self, path: str) -> int | None:
        offset: int = self.fdt.path_offset(path, quiet=_NOT_FOUND)
        return offset if offset >= 0 else None

    def prop(self, node: int, name: str) -> Any | None:
        value = self.fdt.getprop(node, name, quiet=_NOT_FOUND)
        return None if isinstance(value, int) else value

    def children(self, node: int) -> list[tuple[str, int]]:
        found = []
        child: int = self.fdt.first_subnode(node, quiet=_NOT_FOUND)
        while child >= 0:
            found.append((str(self.fdt.get_name(child)), child))
            child = self.fdt.next_subnode(child, quiet=_NOT_FOUND)
        return found

    def u64_list(self, node: int, name: str) -> tuple[int, ...]:
        value = self.prop(node, name)
        if value is None or len(value) % 8:
            return ()
        return tuple(int(cell) for cell in value.as_uint64_list())

    def u64(self, node: int, name: str) -> int | None:
        cells = self.u64_list(node, name)
        return cells[0] if len(cells) == 1 else None

    def u32(self, node: int, name: str) -> int | None:
        value = self.prop(node, name)
        return int(value.as_uint32()) if value is not None and len(value) == 4 else None

    def string(self, node: int, name: str) -> str | None:
        value = self.prop(node, name)
        return str(value.as_str()) if value is not None else None


def _device_names(tree: _Tree, resources: int) -> tuple[str, ...]:
    devices = next((offset for name, offset in tree.children(resources) if name == "devices"), None)
    if devices is None:
        return ()
    names = []
    for node_name, offset in tree.children(devices):
        # spec 5.1: PCI devices are named by pci-id, platform devices by device-name or node name.
        if tree.string(offset, "device-type") == "pci":
            names.append(tree.string(offset, "pci-id") or node_name)
        else:
            names.append(tree.string(offset, "device-name") or node_name)
    return tuple(names)


def parse_pool_dtb(blob: bytes) -> PoolReadback:
    tree = _Tree(blob, "the pool device tree")
    resources = tree.node("/resources")
    if resources is None:
        return PoolReadback(cpus=(), cpus_available=(), chunks=(), devices=())
    chunks = []
    for name, offset in tree.children(resources):
        if not name.startswith("memory@"):
            continue
        reg = tree.u64_list(offset, "reg")
        if len(reg) >= 2:
            chunks.append(MemChunk(base=reg[0], bytes=reg[1], numa_node=tree.u32(offset, "numa-node-id")))
    return PoolReadback(
        cpus=tree.u64_list(resources, "cpus"),
        cpus_available=tree.u64_list(resources, "cpus-available"),
        chunks=tuple(sorted(chunks, key=lambda chunk: chunk.base)),
        devices=_device_names(tree, resources),
    )


def parse_instance_dtb(blob: bytes) -> InstanceResources:
    """spec 5.3 "Generated instance DTB": memory-base (first region), memory-bytes (total), cpus."""
    tree = _Tree(blob, "the instance device tree")
    resources = tree.node("/resources")
    if resources is None:
        return InstanceResources(cpus=(), memory_base=None, memory_bytes=0)
    return InstanceResources(
        cpus=tree.u64_list(resources, "cpus"),
        memory_base=tree.u64(resources, "memory-base"),
        memory_bytes=tree.u64(resources, "memory-bytes") or 0,
        devices=_device_names(tree, resources),
    )


_DTS_PROPERTY = re.compile(r"^\s*([A-Za-z0-9,._+#-]+)\s*=\s*(<[^>]*>|\[[^\]]*\])\s*;", re.MULTILINE)


def _dts_u32_cells(value: str) -> tuple[int, ...]:
    # v2 prints 4-byte properties as <decimal> (memory-bytes as <0xhex>) and any other length
    # as [aa bb ...] bytes (spec 5.2), so a multi-CPU `cpus` arrives as big-endian bytes.
    if value.startswith("<"):
        return tuple(int(cell, 0) for cell in value[1:-1].split())
    raw = bytes(int(byte, 16) for byte in value[1:-1].split())
    return tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, len(raw) - len(raw) % 4, 4))


def parse_instance_dts(text: str) -> InstanceResources:
    """v2's `device_tree_source` text (spec 5.2): the `resources` block's cpus and memory-bytes."""
    _, _, resources = text.partition("resources {")
    properties = {name: _dts_u32_cells(value) for name, value in _DTS_PROPERTY.findall(resources)}
    memory = properties.get("memory-bytes", ())
    return InstanceResources(
        cpus=tuple(sorted(properties.get("cpus", ()))),  # v2 stores a cpumask: ordering is lost
        memory_base=None,
        memory_bytes=memory[0] if len(memory) == 1 else 0,
    )
