"""Instance creation and destruction with each generation's rules (spec 3.2, 4, 5.2, 5.3)."""

from __future__ import annotations

import errno

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of, spec, tree_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.overlay import build_instance_create_overlay
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelInstance, PoolSpec


def _refused(backend: HostBackend, specs: list[InstanceSpec]) -> int:
    with pytest.raises(KernelError) as exc:
        backend.create_instances(specs)
    return exc.value.errno_code


def test_v2_creation_is_ready_with_carved_memory(v2: HostBackend) -> None:
    """vector 6: web(id1, cpus<1>, 512 MiB), db(id2, cpus<2 3>, 1 GiB would not fit: use 256 MiB)."""
    web, db = v2.create_instances([spec(1, "web", (1,), 512 * MiB), spec(2, "db", (3, 2), 256 * MiB)])
    assert (web.kernel_state, db.kernel_state) == ("ready", "ready")
    assert db.cpus == (2, 3)  # a cpumask: sorted
    assert web.memory_bytes == sum(c.bytes for c in web.memory) == 512 * MiB
    assert kernel_of(v2).status_file("web") == "ready\n"
    assert kernel_of(v2).id_file("web") == "1\n"
    assert v2.read_pool().free_memory_bytes == GiB - 768 * MiB


def _v2_logged(kernel: SimulatedKernel, name: str, body: str) -> str:
    """Write one v2 instance to device_tree (spec 5.2: the write succeeds) and return the errno
    the kernel logged for skipping it, as its device_tree_log shows it ("" when created)."""
    blob = dts_to_dtb(f'/dts-v1/;\n/ {{ compatible = "multikernel-v1"; instances {{ {name} {{ {body} }}; }}; }};')
    assert kernel.write_device_tree(blob) == len(blob)
    logged = [line.split() for line in kernel.device_tree_log().splitlines()]
    return next((fields[1] for fields in logged if fields[0] == name), "")


def test_v2_rules_in_order(v2: HostBackend) -> None:
    v2.create_instances([spec(1, "web")])
    # the client refuses a known name or id before writing (the v2 kernel would skip or ENOSPC it)
    assert _refused(v2, [spec(2, "web")]) == errno.EEXIST
    assert _refused(v2, [spec(1, "db")]) == errno.EEXIST
    # what the kernel refuses comes back with the errno it logged
    assert _refused(v2, [spec(2, "db", memory=0x1001)]) == errno.EINVAL  # vector 10
    assert _refused(v2, [spec(2, "db", cpus=(8,))]) == errno.EINVAL  # >= nr_cpu_ids
    assert _refused(v2, [spec(2, "db", memory=GiB)]) == errno.ENOMEM  # only 512 MiB left
    assert v2.list_instances()[0].name == "web"
    assert v2.read_pool().free_memory_bytes == GiB - 512 * MiB
    # the kernel's own order: name before the reservation, the id (IDR) only after it
    kernel = kernel_of(v2)
    assert _v2_logged(kernel, "web", "id = <2>; resources { memory-bytes = <0x40000000>; };") == "EEXIST"
    assert _v2_logged(kernel, "db", "id = <1>; resources { memory-bytes = <0x40000000>; };") == "ENOMEM"
    assert _v2_logged(kernel, "db", "id = <1>; resources { memory-bytes = <0x100000>; };") == "ENOSPC"  # vector 13
    # the failed id check returned the carved memory
    assert kernel.read_pool().free_memory_bytes == GiB - 512 * MiB


def test_v2_allows_shared_cpus_and_no_memory(v2: HostBackend) -> None:
    """The raw v2 kernel does not check CPU sharing; memory-bytes is optional (spec 4, 5.2)."""
    a, b = v2.create_instances([spec(1, "a", (1,), 0), spec(2, "b", (1,), 0)])
    assert a.cpus == b.cpus == (1,)
    assert a.memory == ()


def test_tree_rules(tree: HostBackend) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    assert _refused(tree, [spec(2, "web")]) == errno.EEXIST  # vector 43
    assert _refused(tree, [spec(1, "db")]) == errno.EEXIST  # explicit id used
    with pytest.raises(KernelError) as exc:  # vector 44
        tree.create_instances([spec(0, "db")])
    assert exc.value.errno_code == errno.ENOMEM and "reserved for the host" in exc.value.detail
    assert _refused(tree, [spec(2, "db", memory=2 * GiB)]) == errno.ENOMEM  # vector 52
    assert _refused(tree, [spec(2, "a/b")]) == errno.EINVAL
    assert _refused(tree, [spec(2, "db", memory=0x1001)]) == errno.EINVAL


def _kernel_create(kernel: SimulatedKernel, new: InstanceSpec) -> KernelInstance:
    """instance-create written to the kernel's overlays/new, without the client's check that
    every CPU and device arrived (spec 5.3: the kernel only logs what it left out)."""
    tx_id = kernel.overlay_new(build_instance_create_overlay(new))
    assert kernel.tx_status(tx_id) == "applied"
    return kernel.read_instance(new.id)


def test_tree_cpus_not_free_create_the_instance_without_cpus(tree: HostBackend) -> None:
    """vector 51: CPU 7 is not in the pool; all or nothing, failure only logged."""
    kernel = kernel_of(tree)
    inst = _kernel_create(kernel, spec(1, "web", cpus=(2, 7), memory=64 * MiB))
    assert inst.kernel_state == "ready"
    assert inst.cpus == ()
    other = _kernel_create(kernel, spec(2, "db", cpus=(3, 1), memory=64 * MiB))
    assert other.cpus == (3, 1)  # order kept: the first is the boot CPU
    third = _kernel_create(kernel, spec(3, "late", cpus=(3,), memory=0))
    assert third.cpus == ()  # CPU 3 is lent to db


