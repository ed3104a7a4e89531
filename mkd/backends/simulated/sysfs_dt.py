"""/sys/fs/multikernel/device_tree (spec 6.1): the v2 instance write (5.2), the tree baseline
write (5.1) and the read-back of both, with the raw kernel behaviour.

The handlers turn what they read into InstanceSpec / PoolSpec values and hand them to
instance_rules / pool_rules, so the model's rules stay in one place.
"""

from __future__ import annotations

import errno
import logging

from mkd.backends.simulated import instance_rules, overlay_items, pool_rules
from mkd.backends.simulated.dt_blob import (
    U64_INVALID,
    einval,
    node_properties,
    open_kernel_blob,
    read_cells,
    read_string,
    read_u32,
    read_u64,
)
from mkd.backends.simulated.global_pool import PAGE_SIZE
from mkd.backends.simulated.model import KernelModel
from mkd.backends.simulated.reboot import HOST_BOOT_CPU
from mkd.config import SimulatorSettings
from mkd.devicetree.build import build_root_tree
from mkd.devicetree.emit import COMPATIBLE
from mkd.devicetree.fdt import DtNode, TreeWriter
from mkd.devicetree.names import is_pci_id
from mkd.errors import KernelError
from mkd.kernel_types import MAX_DT_WRITE_BYTES, MAX_NUMNODES, InstanceSpec, MemChunk, PoolSpec

log = logging.getLogger(__name__)

V2_READ_TEXT = b"Write multikernel device tree here to propagate to instances\n"  # spec 5.1 read-back
ONE_INSTANCE_DTB_BYTES = 4096  # spec 5.2 creation step 1: the one-instance DTB buffer


# -- rfc-v2: the root DTB defines instances (spec 5.2) ---------------------------------------------


def write_v2_root(model: KernelModel, data: bytes, settings: SimulatorSettings) -> list[str]:
    """Create every new instance of /instances; returns why the others were skipped (the kernel
    logs it), one `<name> <ERRNO> <reason>` each."""
    root = open_kernel_blob(data, exact_size=False)  # step 1: header only, no totalsize check
    instances = root.child("instances")
    if instances is None:  # step 2
        raise einval("the device tree has no /instances node")
    skipped: list[str] = []
    for node in instances.children():  # step 3, in blob order
        try:
            _propagate_v2_instance(model, node, settings)
        except KernelError as exc:
            log.warning("multikernel: skipping instance %s: %s", node.name, exc.detail)
            skipped.append(f"{node.name} {exc.errno} {exc.detail}")
    return skipped  # step 4: the write succeeds even if every instance was skipped


def _propagate_v2_instance(model: KernelModel, node: DtNode, settings: SimulatorSettings) -> None:
    props = node_properties(node)
    raw_id = props.get("id")
    if raw_id is None or len(raw_id) != 4:  # simulator: an id of another length counts as absent
        raise KernelError(errno.ENOENT, "no id property")
    if model.by_name(node.name) is not None:  # "updating DTB" is logged; nothing is updated
        raise KernelError(errno.EEXIST, "an instance with this name exists; not updated")
    _extract_one_instance_dtb(node, props)  # creation step 1
    resources = node.child("resources")  # creation step 3: parse
    if resources is None:
        raise KernelError(errno.ENOENT, "no resources node")
    resource_props = node_properties(resources)
    memory_bytes = 0
    raw_memory = resource_props.get("memory-bytes")
    if raw_memory is not None:
        # exactly a u32, non-zero, page aligned (vectors 10, 11)
        memory_bytes = int.from_bytes(raw_memory, "big")
        if len(raw_memory) != 4 or memory_bytes == 0 or memory_bytes % PAGE_SIZE:
            raise einval(f"memory-bytes must be a non-zero page-aligned u32 (4 bytes), got {raw_memory.hex()}")
    cpus = read_cells(resource_props, "cpus", 4, f"{node.path}/resources") or ()
    for cpu in cpus:
        if cpu >= settings.cpus:
            raise einval(f"CPU {cpu} is not below nr_cpu_ids ({settings.cpus})")
    instance_id = int.from_bytes(raw_id, "big", signed=True)  # read as u32, stored in an int
    # creation steps 2, 4 and 6 (name, memory reservation, IDR slot) are the model's rules
    instance_rules.create_v2(model, InstanceSpec(instance_id, node.name, cpus, memory_bytes), settings)


def _extract_one_instance_dtb(node: DtNode, props: dict[str, bytes]) -> bytes:
    """`/ {compatible; instances { <name> {props; subnodes one level}}}` in 4 KiB, else a failure."""
    writer = TreeWriter()
    with writer.node(""):
        writer.prop_string("compatible", COMPATIBLE)
        with writer.node("instances"), writer.node(node.name):
            for name, value in props.items():
                writer.prop_bytes(name, value)
            for child in node.children():
                with writer.node(child.name):
                    for name, value in node_properties(child).items():
                        writer.prop_bytes(name, value)
    blob = writer.finish()
    if len(blob) > ONE_INSTANCE_DTB_BYTES:
        raise KernelError(errno.ENOSPC, f"the one-instance DTB needs {len(blob)} bytes; the buffer is 4 KiB")
    return blob


# -- tree: the root DTB is the pool baseline (spec 5.1) ------------------------------------------


def baseline_applied(model: KernelModel) -> bool:
    """Pool memory, pool CPUs or host PCI devices exist: the baseline is in place (spec 5.1)."""
    return bool(model.pool.chunks or model.pool_cpus or any(is_pci_id(d) for d in model.pool_devices))


