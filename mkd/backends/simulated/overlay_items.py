"""The items of overlay ops, read with the tree kernel's checks (spec 5.3, 5.4 "Item validation")."""

from __future__ import annotations

import errno
from dataclasses import dataclass

from mkd.backends.simulated.dt_blob import einval, node_properties, read_cells, read_string, read_u32, read_u64
from mkd.backends.simulated.global_pool import PAGE_SIZE
from mkd.backends.simulated.model import KernelModel, VirtioDevice
from mkd.config import SimulatorSettings
from mkd.devicetree.fdt import DtNode
from mkd.devicetree.names import is_pci_id
from mkd.errors import KernelError
from mkd.kernel_types import MAX_NUMNODES, InstanceSpec

# spec 8.6.5 (multikernel_virtio.h): at most 16 devices of at most 8 queues each
VIRTIO_MAX_QUEUES = 8
VIRTIO_MAX_DEVICES = 16
MK_PCI_ALIAS_LEN = 32  # spec 8.5.1: an alias is stored truncated to 31 characters
MK_DRIVER_NAME_LEN = 64  # spec 8.7.6: MK_RES_DEVICE_ADD carries at most 63 bytes of driver name
ID_AUTO = -1  # instance-create without a usable `id`: the kernel allocates one (spec 8.5.2)


@dataclass(frozen=True)
class DeviceItem:
    """A device item and its optional properties (spec 8.5.1), whose use depends on the target."""

    name: str
    driver: str | None = None
    alias: str | None = None
    flags: int = 0


@dataclass(frozen=True)
class MemoryItem:
    """A memory@ item: `reg` names a range, `size` asks the allocator for one (spec 5.4)."""

    path: str
    reg: tuple[int, int] | None
    size: int | None
    numa_node: int | None


def instance_id(props: dict[str, bytes]) -> int | None:
    """`id` as v7.0-mk2 reads it (spec 8.5.2): not 4 bytes, or >= 2^31 once cast to int, is absent."""
    raw = props.get("id")
    if raw is None or len(raw) != 4:
        return None
    value = int.from_bytes(raw, "big", signed=True)
    return None if value < 0 else value


def llc_way_mask(props: dict[str, bytes], where: str, settings: SimulatorSettings) -> int | None:
    """v7.0-mk2 ignores `llc-way-mask` (spec 8.6.3); with `llc_way_masks` it is the mid revision's
    rule: exactly one u32, non-zero, else EINVAL."""
    if not settings.llc_way_masks:
        return None
    mask = read_u32(props, "llc-way-mask", where)
    if mask == 0:
        raise einval(f"{where}/llc-way-mask must be non-zero")
    return mask


def instance_create(node: DtNode, model: KernelModel, settings: SimulatorSettings) -> InstanceSpec:
    """An `instance-create` node (spec 5.3); the EEXIST / ENOMEM rules are create_tree's."""
    props = node_properties(node)
    name = read_string(props, "instance-name")
    if not name or "/" in name:
        raise einval(f"{node.path}/instance-name must be non-empty and contain no '/'")
    explicit_id = instance_id(props)
    resources = node.child("resources")
    if resources is None:
        raise einval(f"{node.path}: instance-create needs a resources node")
    where = resources.path
    rprops = node_properties(resources)
    memory_bytes = read_u64(rprops, "memory-bytes", where)
    if memory_bytes is not None and (memory_bytes == 0 or memory_bytes % PAGE_SIZE):
        raise einval(f"{where}/memory-bytes must be non-zero and page aligned")
    cpus = read_cells(rprops, "cpus", 8, where) or ()
    numa_nodes = read_cells(rprops, "numa-nodes", 4, where)
    numa_node = numa_nodes[0] if numa_nodes else None  # the first entry is used
    if numa_node is not None and numa_node >= MAX_NUMNODES:
        raise einval(f"{where}/numa-nodes: node {numa_node} is not below MAX_NUMNODES")
    devices = _instance_devices(resources)
    return InstanceSpec(
        id=model.lowest_free_id() if explicit_id is None else explicit_id,  # absent: lowest free id >= 1
        name=name,
        cpus=cpus,
        memory_bytes=memory_bytes or 0,
        llc_way_mask=llc_way_mask(rprops, where, settings),
        devices=devices,
        numa_node=numa_node,
    )


def _instance_devices(resources: DtNode) -> tuple[str, ...]:
    if "device-names" in node_properties(resources):
        raise einval(f"{resources.path}/device-names is not supported")
    container = resources.child("devices")
    if container is None:
        return ()
    if "device-names" in node_properties(container):
        raise einval(f"{container.path}/device-names is not supported")
    names: list[str] = []
    for node in container.children():
        props = node_properties(node)
        kind = read_string(props, "device-type")
        if kind == "pci":
            names.append(_pci_id(node, props))
        elif kind == "platform":
            name = read_string(props, "device-name") or read_string(props, "acpi-hid")
            if not name:
                raise einval(f"{node.path}: a platform device needs device-name or acpi-hid")
            names.append(name)
    return tuple(names)


