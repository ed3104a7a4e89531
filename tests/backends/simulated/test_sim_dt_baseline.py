"""tree /sys/fs/multikernel/device_tree: the pool baseline and its read-back (spec 5.1; vectors 38-41)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of, make_settings

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import simulated_client
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.fdt import open_dtb
from mkd.errors import KernelError

CPUS_1_TO_4 = "cpus = /bits/ 64 <1 2 3 4>;"
ONE_GIB = "memory@0 { size = /bits/ 64 <0x40000000>; };"


def _baseline(resources: str, extra: str = "") -> bytes:
    return dts_to_dtb(f'/dts-v1/;\n/ {{ compatible = "multikernel-v1"; {extra} resources {{ {resources} }}; }};')


def _errno_of_write(kernel: SimulatedKernel, data: bytes) -> int:
    with pytest.raises(KernelError) as exc:
        kernel.write_device_tree(data)
    return exc.value.errno_code


@pytest.fixture
def tree_boot(make_backend: BackendFactory) -> HostBackend:
    return make_backend(kernel_profile="tree")


def test_baseline_write_builds_the_pool(tree_boot: HostBackend) -> None:
    """Spec 7 tree setup: CPUs {1,2,3,4}, one 1 GiB chunk."""
    kernel = kernel_of(tree_boot)
    data = _baseline(CPUS_1_TO_4 + ONE_GIB)
    assert kernel.write_device_tree(data) == len(data)
    pool = kernel.read_pool()
    assert pool.free_cpus == (1, 2, 3, 4)
    assert [chunk.bytes for chunk in pool.chunks] == [GiB]
    assert pool.free_memory_bytes == GiB
    assert [cpu for cpu in range(8) if not kernel.cpu_online(cpu)] == [1, 2, 3, 4]  # parked in the pool


def test_vector_38_second_baseline_is_ebusy(tree_boot: HostBackend) -> None:
    kernel = kernel_of(tree_boot)
    kernel.write_device_tree(_baseline(CPUS_1_TO_4 + ONE_GIB))
    before = kernel.read_pool()
    assert _errno_of_write(kernel, _baseline("cpus = /bits/ 64 <5>;" + ONE_GIB)) == errno.EBUSY
    assert kernel.read_pool() == before


def test_vector_38_after_the_daemon_applied_the_pool(tree: HostBackend) -> None:
    assert _errno_of_write(kernel_of(tree), _baseline(CPUS_1_TO_4 + ONE_GIB)) == errno.EBUSY


def test_vector_39_instances_in_the_baseline_is_einval(tree_boot: HostBackend) -> None:
    data = _baseline(CPUS_1_TO_4 + ONE_GIB, extra="instances { x { id = <1>; }; };")
    assert _errno_of_write(kernel_of(tree_boot), data) == errno.EINVAL
    # an empty /instances node is allowed (rule 3 needs at least one child)
    empty = _baseline(CPUS_1_TO_4 + ONE_GIB, extra="instances { };")
    assert kernel_of(tree_boot).write_device_tree(empty) == len(empty)


def test_vector_40_legacy_memory_bytes_without_memory_nodes_is_einval(tree_boot: HostBackend) -> None:
    data = _baseline(CPUS_1_TO_4 + "memory-bytes = /bits/ 64 <0x40000000>;")
    assert _errno_of_write(kernel_of(tree_boot), data) == errno.EINVAL
    assert kernel_of(tree_boot).read_pool().chunks == ()


def test_vector_41_size_not_a_page_multiple_is_einval(tree_boot: HostBackend) -> None:
    data = _baseline(CPUS_1_TO_4 + "memory@0 { size = <0x0 0x1001>; };")
    assert _errno_of_write(kernel_of(tree_boot), data) == errno.EINVAL


@pytest.mark.parametrize(
    ("resources", "code"),
    [
        (ONE_GIB, errno.EINVAL),  # no cpus
        ("cpus = <1 2 3>;" + ONE_GIB, errno.EINVAL),  # 12 bytes: not u64 cells
        ("cpus;" + ONE_GIB, errno.EINVAL),  # empty
        (CPUS_1_TO_4, errno.EINVAL),  # no memory@ node
        (CPUS_1_TO_4 + "memory@0 { size = /bits/ 64 <0>; };", errno.EINVAL),
        (CPUS_1_TO_4 + "memory@0 { numa-node-id = <0>; };", errno.EINVAL),  # no size
        (CPUS_1_TO_4 + "memory@0 { size = /bits/ 64 <0x100000>; numa-node-id = <1024>; };", errno.EINVAL),
        ("cpus = /bits/ 64 <1 9>;" + ONE_GIB, errno.ENODEV),  # CPU 9 is not present
        ("cpus = /bits/ 64 <0xffffffffffffffff>;" + ONE_GIB, errno.ENODEV),
        (CPUS_1_TO_4 + "memory@0 { size = /bits/ 64 <0x100000>; numa-node-id = <7>; };", errno.ENOMEM),
        (CPUS_1_TO_4 + 'devices { nic { device-type = "pci"; pci-id = "0000:01:00.0"; }; };' + ONE_GIB, errno.EINVAL),
    ],
)
def test_baseline_refusals_change_nothing(tree_boot: HostBackend, resources: str, code: int) -> None:
    kernel = kernel_of(tree_boot)
    assert _errno_of_write(kernel, _baseline(resources)) == code
    pool = kernel.read_pool()
    assert (pool.spec, pool.chunks, pool.free_cpus) == (None, (), ())


def test_no_resources_node_is_einval(tree_boot: HostBackend) -> None:
    assert _errno_of_write(kernel_of(tree_boot), dts_to_dtb("/dts-v1/; / { };")) == errno.EINVAL


def test_totalsize_must_equal_the_write(tree_boot: HostBackend) -> None:
    data = _baseline(CPUS_1_TO_4 + ONE_GIB)
    assert _errno_of_write(kernel_of(tree_boot), data + b"\0" * 8) == errno.EINVAL
    bad_magic = b"\0" + data[1:]
    assert _errno_of_write(kernel_of(tree_boot), bad_magic) == errno.EINVAL


def test_a_write_over_1_mib_is_e2big(tree_boot: HostBackend) -> None:
    assert _errno_of_write(kernel_of(tree_boot), b"\xd0\x0d\xfe\xed" + b"\0" * (1 << 20)) == errno.E2BIG


def test_more_memory_nodes_than_max_numnodes_is_e2big(tree_boot: HostBackend) -> None:
    nodes = "".join(f"memory@{n:x} {{ size = /bits/ 64 <0x1000>; }};" for n in range(1025))
    assert _errno_of_write(kernel_of(tree_boot), _baseline(CPUS_1_TO_4 + nodes)) == errno.E2BIG


def test_numa_chunks_and_devices(tree_boot: HostBackend) -> None:
    kernel = kernel_of(tree_boot)
    data = _baseline(
        "cpus = /bits/ 64 <1 2 2 5>;"
        "memory@0 { size = /bits/ 64 <0x10000000>; numa-node-id = <0>; };"
        "memory@1 { size = /bits/ 64 <0x10000000>; numa-node-id = <1>; };"
        "devices {"
        ' nic { device-type = "pci"; pci-id = "0000:01:00.0"; vendor-id = <0x8086>; device-id = <0x10d3>; };'
        ' uart { device-type = "platform"; device-name = "uart0"; };'
        ' gone { device-type = "platform"; };'  # named by its node: not present, only a warning
        ' odd { device-type = "usb"; };'  # unknown type: skipped
        "};"
    )
    kernel.write_device_tree(data)
    pool = kernel.read_pool()
    assert pool.free_cpus == (1, 2, 5)  # an ordered set
    assert [(chunk.bytes, chunk.numa_node) for chunk in pool.chunks] == [(256 * MiB, 0), (256 * MiB, 1)]
    assert pool.free_devices == ("0000:01:00.0", "uart0")


def test_read_back_before_and_after_the_baseline(tree_boot: HostBackend) -> None:
    kernel = kernel_of(tree_boot)
    empty = open_dtb(kernel.read_device_tree())
    assert dict(empty.properties())["id"] == (0).to_bytes(4, "big")
    assert empty.child("resources") is None
    kernel.write_device_tree(_baseline(CPUS_1_TO_4 + ONE_GIB))
    root = open_dtb(kernel.read_device_tree())
    resources = root.child("resources")
    assert resources is not None
    props = dict(resources.properties())
    assert props["cpus"] == b"".join(cpu.to_bytes(8, "big") for cpu in (1, 2, 3, 4))
    assert props["cpus-available"] == props["cpus"]
    [chunk] = [node for node in resources.children() if node.unit_name == "memory"]
    chunk_props = dict(chunk.properties())
    assert chunk_props["device_type"] == b"memory\0"
    base = kernel.read_pool().chunks[0].base
    assert chunk.name == f"memory@{base:x}"
    assert chunk_props["reg"] == base.to_bytes(8, "big") + GiB.to_bytes(8, "big")


def test_the_read_back_is_itself_a_valid_baseline(tree_boot: HostBackend, tmp_path: Path) -> None:
    kernel_of(tree_boot).write_device_tree(_baseline(CPUS_1_TO_4 + ONE_GIB))
    dtb = kernel_of(tree_boot).read_device_tree()
    fresh = simulated_client(make_settings(tmp_path / "other", kernel_profile="tree"))
    try:
        assert kernel_of(fresh).write_device_tree(dtb) == len(dtb)
        assert kernel_of(fresh).read_pool().free_cpus == (1, 2, 3, 4)
        assert kernel_of(fresh).read_pool().chunks == kernel_of(tree_boot).read_pool().chunks
    finally:
        fresh.close()
