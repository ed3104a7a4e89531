"""Root and instance trees per profile: content per spec 5.1-5.3, and round trips through dtc."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from mkd.devicetree.build import (
    build_baseline_dtb,
    build_instance_tree,
    build_root_tree,
    v2_device_tree_source,
)
from mkd.devicetree.parse import parse_instance_plan, parse_pool_tree
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelInstance, MemChunk, PoolSpec

ReadTree = Callable[[bytes], dict[str, dict[str, bytes]]]
RoundTrip = Callable[[bytes], bytes]


def u32s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def u64s(*values: int) -> bytes:
    return struct.pack(f">{len(values)}Q", *values)


def test_v2_root_tree_has_baseline_then_instances(
    pool: PoolSpec, instance_specs: tuple[InstanceSpec, ...], tree_dict: ReadTree
) -> None:
    tree = tree_dict(build_root_tree("rfc-v2", pool, instances=instance_specs))
    assert list(tree)[:3] == ["/", "/resources", "/resources/devices"]
    assert tree["/"] == {"compatible": b"multikernel-v1\0"}
    assert tree["/resources"] == {
        "cpus": u32s(2, 3, 4, 5, 6, 7),
        "memory-base": u64s(0x1_0000_0000),
        "memory-bytes": u64s(1 << 30),
        "llc-way-mask": u32s(0xF0),
    }
    assert tree["/instances/web"] == {"id": u32s(1)}
    assert tree["/instances/web/resources"] == {
        "cpus": u32s(3, 2),
        "memory-bytes": u32s(512 << 20),
        "llc-way-mask": u32s(0x30),
        "numa-nodes": u32s(0),
    }
    assert tree["/instances/web/resources/devices/device@0"] == {
        "device-type": b"pci\0",
        "pci-id": b"0000:65:00.0\0",
    }
    assert tree["/instances/db.primary/resources"] == {"cpus": u32s(4), "memory-bytes": u32s(256 << 20)}


def test_v2_root_tree_means_the_same_after_dtc(
    pool: PoolSpec, instance_specs: tuple[InstanceSpec, ...], via_dts: RoundTrip
) -> None:
    dtb = build_root_tree("rfc-v2", pool, instances=instance_specs)
    plan = parse_instance_plan(via_dts(dtb))
    assert plan == parse_instance_plan(dtb)
    assert [(r.name, r.id, r.origin) for r in plan] == [
        ("web", 1, "/instances/web"),
        ("db.primary", 7, "/instances/db.primary"),
    ]
    web = plan[0].resources
    assert (web.cpus, web.memory_bytes, web.llc_way_mask, web.numa_nodes, web.devices) == (
        (3, 2),
        512 << 20,
        0x30,
        (0,),
        ("0000:65:00.0",),
    )
    assert parse_pool_tree(via_dts(dtb)) == pool


def test_v2_memory_bytes_that_needs_more_than_u32_is_erange() -> None:
    big = InstanceSpec(id=1, name="big", cpus=(1,), memory_bytes=1 << 32)
    with pytest.raises(KernelError) as err:
        build_root_tree("rfc-v2", None, instances=[big])
    assert err.value.errno == "ERANGE"


def test_tree_root_is_the_pool_read_back(
    pool: PoolSpec, pool_chunks: tuple[MemChunk, ...], tree_dict: ReadTree
) -> None:
    tree = tree_dict(build_root_tree("tree", pool, chunks=pool_chunks, free_cpus=(6, 7)))
    assert tree["/"] == {
        "compatible": b"multikernel-v1\0",
        "#address-cells": u32s(2),
        "#size-cells": u32s(2),
        "id": u32s(0),
    }
    assert tree["/resources"] == {
        "cpus": u64s(2, 3, 4, 5, 6, 7),
        "cpus-available": u64s(6, 7),
        "llc-way-mask": u32s(0xF0),
    }
    assert tree["/resources/memory@200000000"] == {
        "device_type": b"memory\0",
        "reg": u64s(0x2_0000_0000, 1 << 29),
        "size": u64s(1 << 29),
        "numa-node-id": u32s(1),
    }
    assert "/instances" not in tree  # spec 5.1 rule 3


def test_tree_root_round_trips_and_reads_as_a_pool(
    pool: PoolSpec, pool_chunks: tuple[MemChunk, ...], via_dts: RoundTrip, tree_dict: ReadTree
) -> None:
    dtb = build_root_tree("tree", pool, chunks=pool_chunks, free_cpus=(6, 7))
    assert tree_dict(via_dts(dtb)) == tree_dict(dtb)
    assert parse_pool_tree(via_dts(dtb)) == pool


def test_tree_root_without_chunks_describes_the_pool_as_one(pool: PoolSpec, tree_dict: ReadTree) -> None:
    tree = tree_dict(build_root_tree("tree", pool))
    assert tree["/resources/memory@100000000"]["reg"] == u64s(0x1_0000_0000, 1 << 30)
    assert tree["/resources"]["cpus-available"] == b""


def test_root_without_a_pool(tree_dict: ReadTree) -> None:
    assert list(tree_dict(build_root_tree("tree", None))) == ["/"]
    assert list(tree_dict(build_root_tree("rfc-v2", None))) == ["/", "/instances"]


def test_baseline_dtb_is_the_spec_5_1_tree_schema(
    pool: PoolSpec, pool_chunks: tuple[MemChunk, ...], tree_dict: ReadTree, via_dts: RoundTrip
) -> None:
    dtb = build_baseline_dtb(pool, numa_chunks=pool_chunks)
    tree = tree_dict(dtb)
    assert tree["/resources"] == {"cpus": u64s(2, 3, 4, 5, 6, 7), "llc-way-mask": u32s(0xF0)}
    assert tree["/resources/memory@100000000"] == {"size": u64s(1 << 29), "numa-node-id": u32s(0)}
    assert tree["/resources/memory@200000000"] == {"size": u64s(1 << 29), "numa-node-id": u32s(1)}
    assert tree_dict(via_dts(dtb)) == tree
    assert parse_pool_tree(dtb) == PoolSpec(
        cpus=pool.cpus, memory_base=0x1_0000_0000, memory_bytes=1 << 30, llc_way_mask=0xF0
    )


def test_baseline_without_numa_chunks_is_one_memory_node(pool: PoolSpec, tree_dict: ReadTree) -> None:
    tree = tree_dict(build_baseline_dtb(pool))
    assert [path for path in tree if "memory@" in path] == ["/resources/memory@100000000"]
    assert tree["/resources/memory@100000000"] == {"size": u64s(1 << 30)}


def test_v2_instance_tree_is_a_one_instance_v2_dtb(
    kernel_instance: KernelInstance, tree_dict: ReadTree, via_dts: RoundTrip
) -> None:
    dtb = build_instance_tree("rfc-v2", kernel_instance)
    tree = tree_dict(dtb)
    assert list(tree) == ["/", "/instances", "/instances/web", "/instances/web/resources"]
    assert tree["/instances/web/resources"] == {"cpus": u32s(1), "memory-bytes": u32s(512 << 20)}
    [request] = parse_instance_plan(via_dts(dtb))
    assert (request.name, request.id, request.resources.cpus, request.resources.memory_bytes) == (
        "web",
        1,
        (1,),
        512 << 20,
    )


def test_tree_instance_tree_is_the_generated_instance_dtb(
    kernel_instance: KernelInstance, tree_dict: ReadTree, via_dts: RoundTrip
) -> None:
    dtb = build_instance_tree("tree", kernel_instance)
    tree = tree_dict(dtb)
    assert tree["/"] == {
        "compatible": b"multikernel-v1\0",
        "model": b"web\0",
        "#address-cells": u32s(2),
        "#size-cells": u32s(2),
        "id": u32s(1),
    }
    # Spec 5.3: memory-base is the first region, memory-bytes the total.
    assert tree["/resources"] == {
        "memory-base": u64s(0x1_0000_0000),
        "memory-bytes": u64s(512 << 20),
        "cpus": u64s(1),
    }
    assert tree_dict(via_dts(dtb)) == tree


def test_v2_device_tree_source_is_the_spec_text(kernel_instance: KernelInstance) -> None:
    assert v2_device_tree_source(kernel_instance) == (
        "/dts-v1/;\n"
        "\n"
        "/web {\n"
        '\tcompatible = "multikernel-v1";\n'
        "\tid = <1>;\n"
        "\tresources {\n"
        "\t\tcpus = <1>;\n"
        "\t\tmemory-bytes = <0x20000000>; // 512 MB\n"
        "\t};\n"
        "};\n"
    )


def test_v2_device_tree_source_prints_other_lengths_as_bytes(kernel_instance: KernelInstance) -> None:
    inst = KernelInstance(**{**kernel_instance.__dict__, "cpus": (2, 3), "llc_way_mask": 12})
    text = v2_device_tree_source(inst)
    assert "\t\tcpus = [00 00 00 02 00 00 00 03];\n" in text
    assert "\t\tllc-way-mask = <12>;\n" in text


def test_v2_device_tree_source_without_resources(kernel_instance: KernelInstance) -> None:
    empty = KernelInstance(**{**kernel_instance.__dict__, "cpus": (), "memory_bytes": 0, "memory": ()})
    assert v2_device_tree_source(empty).endswith("\tid = <1>;\n\tresources {\n\t};\n};\n")
