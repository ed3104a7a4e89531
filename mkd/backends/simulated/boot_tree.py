"""The spawn's boot device tree, built at every start (spec 8.9, 6.4 tree).

It reflects the instance's CPUs, memory, devices and virtio devices at the moment of the start,
so what changed while the instance was LOADED takes effect there. `/chosen` follows the
release's layout (`[simulator] chosen_layout`, spec 8.9.2): `pool-cpus` lists the CPUs the spawn
may online later (free pool CPUs and the other instances' CPUs, never its own or the host's),
`host-tree` embeds a node whose `cpus` are every CPU of the machine. A tree larger than its page
is ENOSPC and the start does not happen.
"""

from __future__ import annotations

import errno

from mkd.backends.simulated import sysfs_dt
from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.config import SimulatorSettings
from mkd.devicetree.emit import COMPATIBLE, write_devices, write_u32
from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.props import u64_cells
from mkd.errors import KernelError

BOOT_TREE_MAX_BYTES = 64 << 10  # MK_BOOT_DTB_SIZE: the page the manifest tree is finalised into
VIRTIO_TABLE_BYTES = 4096 + 16 * 1024  # spec 8.6.5: header page + 16 entries of 1024 bytes
VIRTIO_ENTRY_BYTES = 1024
IPI_PAGES = 16  # simulator: the size of each IPI ring area in pages
_IPI_AREA = 0x7F00_0000_0000  # simulator: kernel memory holding the rings (not instance memory)


def enumerated_cpus(model: KernelModel, inst: InstanceRecord, settings: SimulatorSettings) -> list[int]:
    """The CPU phys ids the spawn knows at boot beyond its own: only these can be hot-added (8.7.1)."""
    own = set(inst.cpus)
    if settings.chosen_layout == "host-tree":
        return [cpu for cpu in range(settings.cpus) if cpu not in own]
    others = {cpu for other in model.instances.values() if other.id != inst.id for cpu in other.cpus}
    return sorted((set(model.free_cpus()) | others) - own)


def build(model: KernelModel, inst: InstanceRecord, settings: SimulatorSettings, cmdline: bytes) -> bytes:
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_string("compatible", COMPATIBLE)
        writer.prop_string("model", inst.name)
        write_u32(writer, "#address-cells", 2)
        write_u32(writer, "#size-cells", 2)
        write_u32(writer, "id", inst.id)
        with writer.node("resources"):
            if inst.chunks:
                writer.prop_bytes("memory-base", u64_cells([inst.chunks[0][0]]))
            writer.prop_bytes("memory-bytes", u64_cells([inst.memory_bytes]))
            writer.prop_bytes("cpus", u64_cells(inst.cpus))
            if settings.llc_way_masks and inst.llc_way_mask is not None:
                write_u32(writer, "llc-way-mask", inst.llc_way_mask)
            write_devices(writer, inst.devices)
        for base, size in inst.chunks:
            with writer.node(f"memory@{base:x}"):
                writer.prop_string("device_type", "memory")
                writer.prop_bytes("reg", u64_cells([base, size]))
        aliases = {a: name for a, name in sorted(model.pool_aliases.items()) if name in inst.devices}
        if aliases:  # spec 8.5.1: a pool alias follows its device into the instance
            with writer.node("aliases"):
                for alias, name in aliases.items():
                    writer.prop_string(alias, f"/resources/devices/device@{inst.devices.index(name)}")
        with writer.node("chosen"):
            writer.prop_bytes("bootargs", cmdline + b"\0")
            _write_chosen(writer, model, inst, settings)
        table = _virtio_table(inst)
        for index, device in enumerate(inst.virtio):
            entry = table + 4096 + index * VIRTIO_ENTRY_BYTES
            with writer.node(f"virtio@{entry:x}"):
                writer.prop_string("compatible", "multikernel,virtio")
                writer.prop_bytes("reg", u64_cells([entry, VIRTIO_ENTRY_BYTES]))
                writer.prop_bytes("multikernel,table", u64_cells([table]))
                write_u32(writer, "device-id", device.device_id)
    blob = writer.finish()
    if len(blob) > BOOT_TREE_MAX_BYTES:
        raise KernelError(
            errno.ENOSPC,
            f"the boot device tree needs {len(blob)} bytes; its page holds {BOOT_TREE_MAX_BYTES}",
            instance_id=inst.id,
        )
    return blob


def _write_chosen(writer: TreeWriter, model: KernelModel, inst: InstanceRecord, settings: SimulatorSettings) -> None:
    ring = _IPI_AREA + inst.id * 2 * IPI_PAGES * 4096
    if settings.chosen_layout == "pool-cpus":
        writer.prop_bytes("multikernel,pool-cpus", u64_cells(enumerated_cpus(model, inst, settings)))
        writer.prop_bytes("multikernel,host-tree", sysfs_dt.read_root(model))  # the takeover note
        writer.prop_bytes("multikernel,host-ipi-buffer", u64_cells([_IPI_AREA]))
        writer.prop_bytes("multikernel,host-ipi-pages", u64_cells([IPI_PAGES]))
        writer.prop_bytes("multikernel,ipi-buffer", u64_cells([ring]))
        writer.prop_bytes("multikernel,ipi-pages", u64_cells([IPI_PAGES]))
        return
    writer.prop_bytes("multikernel,reserved-memory", u64_cells([ring, 2 * IPI_PAGES * 4096]))
    writer.prop_bytes("multikernel,pool-slot", u64_cells([inst.id]))
    with writer.node("multikernel,host-tree"):
        writer.prop_bytes("cpus", u64_cells(range(settings.cpus)))


def _virtio_table(inst: InstanceRecord) -> int:
    """Simulator: the table sits at the top of the instance's first chunk (placement not verified, 8.6.5)."""
    if not inst.chunks:
        return 0
    base, size = inst.chunks[0]
    return base + size - VIRTIO_TABLE_BYTES
