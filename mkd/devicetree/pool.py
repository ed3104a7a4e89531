"""A baseline tree (`/resources`) → PoolSpec, for `PUT /v1/pool` with a device-tree body.

Two baseline styles are read (spec 5.1):
- mid / v2 root tree: `/resources { cpus <u32...>; memory-base /bits/ 64; memory-bytes /bits/ 64;
  llc-way-mask; devices }` — what the daemon's rfc-v2 root tree records;
- tree: `/resources { cpus /bits/ 64 <...>; memory@<base> { size /bits/ 64; numa-node-id;
  (read-back: device_type, reg) }; devices }`. memory_base is the first chunk's base (reg, else
  the unit address), memory_bytes the sum of the chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkd.devicetree.fdt import DtNode, invalid
from mkd.devicetree.props import decode_int, decode_int_list, decode_string, decode_string_list
from mkd.devicetree.resources import node_properties, parse_devices, refuse_property
from mkd.devicetree.source import load_tree
from mkd.kernel_types import MAX_NUMNODES, PAGE_SIZE, PoolSpec

_ROOT_PROPS = ("compatible", "model", "#address-cells", "#size-cells", "id")


@dataclass(frozen=True)
class _Chunk:
    base: int | None
    size: int


def parse_pool_tree(data: bytes) -> PoolSpec:
    root = load_tree(data)
    for name, value in node_properties(root).items():
        if name in ("compatible", "model"):
            decode_string_list(root.prop_path(name), value)
        elif name in _ROOT_PROPS:
            decode_int(root.prop_path(name), value, 4)
        else:
            raise refuse_property(root, name)
    resources: DtNode | None = None
    instances: DtNode | None = None
    for child in root.children():
        if child.name == "resources":
            resources = child
        elif child.name == "instances":
            instances = child
        elif child.name != "aliases":  # read-back aliases only point into /resources/devices
            raise invalid(f"{child.path}: unknown node in a baseline tree")
    if resources is None:  # spec 5.1 rule 4
        raise invalid("/: a baseline needs a /resources node")
    memory_nodes = [child for child in resources.children() if child.unit_name == "memory"]
    if memory_nodes:
        if instances is not None and any(True for _ in instances.child_names()):
            # Spec 5.1 rule 3: the tree baseline must not define instances.
            raise invalid("/instances: host configuration must not contain instances")
        return _tree_pool(resources, memory_nodes)
    return _flat_pool(resources)


def _common(resources: DtNode, cpu_width: int) -> tuple[tuple[int, ...], int | None, tuple[str, ...]]:
    """cpus, llc-way-mask and devices, which both styles share."""
    props = node_properties(resources)
    if "cpus" not in props:
        raise invalid(f"{resources.path}: has no cpus")
    cpus = decode_int_list(resources.prop_path("cpus"), props["cpus"], cpu_width)
    llc_way_mask = None
    if "llc-way-mask" in props:
        llc_way_mask = decode_int(resources.prop_path("llc-way-mask"), props["llc-way-mask"], 4)
        if llc_way_mask == 0:
            raise invalid(f"{resources.prop_path('llc-way-mask')}: must be non-zero")
    devices_node = resources.child("devices")
    devices = parse_devices(devices_node, name_from_node=True) if devices_node is not None else ()
    return cpus, llc_way_mask, devices


def _flat_pool(resources: DtNode) -> PoolSpec:
    props = node_properties(resources)
    for name in props:
        if name not in ("cpus", "memory-base", "memory-bytes", "llc-way-mask"):
            raise refuse_property(resources, name)
    for child in resources.children():
        if child.name != "devices":
            raise invalid(f"{child.path}: unknown node")
    cpus, llc_way_mask, devices = _common(resources, 4)
    values = {}
    for name in ("memory-base", "memory-bytes"):
        if name not in props:
            raise invalid(f"{resources.path}: has no {name}")
        values[name] = decode_int(resources.prop_path(name), props[name], 8)
        if values[name] % PAGE_SIZE:
            raise invalid(f"{resources.prop_path(name)}: must be a multiple of {PAGE_SIZE}")
    if values["memory-bytes"] == 0:
        raise invalid(f"{resources.prop_path('memory-bytes')}: must be non-zero")
    return PoolSpec(
        cpus=cpus,
        memory_base=values["memory-base"],
        memory_bytes=values["memory-bytes"],
        llc_way_mask=llc_way_mask,
        devices=devices,
    )


def _tree_pool(resources: DtNode, memory_nodes: list[DtNode]) -> PoolSpec:
    props = node_properties(resources)
    for name, value in props.items():
        if name == "cpus-available":  # read-back only: the free subset, recomputed by the kernel
            if value:
                decode_int_list(resources.prop_path(name), value, 8)
        elif name not in ("cpus", "llc-way-mask"):
            raise refuse_property(resources, name)
    for child in resources.children():
        if child.unit_name != "memory" and child.name != "devices":
            raise invalid(f"{child.path}: unknown node")
    cpus, llc_way_mask, devices = _common(resources, 8)
    chunks = [_memory_chunk(node) for node in memory_nodes]
    first_base = chunks[0].base
    return PoolSpec(
        cpus=cpus,
        memory_base=first_base if first_base is not None else 0,
        memory_bytes=sum(chunk.size for chunk in chunks),
        llc_way_mask=llc_way_mask,
        devices=devices,
    )


def _memory_chunk(node: DtNode) -> _Chunk:
    size: int | None = None
    reg: tuple[int, ...] | None = None
    for name, value in node_properties(node).items():
        where = node.prop_path(name)
        if name == "size":
            size = decode_int(where, value, 8)
        elif name == "reg":
            if len(value) != 16:
                raise invalid(f"{where}: must be 16 bytes (u64 base, u64 size), got {len(value)}")
            reg = decode_int_list(where, value, 8)
        elif name == "numa-node-id":
            if decode_int(where, value, 4) >= MAX_NUMNODES:
                raise invalid(f"{where}: must be below MAX_NUMNODES ({MAX_NUMNODES})")
        elif name == "device_type":
            if decode_string(where, value) != "memory":
                raise invalid(f'{where}: must be "memory"')
        else:
            raise refuse_property(node, name)
    for child in node.children():
        raise invalid(f"{child.path}: unknown node")
    if reg is not None and size is not None and reg[1] != size:
        raise invalid(f"{node.path}: reg size {reg[1]} disagrees with size {size}")
    if size is None:
        if reg is None:
            raise invalid(f"{node.path}: has no size")
        size = reg[1]
    if size == 0 or size % PAGE_SIZE:  # spec 5.1: size != 0, page multiple
        raise invalid(f"{node.prop_path('size')}: must be non-zero and a multiple of {PAGE_SIZE}")
    base = reg[0] if reg is not None else _unit_base(node)
    return _Chunk(base=base, size=size)


def _unit_base(node: DtNode) -> int | None:
    try:
        return int(node.unit_address or "", 16)
    except ValueError:
        return None