def test_tree_devices_not_in_pool_are_skipped(tree: HostBackend) -> None:
    inst = _kernel_create(kernel_of(tree), spec(1, "web", devices=("uart0", "0000:01:00.0")))
    assert inst.devices == ("0000:01:00.0",)


def test_the_client_refuses_an_instance_created_without_its_cpus(tree: HostBackend) -> None:
    """The kernel's silent omission (vector 51) becomes EBUSY, and the create is rolled back."""
    with pytest.raises(KernelError) as exc:
        tree.create_instances([spec(1, "web", cpus=(2, 7), memory=64 * MiB)])
    assert exc.value.errno_code == errno.EBUSY and "CPUs [2, 7]" in exc.value.detail
    assert tree.list_instances() == []


def test_tree_lowest_free_id(tree: HostBackend) -> None:
    """vector 45: ids 1 and 2 used, a create without id gets 3."""
    tree.create_instances([spec(1, "a", (), 0), spec(2, "b", (), 0)])
    assert kernel_of(tree).lowest_free_id() == 3
    tree.delete_instance(1)
    assert kernel_of(tree).lowest_free_id() == 1


def test_tree_numa_node_carving(make_backend: BackendFactory) -> None:
    # node 0 holds RAM [0, 2 GiB), node 1 [2 GiB, 4 GiB); chunks come from above 1 GiB
    backend = make_backend(kernel_profile="tree", memory_bytes=4 * GiB, pool_base=GiB)
    backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=GiB, memory_bytes=GiB))
    backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=GiB, memory_bytes=2 * GiB))
    nodes = {c.numa_node for c in backend.read_pool().chunks}
    assert nodes == {0, 1}
    (inst,) = backend.create_instances([spec(1, "web", (), 128 * MiB, numa_node=1)])
    assert {c.numa_node for c in inst.memory} == {1}


def test_carving_takes_discontiguous_chunks(v2: HostBackend) -> None:
    """spec 3.2: whole size, else 1 MiB, else 256 KiB, else a page; several chunks are fine."""
    v2.create_instances([spec(i, f"i{i}", (), 128 * MiB) for i in range(1, 9)])
    for i in (2, 4, 6):
        v2.delete_instance(i)
    (big,) = v2.create_instances([spec(10, "big", (), 300 * MiB)])
    assert big.memory_bytes == 300 * MiB
    assert len(big.memory) > 1
    assert v2.read_pool().free_memory_bytes == 84 * MiB


def test_create_instances_is_all_or_nothing(v2: HostBackend) -> None:
    before = v2.read_pool()
    assert (
        _refused(v2, [spec(1, "a", (1,), 256 * MiB), spec(2, "b", (2,), 256 * MiB), spec(3, "a", (3,), 0)])
        == errno.EEXIST
    )
    assert v2.list_instances() == []
    assert v2.read_pool() == before


def test_delete_returns_resources(v2: HostBackend) -> None:
    """vector 36: rmdir while ready: gone, CPUs and memory released."""
    v2.create_instances([spec(1, "web", (1, 2), 512 * MiB)])
    kernel_of(v2).rmdir_instance("web")
    assert v2.list_instances() == []
    pool = v2.read_pool()
    assert pool.free_memory_bytes == GiB and 1 in pool.free_cpus and 2 in pool.free_cpus
    with pytest.raises(KernelError) as exc:
        v2.read_instance(1)
    assert exc.value.errno_code == errno.ENOENT


def test_mkdir_and_tree_rmdir_are_eperm(v2: HostBackend, tree: HostBackend) -> None:
    """vector 37, spec 6.1."""
    for backend in (v2, tree):
        with pytest.raises(KernelError) as exc:
            kernel_of(backend).mkdir_instance("foo")
        assert exc.value.errno_code == errno.EPERM
    tree.create_instances([spec(1, "web")])
    with pytest.raises(KernelError) as exc:
        kernel_of(tree).rmdir_instance("web")
    assert exc.value.errno_code == errno.EPERM


def test_llc_way_rules(tree_llc: HostBackend) -> None:
    """spec 4.1 with `llc_way_masks` (the mid revision): the kernel keeps no mask a client can
    read back, so the rules are checked at the kernel's overlays/new, errno from its log."""
    kernel = kernel_of(tree_llc)

    def refused(new: InstanceSpec) -> str:
        tx_id = kernel.overlay_new(build_instance_create_overlay(new))
        assert kernel.tx_status(tx_id) == "failed"
        return (kernel.tx_log(tx_id) or "").split(":", 1)[0]

    assert refused(spec(1, "a", llc_way_mask=0)) == "EINVAL"
    assert refused(spec(1, "a", llc_way_mask=0x1)) == "EINVAL"  # outside baseline 0xff0
    assert _kernel_create(kernel, spec(1, "a", (), 0, llc_way_mask=0x030)).llc_way_mask == 0x030
    assert refused(spec(2, "b", (), 0, llc_way_mask=0x010)) == "EBUSY"
    assert kernel.read_pool().free_llc_way_mask == 0xFC0
    assert tree_baseline().llc_way_mask == 0xFF0
    # through the client the logged errno comes back
    with pytest.raises(KernelError) as exc:
        tree_llc.create_instances([spec(2, "b", (), 0, llc_way_mask=0x010)])
    assert exc.value.errno_code == errno.EBUSY and "overlaps" in exc.value.detail
