"""Tree-profile overlays (spec 5.3, 5.4; Documentation/multikernel/overlays.rst) for the host backend.

Every builder returns a DTBO of one `fragment@0 { target-path; __overlay__ { <ops> } }`, with the
op nodes written in the order the kernel applies them (spec 5.4), so the blob reads as it runs.

Item layouts (overlays.rst where it gives one; the choices marked * are mkd's):
- instance-create (target /instances): `instance-name`, `id` <u32>, `resources { memory-bytes
  /bits/ 64; cpus /bits/ 64 <phys...>; numa-nodes <u32>; llc-way-mask <u32>; devices { device@N } }`
  (spec 5.3; memory-bytes and cpus left out when zero / empty).
- instance-remove (target /instances): `instance-name`.
- memory-remove: `memory@<hexbase> { reg = /bits/ 64 <base size>; numa-node-id? }` (must name a
  whole chunk under /resources).
- memory-add under /resources: `memory@<N> { size = /bits/ 64 <bytes>; numa-node-id? }` — the pool
  picks the base, `reg` is rejected there.
- memory-add under /instances/<name>: given chunks, `memory@<hexbase> { reg; numa-node-id? }`
  naming pool ranges (overlays.rst); *given a byte count, `memory@0 { size = /bits/ 64 <bytes>; }`,
  the /resources request form, asking the kernel to carve that much from the pool.
- cpu-add / cpu-remove: `cpu@<hexid> { reg = /bits/ 64 <phys id>; }` (u64; the kernel takes 4 or 8).
- device-add / device-remove: `pci@<N> { pci-id = "DDDD:BB:SS.F"; }`; *a non-PCI name is written as
  `platform@<N> { device-name = "..."; }`, which overlays.rst does not describe.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from mkd.devicetree.emit import write_devices, write_u32
from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.names import is_pci_id
from mkd.devicetree.props import u32_cells, u64_cells
from mkd.kernel_types import InstanceSpec, MemChunk


def build_instance_create_overlay(spec: InstanceSpec) -> bytes:
    writer = TreeWriter()
    with _fragment(writer, "/instances"), writer.node("instance-create"):
        writer.prop_string("instance-name", spec.name)
        write_u32(writer, "id", spec.id)
        with writer.node("resources"):
            # Spec 5.3: memory-bytes, when present, is 8 bytes and non-zero; cpus 8-byte cells.
            if spec.memory_bytes:
                writer.prop_bytes("memory-bytes", u64_cells([spec.memory_bytes]))
            if spec.cpus:
                writer.prop_bytes("cpus", u64_cells(spec.cpus))
            if spec.numa_node is not None:
                writer.prop_bytes("numa-nodes", u32_cells([spec.numa_node]))
            if spec.llc_way_mask is not None:
                write_u32(writer, "llc-way-mask", spec.llc_way_mask)
            write_devices(writer, spec.devices)
    return writer.finish()


def build_instance_remove_overlay(name: str) -> bytes:
    writer = TreeWriter()
    with _fragment(writer, "/instances"), writer.node("instance-remove"):
        writer.prop_string("instance-name", name)
    return writer.finish()


def build_instance_update_overlay(
    name: str,
    *,
    memory_remove: Sequence[MemChunk] = (),
    memory_add: int | Sequence[MemChunk] = 0,
    cpu_remove: Sequence[int] = (),
    cpu_add: Sequence[int] = (),
    device_remove: Sequence[str] = (),
    device_add: Sequence[str] = (),
) -> bytes:
    """Resource changes of one instance; spec 5.4 instance order: memory, cpus, devices."""
    writer = TreeWriter()
    with _fragment(writer, f"/instances/{name}"):
        _memory_op(writer, "memory-remove", memory_remove)
        if isinstance(memory_add, int):
            if memory_add:
                with writer.node("memory-add"), writer.node("memory@0"):
                    writer.prop_bytes("size", u64_cells([memory_add]))
        else:
            _memory_op(writer, "memory-add", memory_add)
        _cpu_op(writer, "cpu-remove", cpu_remove)
        _cpu_op(writer, "cpu-add", cpu_add)
        _device_op(writer, "device-remove", device_remove)
        _device_op(writer, "device-add", device_add)
    return writer.finish()


def build_resources_overlay(
    *,
    cpu_remove: Sequence[int] = (),
    cpu_add: Sequence[int] = (),
    memory_remove: Sequence[MemChunk] = (),
    memory_add: Sequence[MemChunk] = (),
    device_remove: Sequence[str] = (),
    device_add: Sequence[str] = (),
) -> bytes:
    """Pool changes; spec 5.4 /resources order: cpu-remove, device-remove, memory-remove,
    memory-add, cpu-add, device-add. `memory_add` chunks give size and NUMA node; the pool
    picks the base."""
    writer = TreeWriter()
    with _fragment(writer, "/resources"):
        _cpu_op(writer, "cpu-remove", cpu_remove)
        _device_op(writer, "device-remove", device_remove)
        _memory_op(writer, "memory-remove", memory_remove)
        if memory_add:
            with writer.node("memory-add"):
                for index, chunk in enumerate(memory_add):
                    with writer.node(f"memory@{index}"):
                        writer.prop_bytes("size", u64_cells([chunk.bytes]))
                        if chunk.numa_node is not None:
                            write_u32(writer, "numa-node-id", chunk.numa_node)
        _cpu_op(writer, "cpu-add", cpu_add)
        _device_op(writer, "device-add", device_add)
    return writer.finish()


@contextmanager
def _fragment(writer: TreeWriter, target_path: str) -> Iterator[None]:
    """`/ { fragment@0 { target-path; __overlay__ { <ops> } } }` around the ops."""
    with writer.node(""), writer.node("fragment@0"):
        writer.prop_string("target-path", target_path)
        with writer.node("__overlay__"):
            yield


def _memory_op(writer: TreeWriter, op: str, chunks: Sequence[MemChunk]) -> None:
    if not chunks:
        return
    with writer.node(op):
        for chunk in chunks:
            with writer.node(f"memory@{chunk.base:x}"):
                writer.prop_bytes("reg", u64_cells([chunk.base, chunk.bytes]))
                if chunk.numa_node is not None:
                    write_u32(writer, "numa-node-id", chunk.numa_node)


def _cpu_op(writer: TreeWriter, op: str, cpus: Sequence[int]) -> None:
    if not cpus:
        return
    with writer.node(op):
        for cpu in cpus:
            with writer.node(f"cpu@{cpu:x}"):
                writer.prop_bytes("reg", u64_cells([cpu]))


def _device_op(writer: TreeWriter, op: str, devices: Sequence[str]) -> None:
    if not devices:
        return
    with writer.node(op):
        for index, device in enumerate(devices):
            if is_pci_id(device):
                with writer.node(f"pci@{index}"):
                    writer.prop_string("pci-id", device)
            else:
                with writer.node(f"platform@{index}"):
                    writer.prop_string("device-name", device)
