"""rfc-v2 /sys/fs/multikernel/device_tree: the root DTB defines instances (spec 5.2; vectors 6-13)."""

from __future__ import annotations

import errno

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.devicetree.dts import dts_to_dtb
from mkd.errors import KernelError


def _root(instances: str, extra: str = "") -> bytes:
    return dts_to_dtb(f'/dts-v1/;\n/ {{ compatible = "multikernel-v1"; {extra} instances {{ {instances} }}; }};')


def _instance(name: str, body: str) -> str:
    return f"{name} {{ {body} }};"


def _errno_of_write(kernel: SimulatedKernel, data: bytes) -> int:
    with pytest.raises(KernelError) as exc:
        kernel.write_device_tree(data)
    return exc.value.errno_code


@pytest.fixture
def v2_boot(make_backend: BackendFactory) -> HostBackend:
    """Spec 7 v2 setup: mkkernel_pool=1G, 8 logical CPUs, no baseline (v2 has none)."""
    return make_backend(kernel_profile="rfc-v2")


WEB = _instance("web", "id = <1>; resources { cpus = <1>; memory-bytes = <0x20000000>; };")
DB = _instance("db", "id = <2>; resources { cpus = <2 3>; memory-bytes = <0x40000000>; };")


def test_vector_6_write_creates_ready_instances(make_backend: BackendFactory) -> None:
    # web (512 MiB) + db (1 GiB) need 1.5 GiB: the vector's 1 GiB pool could not hold both, so the
    # boot pool is 2 GiB here (see test_vector_6_with_a_1_gib_pool_db_is_skipped).
    kernel = kernel_of(make_backend(kernel_profile="rfc-v2", pool_bytes=2 * GiB))
    data = _root(WEB + DB)
    assert kernel.write_device_tree(data) == len(data)
    assert kernel.status_file("web") == "ready\n"
    assert kernel.id_file("web") == "1\n"
    assert kernel.status_file("db") == "ready\n"
    assert kernel.id_file("db") == "2\n"
    assert [cpu for cpu in range(8) if not kernel.cpu_online(cpu)] == [1, 2, 3]
    assert kernel.read_instance(2).cpus == (2, 3)
    assert kernel.read_instance(2).memory_bytes == GiB


def test_vector_6_with_a_1_gib_pool_db_is_skipped(v2_boot: HostBackend) -> None:
    """The reservation of db fails (ENOMEM); the kernel skips it and the write still succeeds."""
    kernel = kernel_of(v2_boot)
    data = _root(WEB + DB)
    assert kernel.write_device_tree(data) == len(data)
    assert [inst.name for inst in kernel.list_instances()] == ["web"]
    assert [cpu for cpu in range(8) if not kernel.cpu_online(cpu)] == [1]


def test_vector_7_no_instances_node_is_einval(v2_boot: HostBackend) -> None:
    data = dts_to_dtb('/dts-v1/; / { compatible = "multikernel-v1"; resources { }; };')
    assert _errno_of_write(kernel_of(v2_boot), data) == errno.EINVAL


def test_vector_8_bad_magic_is_einval(v2_boot: HostBackend) -> None:
    data = bytearray(_root(WEB))
    data[0] ^= 0xFF
    assert _errno_of_write(kernel_of(v2_boot), bytes(data)) == errno.EINVAL
    assert _errno_of_write(kernel_of(v2_boot), b"") == errno.EINVAL
    assert _errno_of_write(kernel_of(v2_boot), data[:20]) == errno.EINVAL
    assert kernel_of(v2_boot).list_instances() == []


@pytest.mark.parametrize(
    ("body", "vector"),
    [
        ("resources { cpus = <1>; memory-bytes = <0x20000000>; };", 9),  # no id
        ("id = <1>; resources { memory-bytes = <0x1001>; };", 10),  # not page aligned
        ("id = <1>; resources { memory-bytes = /bits/ 64 <0x20000000>; };", 11),  # u64, v2 wants u32
        ("id = <1>; resources { memory-bytes = <0>; };", 0),  # zero
        ("id = <1>;", 0),  # no resources node (ENOENT)
        ("id = <1>; resources { cpus = <8>; };", 0),  # not below nr_cpu_ids
        ("id = <1>; resources { cpus = [00 01]; };", 0),  # not u32 cells
        ("id = <1>; resources { cpus; };", 0),  # empty
        ("id = /bits/ 64 <1>; resources { };", 0),  # an id of another length counts as absent
    ],
)
def test_vectors_9_to_11_a_bad_instance_is_skipped_and_the_write_succeeds(
    v2_boot: HostBackend, body: str, vector: int
) -> None:
    data = _root(_instance("web", body) + _instance("ok", "id = <5>; resources { cpus = <4>; };"))
    assert kernel_of(v2_boot).write_device_tree(data) == len(data)
    assert [inst.name for inst in kernel_of(v2_boot).list_instances()] == ["ok"]


