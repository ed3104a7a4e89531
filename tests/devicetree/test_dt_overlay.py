"""Tree overlays (spec 5.3/5.4): fragment layout, op order, item forms, and dtc round trips."""

from __future__ import annotations

import struct
from collections.abc import Callable

from mkd.devicetree.overlay import (
    build_instance_create_overlay,
    build_instance_remove_overlay,
    build_instance_update_overlay,
    build_resources_overlay,
)
from mkd.devicetree.parse import parse_instance_plan
from mkd.kernel_types import InstanceSpec, MemChunk

ReadTree = Callable[[bytes], dict[str, dict[str, bytes]]]
RoundTrip = Callable[[bytes], bytes]

OVERLAY = "/fragment@0/__overlay__"


def u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def u64s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}Q", *values)


def op_names(tree: dict[str, dict[str, bytes]]) -> list[str]:
    prefix = OVERLAY + "/"
    relative = [path.removeprefix(prefix) for path in tree if path.startswith(prefix)]
    return [path for path in relative if "/" not in path]


def test_create_overlay_is_an_instance_create_fragment(
    instance_specs: tuple[InstanceSpec, ...], tree_dict: ReadTree
) -> None:
    tree = tree_dict(build_instance_create_overlay(instance_specs[0]))
    assert tree["/fragment@0"] == {"target-path": b"/instances\0"}
    assert tree[f"{OVERLAY}/instance-create"] == {"instance-name": b"web\0", "id": u32s(1)}
    assert tree[f"{OVERLAY}/instance-create/resources"] == {
        "memory-bytes": u64s(512 << 20),
        "cpus": u64s(3, 2),
        "numa-nodes": u32s(0),
        "llc-way-mask": u32s(0x30),
    }
    assert tree[f"{OVERLAY}/instance-create/resources/devices/device@0"] == {
        "device-type": b"pci\0",
        "pci-id": b"0000:65:00.0\0",
    }


def test_create_overlay_parses_back_to_the_spec(instance_specs: tuple[InstanceSpec, ...], via_dts: RoundTrip) -> None:
    for spec in instance_specs:
        dtb = build_instance_create_overlay(spec)
        [request] = parse_instance_plan(via_dts(dtb))
        assert request == parse_instance_plan(dtb)[0]
        assert (request.name, request.id, request.origin) == (
            spec.name,
            spec.id,
            "/fragment@0/__overlay__/instance-create",
        )
        resources = request.resources
        assert resources.cpus == spec.cpus
        assert resources.memory_bytes == spec.memory_bytes
        assert resources.llc_way_mask == spec.llc_way_mask
        assert resources.devices == spec.devices
        assert resources.numa_nodes == (None if spec.numa_node is None else (spec.numa_node,))


def test_remove_overlay(tree_dict: ReadTree, via_dts: RoundTrip) -> None:
    dtb = build_instance_remove_overlay("web")
    tree = tree_dict(dtb)
    assert tree["/fragment@0"] == {"target-path": b"/instances\0"}
    assert tree[f"{OVERLAY}/instance-remove"] == {"instance-name": b"web\0"}
    assert tree_dict(via_dts(dtb)) == tree


def test_update_overlay_targets_the_instance_in_kernel_op_order(tree_dict: ReadTree, via_dts: RoundTrip) -> None:
    dtb = build_instance_update_overlay(
        "web",
        memory_remove=[MemChunk(0x1_0000_0000, 1 << 20, 0)],
        memory_add=2 << 20,
        cpu_remove=[2],
        cpu_add=[0x14],
        device_remove=["uart1"],
        device_add=["0000:65:00.0"],
    )
    tree = tree_dict(dtb)
    assert tree["/fragment@0"] == {"target-path": b"/instances/web\0"}
    # Spec 5.4 per-fragment order for an instance target.
    assert op_names(tree) == [
        "memory-remove",
        "memory-add",
        "cpu-remove",
        "cpu-add",
        "device-remove",
        "device-add",
    ]
    assert tree[f"{OVERLAY}/memory-remove/memory@100000000"] == {
        "reg": u64s(0x1_0000_0000, 1 << 20),
        "numa-node-id": u32s(0),
    }
    assert tree[f"{OVERLAY}/memory-add/memory@0"] == {"size": u64s(2 << 20)}
    assert tree[f"{OVERLAY}/cpu-add/cpu@14"] == {"reg": u64s(0x14)}
    assert tree[f"{OVERLAY}/cpu-remove/cpu@2"] == {"reg": u64s(2)}
    assert tree[f"{OVERLAY}/device-add/pci@0"] == {"pci-id": b"0000:65:00.0\0"}
    assert tree[f"{OVERLAY}/device-remove/platform@0"] == {"device-name": b"uart1\0"}
    assert tree_dict(via_dts(dtb)) == tree


def test_update_overlay_memory_add_by_range_names_the_range(tree_dict: ReadTree) -> None:
    tree = tree_dict(build_instance_update_overlay("web", memory_add=[MemChunk(0x1_4000_0000, 1 << 30, 1)]))
    assert tree[f"{OVERLAY}/memory-add/memory@140000000"] == {
        "reg": u64s(0x1_4000_0000, 1 << 30),
        "numa-node-id": u32s(1),
    }


def test_update_overlay_leaves_out_empty_ops(tree_dict: ReadTree) -> None:
    tree = tree_dict(build_instance_update_overlay("web", cpu_add=[5]))
    assert op_names(tree) == ["cpu-add"]


def test_resources_overlay_in_pool_op_order(tree_dict: ReadTree, via_dts: RoundTrip) -> None:
    dtb = build_resources_overlay(
        cpu_remove=[7],
        cpu_add=[8, 9],
        memory_remove=[MemChunk(0x2_0000_0000, 1 << 29)],
        memory_add=[MemChunk(0, 1 << 30, 1)],
        device_remove=["0000:66:00.0"],
        device_add=["0000:65:00.0"],
    )
    tree = tree_dict(dtb)
    assert tree["/fragment@0"] == {"target-path": b"/resources\0"}
    # Spec 5.4 order for /resources.
    assert op_names(tree) == [
        "cpu-remove",
        "device-remove",
        "memory-remove",
        "memory-add",
        "cpu-add",
        "device-add",
    ]
    # The pool picks the base of added memory: a size request, never reg (overlays.rst).
    assert tree[f"{OVERLAY}/memory-add/memory@0"] == {"size": u64s(1 << 30), "numa-node-id": u32s(1)}
    assert tree[f"{OVERLAY}/memory-remove/memory@200000000"] == {"reg": u64s(0x2_0000_0000, 1 << 29)}
    assert [p for p in tree if p.startswith(f"{OVERLAY}/cpu-add/")] == [
        f"{OVERLAY}/cpu-add/cpu@8",
        f"{OVERLAY}/cpu-add/cpu@9",
    ]
    assert tree_dict(via_dts(dtb)) == tree