def write_tree_baseline(model: KernelModel, data: bytes, settings: SimulatorSettings) -> None:
    """Apply the baseline; the caller works on a copy of the model, so a refusal changes nothing."""
    if len(data) > MAX_DT_WRITE_BYTES:
        raise KernelError(errno.E2BIG, f"a {len(data)}-byte write exceeds the 1 MiB atomic write size")
    root = open_kernel_blob(data, exact_size=True)  # rules 1, 2
    instances = root.child("instances")
    if instances is not None and next(instances.child_names(), None) is not None:  # rule 3 (vector 39)
        raise einval("host configuration must not contain instances")
    resources = root.child("resources")
    if resources is None:  # rule 4
        raise einval("the baseline has no /resources node")
    if baseline_applied(model):  # vector 38: change it with overlays instead
        raise KernelError(errno.EBUSY, "the baseline is already applied")
    props = node_properties(resources)
    cpus = read_cells(props, "cpus", 8, "/resources")
    if cpus is None:
        raise einval("/resources/cpus is missing")
    memory = _memory_nodes(resources)
    if not memory:
        if "memory-bytes" in props:  # vector 40
            raise einval("/resources/memory-bytes is the legacy schema; describe memory with memory@N nodes")
        raise einval("/resources needs at least one memory@N node")
    for cpu in cpus:
        if cpu == U64_INVALID or cpu >= settings.cpus:  # physical id == logical id in the simulator
            raise KernelError(errno.ENODEV, f"CPU {cpu} is not present")
    devices = _baseline_devices(resources, settings)
    llc_way_mask = overlay_items.llc_way_mask(props, "/resources", settings)  # spec 8.6.3
    chunks = [pool_rules.grow_chunk(model, size, node=node, hint=hint) for size, node, hint in memory]
    pool_rules.record_baseline(
        model,
        PoolSpec(
            cpus=tuple(dict.fromkeys(cpus)),  # an ordered set (spec 4)
            memory_base=chunks[0].base,
            memory_bytes=sum(chunk.size for chunk in chunks),
            llc_way_mask=llc_way_mask,
            devices=devices,
        ),
    )


def _memory_nodes(resources: DtNode) -> list[tuple[int, int | None, int | None]]:
    """(size, NUMA node, placement hint) of each memory@N node."""
    nodes = [child for child in resources.children() if child.unit_name == "memory" and child.unit_address]
    if len(nodes) > MAX_NUMNODES:
        raise KernelError(errno.E2BIG, f"{len(nodes)} memory@ nodes; at most {MAX_NUMNODES}")
    memory: list[tuple[int, int | None, int | None]] = []
    for node in nodes:
        props = node_properties(node)
        size = read_u64(props, "size", node.path)
        if not size or size % PAGE_SIZE:  # vector 41
            raise einval(f"{node.path}/size must be a non-zero page multiple (8 bytes)")
        numa_node = read_u32(props, "numa-node-id", node.path)
        if numa_node is not None and numa_node >= MAX_NUMNODES:
            raise einval(f"{node.path}/numa-node-id {numa_node} is not below MAX_NUMNODES")
        memory.append((size, numa_node, _placement_hint(node.unit_address or "")))
    return memory


def _placement_hint(unit_address: str) -> int | None:
    """Simulator: the unit address is where the allocator tries first (the kernel picks the base)."""
    try:
        hint = int(unit_address, 16)
    except ValueError:
        return None
    return hint if hint and hint % PAGE_SIZE == 0 else None


def _baseline_devices(resources: DtNode, settings: SimulatorSettings) -> tuple[str, ...]:
    """The devices moved to the pool; unknown types are skipped, unmovable ones only warned about."""
    container = resources.child("devices")
    if container is None:
        return ()
    moved: list[str] = []
    for node in container.children():
        props = node_properties(node)
        kind = read_string(props, "device-type")
        if kind == "pci":
            name = read_string(props, "pci-id")
            if name is None or not is_pci_id(name):
                raise einval(f'{node.path}/pci-id must be "DDDD:BB:SS.F" (hex)')
            if read_u32(props, "vendor-id", node.path) is None or read_u32(props, "device-id", node.path) is None:
                raise einval(f"{node.path}: a PCI device needs 4-byte vendor-id and device-id")
        elif kind == "platform":
            name = read_string(props, "device-name") or node.name
        else:
            log.warning("multikernel: skipping device %s of type %r", node.path, kind)
            continue
        if name in settings.devices:
            moved.append(name)
        else:
            log.warning("multikernel: device %s cannot be moved to the pool", name)
    return tuple(dict.fromkeys(moved))


# -- read-back and CPU hotplug state ---------------------------------------------------------------


def read_root(model: KernelModel) -> bytes:
    """v2: fixed text; tree: the binary pool DTB (spec 5.1 "Read-back")."""
    if model.profile == "rfc-v2":
        return V2_READ_TEXT
    pool = None
    if model.pool_spec is not None:
        total = model.pool.total_bytes()
        first = model.pool.chunks[0].base if model.pool.chunks else 0
        pool = PoolSpec(
            cpus=tuple(model.pool_cpus),
            memory_base=first,
            memory_bytes=total,
            llc_way_mask=model.pool_llc_way_mask,
            devices=tuple(model.pool_devices),
        )
    chunks = [MemChunk(c.base, c.size, c.node) for c in model.pool.chunks]
    return build_root_tree("tree", pool, chunks=chunks, free_cpus=model.free_cpus(), aliases=model.pool_aliases)


def cpu_online(model: KernelModel, cpu: int) -> bool:
    """/sys/devices/system/cpu/cpuN/online (spec 4): v2 offlines an instance's CPUs when it is
    created, the tree parks the baseline's CPUs in the pool; the boot CPU cannot go offline."""
    if cpu == HOST_BOOT_CPU:
        return True
    held = model.lent_cpus() if model.profile == "rfc-v2" else set(model.pool_cpus)
    return cpu not in held