def _pci_id(node: DtNode, props: dict[str, bytes]) -> str:
    name = read_string(props, "pci-id")
    if name is None or not is_pci_id(name):
        raise einval(f'{node.path}/pci-id must be "DDDD:BB:SS.F" (hex)')
    return name


def virtio_devices(node: DtNode) -> list[VirtioDevice]:
    """The `resources/virtio` devices of an `instance-create` node (spec 5.3, 8.6.5)."""
    resources = node.child("resources")
    container = None if resources is None else resources.child("virtio")
    if container is None:
        return []
    nodes = list(container.children())
    if len(nodes) > VIRTIO_MAX_DEVICES:
        raise KernelError(errno.E2BIG, f"{container.path}: {len(nodes)} virtio devices; at most {VIRTIO_MAX_DEVICES}")
    devices: list[VirtioDevice] = []
    for node in nodes:
        props = node_properties(node)
        device_id = read_u32(props, "device-id", node.path)
        queues = read_u32(props, "queues", node.path)
        if device_id is None or queues is None:
            raise einval(f"{node.path}: a virtio device needs device-id and queues")
        if not 1 <= queues <= VIRTIO_MAX_QUEUES:
            raise einval(f"{node.path}/queues must be 1..{VIRTIO_MAX_QUEUES}, got {queues}")
        queue_size = read_u32(props, "queue-size", node.path)
        devices.append(VirtioDevice(node.name, device_id, queues, 256 if queue_size is None else queue_size))
    return devices


def instance_name(node: DtNode) -> str:
    """`instance-remove { instance-name = "..."; }`."""
    name = read_string(node_properties(node), "instance-name")
    if not name:
        raise einval(f"{node.path}/instance-name is missing")
    return name


def cpu(node: DtNode) -> int:
    """`cpu@N { reg }`: a 4- or 8-byte physical id."""
    reg = node_properties(node).get("reg")
    if reg is None or len(reg) not in (4, 8):
        raise einval(f"{node.path}/reg must be a 4- or 8-byte CPU id")
    return int.from_bytes(reg, "big")


def memory(node: DtNode) -> MemoryItem:
    """`memory@N { reg = <base size> | size; numa-node-id }` (16-byte reg, 8-byte size)."""
    props = node_properties(node)
    reg: tuple[int, int] | None = None
    raw_reg = props.get("reg")
    if raw_reg is not None:
        if len(raw_reg) != 16:
            raise einval(f"{node.path}/reg must be 16 bytes (u64 base, u64 size)")
        base, size = int.from_bytes(raw_reg[:8], "big"), int.from_bytes(raw_reg[8:], "big")
        if size == 0 or base % PAGE_SIZE or size % PAGE_SIZE:
            raise einval(f"{node.path}/reg must be a non-empty page-aligned range")
        reg = (base, size)
    size_value = read_u64(props, "size", node.path)
    if size_value is not None and (size_value == 0 or size_value % PAGE_SIZE):
        raise einval(f"{node.path}/size must be a non-zero page multiple")
    numa_node = read_u32(props, "numa-node-id", node.path)
    if numa_node is not None and numa_node >= MAX_NUMNODES:
        raise einval(f"{node.path}/numa-node-id {numa_node} is not below MAX_NUMNODES")
    return MemoryItem(node.path, reg, size_value, numa_node)


def device(node: DtNode) -> DeviceItem:
    """A device item: PCI by `pci-id`, platform by `device-name` or `acpi-hid`; optional
    `driver`, `alias` and `flags` (spec 8.5.1: a `flags` of the wrong length reads as 0)."""
    props = node_properties(node)
    if "pci-id" in props:
        name = _pci_id(node, props)
    else:
        name = read_string(props, "device-name") or read_string(props, "acpi-hid") or ""
        if not name:
            raise einval(f"{node.path}: a device item needs pci-id, device-name or acpi-hid")
    raw_flags = props.get("flags", b"")
    alias = read_string(props, "alias")
    driver = read_string(props, "driver")
    return DeviceItem(
        name=name,
        driver=None if driver is None else driver[: MK_DRIVER_NAME_LEN - 1],
        alias=None if alias is None else alias[: MK_PCI_ALIAS_LEN - 1],
        flags=int.from_bytes(raw_flags, "big") if len(raw_flags) == 4 else 0,
    )