def test_every_instance_skipped_still_returns_the_byte_count(v2_boot: HostBackend) -> None:
    data = _root(_instance("a", "resources { };") + _instance("b", "id = <2>;"))
    assert kernel_of(v2_boot).write_device_tree(data) == len(data)
    assert kernel_of(v2_boot).list_instances() == []
    empty = _root("")
    assert kernel_of(v2_boot).write_device_tree(empty) == len(empty)


def test_an_instance_that_overflows_the_4k_one_instance_dtb_is_skipped(v2_boot: HostBackend) -> None:
    big = "blob = [" + "00 " * 5000 + "];"
    data = _root(_instance("big", f"id = <1>; {big} resources {{ }};") + _instance("small", "id = <2>; resources { };"))
    assert kernel_of(v2_boot).write_device_tree(data) == len(data)
    assert [inst.name for inst in kernel_of(v2_boot).list_instances()] == ["small"]


def test_vector_12_same_name_again_is_skipped(v2_boot: HostBackend) -> None:
    kernel = kernel_of(v2_boot)
    kernel.write_device_tree(_root(WEB))
    before = kernel.read_instance(1)
    again = _root(_instance("web", "id = <7>; resources { cpus = <5>; memory-bytes = <0x1000000>; };"))
    assert kernel.write_device_tree(again) == len(again)
    assert kernel.list_instances() == [before]


def test_vector_13_same_id_second_name_is_not_created(v2_boot: HostBackend) -> None:
    kernel = kernel_of(v2_boot)
    data = _root(
        _instance("web", "id = <1>; resources { cpus = <1>; memory-bytes = <0x1000000>; };")
        + _instance("api", "id = <1>; resources { cpus = <2>; memory-bytes = <0x1000000>; };")
    )
    assert kernel.write_device_tree(data) == len(data)
    assert [(inst.id, inst.name) for inst in kernel.list_instances()] == [(1, "web")]
    # the IDR refusal returned the memory it had reserved for api
    assert kernel.read_pool().free_memory_bytes == GiB - 16 * MiB
    assert kernel.cpu_online(2)


def test_no_totalsize_check_and_the_resources_node_is_ignored(v2_boot: HostBackend) -> None:
    """v2 compares no totalsize (5.2 step 1) and ignores the daemon's /resources baseline node."""
    data = _root(WEB, extra="resources { cpus = <1 2 3>; memory-bytes = /bits/ 64 <0x40000000>; };")
    padded = data + b"\0" * 16
    assert kernel_of(v2_boot).write_device_tree(padded) == len(padded)
    assert kernel_of(v2_boot).status_file("web") == "ready\n"
    assert _errno_of_write(kernel_of(v2_boot), data[:-8]) == errno.EINVAL  # claims more than was written


def test_id_zero_is_accepted_and_cpus_are_a_mask(v2_boot: HostBackend) -> None:
    kernel = kernel_of(v2_boot)
    kernel.write_device_tree(_root(_instance("host0", "id = <0>; resources { cpus = <3 2 3>; };")))
    assert kernel.id_file("host0") == "0\n"
    assert kernel.read_instance(0).cpus == (2, 3)


def test_read_back_is_the_fixed_text(v2_boot: HostBackend) -> None:
    assert kernel_of(v2_boot).read_device_tree() == b"Write multikernel device tree here to propagate to instances\n"


def test_written_instances_survive_a_reload(make_backend: BackendFactory) -> None:
    first = make_backend(kernel_profile="rfc-v2")
    kernel_of(first).write_device_tree(_root(WEB))
    first.close()
    second = make_backend(kernel_profile="rfc-v2")
    assert kernel_of(second).status_file("web") == "ready\n"
    assert not kernel_of(second).cpu_online(1)


def test_v2_has_no_overlays(v2_boot: HostBackend) -> None:
    kernel = kernel_of(v2_boot)
    for call in (
        lambda: kernel.overlay_new(_root(WEB)),
        lambda: kernel.tx_status(2),
        lambda: kernel.overlay_ids(),
        lambda: kernel.rmdir("overlays/tx_2"),
        lambda: kernel.mkdir("overlays/tx_9"),
    ):
        with pytest.raises(KernelError) as exc:
            call()
        assert exc.value.errno_code == errno.ENOENT
    with pytest.raises(KernelError) as exc:
        kernel.mkdir("instances/foo")
    assert exc.value.errno_code == errno.EPERM


def test_v2_rmdir_of_an_instance_directory_destroys_it(v2_boot: HostBackend) -> None:
    kernel = kernel_of(v2_boot)
    kernel.write_device_tree(_root(WEB))
    kernel.rmdir("/sys/fs/multikernel/instances/web")
    assert kernel.list_instances() == []
    assert kernel.cpu_online(1)
    with pytest.raises(KernelError) as exc:
        kernel.rmdir("instances")
    assert exc.value.errno_code == errno.EPERM
