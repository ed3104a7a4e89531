"""Root and instance device trees per kernel profile (DESIGN "Device trees per profile").

- rfc-v2 root: `/resources` (the daemon's baseline: cpus u32, memory-base/memory-bytes u64,
  llc-way-mask; the v2 kernel ignores it) then `/instances/<name> { id; resources { cpus <u32...>;
  memory-bytes <u32>; ... } }` (spec 5.2).
- tree root: the pool read-back of spec 5.1 — `#address-cells = <2>`, `#size-cells = <2>`, `id = <0>`,
  `/resources { cpus (members); cpus-available (free); memory@<hexbase> { device_type; reg; size;
  numa-node-id } }`. `size` sits beside `reg` so the same tree is also a valid baseline write.
  Tree instances are not part of the root (spec 5.1 rule 3); each has its own tree.
- instance trees: rfc-v2 a one-instance v2 DTB (spec 5.2 step 1), or its `device_tree_source` text;
  tree the generated instance DTB of spec 5.3.
Instances carry `llc-way-mask`, `numa-nodes` and `devices` too when they have them, so a tree
read back through parse_instance_plan means what the instance has.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence

from mkd.devicetree.emit import COMPATIBLE, write_devices, write_u32
from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.props import u32_cells, u64_cells
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelInstance, KernelProfile, MemChunk, PoolSpec

_U32_MAX = 0xFFFF_FFFF


def build_root_tree(
    profile: KernelProfile,
    pool: PoolSpec | None,
    *,
    chunks: Sequence[MemChunk] = (),
    free_cpus: Sequence[int] = (),
    instances: Sequence[InstanceSpec] = (),
    aliases: Mapping[str, str] | None = None,
) -> bytes:
    """The root device tree of `profile`; under tree, `instances` are not part of it. `aliases`
    (alias -> pool device, spec 8.5.1) become `/aliases` entries naming the device nodes."""
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_string("compatible", COMPATIBLE)
        if profile == "rfc-v2":
            if pool is not None:
                _write_v2_baseline(writer, pool)
            with writer.node("instances"):
                for spec in instances:
                    _write_v2_instance(
                        writer,
                        spec.name,
                        spec.id,
                        cpus=spec.cpus,
                        memory_bytes=spec.memory_bytes,
                        llc_way_mask=spec.llc_way_mask,
                        numa_node=spec.numa_node,
                        devices=spec.devices,
                    )
        else:
            _write_cell_counts(writer)
            write_u32(writer, "id", 0)  # spec 5.1 read-back: the host is id 0
            if pool is not None:
                pool_chunks = list(chunks) or _pool_as_chunk(pool)
                _write_tree_pool(writer, pool, pool_chunks, free_cpus)
                _write_aliases(writer, pool.devices, aliases or {})
    return writer.finish()


def build_baseline_dtb(spec: PoolSpec, *, numa_chunks: Sequence[MemChunk] = ()) -> bytes:
    """The tree baseline written to /sys/fs/multikernel/device_tree (spec 5.1 tree schema).

    One memory@ node per requested chunk (`numa_chunks`, each with its node), else one for the
    whole pool; the unit address carries memory_base as a hint, the kernel picks the real base.
    Devices are left out: the kernel requires vendor-id/device-id for PCI baseline devices, which
    a PoolSpec lacks; the host backend moves them with a /resources device-add overlay instead.
    """
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_string("compatible", COMPATIBLE)
        with writer.node("resources"):
            writer.prop_bytes("cpus", u64_cells(spec.cpus))
            if spec.llc_way_mask is not None:
                write_u32(writer, "llc-way-mask", spec.llc_way_mask)
            for chunk in list(numa_chunks) or _pool_as_chunk(spec):
                with writer.node(f"memory@{chunk.base:x}"):
                    writer.prop_bytes("size", u64_cells([chunk.bytes]))
                    if chunk.numa_node is not None:
                        write_u32(writer, "numa-node-id", chunk.numa_node)
    return writer.finish()


def build_instance_tree(profile: KernelProfile, inst: KernelInstance) -> bytes:
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_string("compatible", COMPATIBLE)
        if profile == "rfc-v2":
            with writer.node("instances"):
                _write_v2_instance(
                    writer,
                    inst.name,
                    inst.id,
                    cpus=inst.cpus,
                    memory_bytes=inst.memory_bytes,
                    llc_way_mask=inst.llc_way_mask,
                    numa_node=None,
                    devices=inst.devices,
                )
        else:
            _write_tree_instance(writer, inst)
    return writer.finish()


def v2_device_tree_source(inst: KernelInstance) -> str:
    """The text of v2's instances/<name>/device_tree_source (spec 5.2), byte for byte.

    4-byte properties print as `<%u>`, `memory-bytes` as hex with `// N MB`, other lengths as
    `[aa bb ...]` — so a multi-CPU `cpus` prints as bytes, as the kernel's printer does.
    """
    lines = [
        "/dts-v1/;",
        "",
        f"/{inst.name} {{",
        f'\tcompatible = "{COMPATIBLE}";',
        f"\tid = <{inst.id}>;",
        "\tresources {",
    ]
    if inst.cpus:
        lines.append(f"\t\tcpus = {_v2_value(u32_cells(inst.cpus))};")
    if inst.memory_bytes:
        memory = _v2_u32("memory-bytes", inst.name, inst.memory_bytes)
        lines.append(f"\t\tmemory-bytes = <0x{memory:x}>; // {memory >> 20} MB")
    if inst.llc_way_mask is not None:
        lines.append(f"\t\tllc-way-mask = <{inst.llc_way_mask}>;")
    lines += ["\t};", "};", ""]
    return "\n".join(lines)


def _v2_value(value: bytes) -> str:
    if len(value) == 4:
        return f"<{int.from_bytes(value, 'big')}>"
    return "[" + " ".join(f"{byte:02x}" for byte in value) + "]"


def _v2_u32(prop: str, name: str, value: int) -> int:
    # Spec 5.2: v2 reads memory-bytes as exactly 4 bytes; a larger value cannot be said in v2.
    if value > _U32_MAX:
        raise KernelError(errno.ERANGE, f"{name}: {prop} {value} does not fit the u32 cell of a v2 tree")
    return value


def _pool_as_chunk(pool: PoolSpec) -> list[MemChunk]:
    return [MemChunk(base=pool.memory_base, bytes=pool.memory_bytes)] if pool.memory_bytes else []


def _write_cell_counts(writer: TreeWriter) -> None:
    write_u32(writer, "#address-cells", 2)
    write_u32(writer, "#size-cells", 2)


def _write_v2_baseline(writer: TreeWriter, pool: PoolSpec) -> None:
    with writer.node("resources"):
        writer.prop_bytes("cpus", u32_cells(pool.cpus))
        writer.prop_bytes("memory-base", u64_cells([pool.memory_base]))
        writer.prop_bytes("memory-bytes", u64_cells([pool.memory_bytes]))
        if pool.llc_way_mask is not None:
            write_u32(writer, "llc-way-mask", pool.llc_way_mask)
        write_devices(writer, pool.devices)


def _write_v2_instance(
    writer: TreeWriter,
    name: str,
    instance_id: int,
    *,
    cpus: Sequence[int],
    memory_bytes: int,
    llc_way_mask: int | None,
    numa_node: int | None,
    devices: Sequence[str],
) -> None:
    with writer.node(name):
        write_u32(writer, "id", instance_id)
        with writer.node("resources"):
            if cpus:
                writer.prop_bytes("cpus", u32_cells(cpus))
            # Spec 5.2: memory-bytes is optional but, when present, non-zero.
            if memory_bytes:
                write_u32(writer, "memory-bytes", _v2_u32("memory-bytes", name, memory_bytes))
            if llc_way_mask is not None:
                write_u32(writer, "llc-way-mask", llc_way_mask)
            if numa_node is not None:
                write_u32(writer, "numa-nodes", numa_node)
            write_devices(writer, devices)


def _write_tree_pool(writer: TreeWriter, pool: PoolSpec, chunks: Sequence[MemChunk], free_cpus: Sequence[int]) -> None:
    with writer.node("resources"):
        writer.prop_bytes("cpus", u64_cells(pool.cpus))
        writer.prop_bytes("cpus-available", u64_cells(free_cpus))
        if pool.llc_way_mask is not None:
            write_u32(writer, "llc-way-mask", pool.llc_way_mask)
        for chunk in chunks:
            with writer.node(f"memory@{chunk.base:x}"):
                writer.prop_string("device_type", "memory")
                writer.prop_bytes("reg", u64_cells([chunk.base, chunk.bytes]))
                writer.prop_bytes("size", u64_cells([chunk.bytes]))
                if chunk.numa_node is not None:
                    write_u32(writer, "numa-node-id", chunk.numa_node)
        write_devices(writer, pool.devices)


def _write_aliases(writer: TreeWriter, devices: Sequence[str], aliases: Mapping[str, str]) -> None:
    paths = {device: f"/resources/devices/device@{index}" for index, device in enumerate(devices)}
    known = {alias: paths[device] for alias, device in sorted(aliases.items()) if device in paths}
    if not known:
        return
    with writer.node("aliases"):
        for alias, path in known.items():
            writer.prop_string(alias, path)


def _write_tree_instance(writer: TreeWriter, inst: KernelInstance) -> None:
    # Spec 5.3 "Generated instance DTB".
    writer.prop_string("model", inst.name)
    _write_cell_counts(writer)
    write_u32(writer, "id", inst.id)
    with writer.node("resources"):
        if inst.memory:
            writer.prop_bytes("memory-base", u64_cells([inst.memory[0].base]))
        writer.prop_bytes("memory-bytes", u64_cells([inst.memory_bytes]))
        if inst.cpus:
            writer.prop_bytes("cpus", u64_cells(inst.cpus))
        if inst.llc_way_mask is not None:
            write_u32(writer, "llc-way-mask", inst.llc_way_mask)
        write_devices(writer, inst.devices)
