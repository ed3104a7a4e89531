"""Pool and instance management against the fake kernel, both profiles."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import POOL_BASE, GiB, Host, MakeHost, MiB

from mkd.backends.host.overlays import ranges_to_release
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, MemChunk, PoolSpec

WEB = InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=256 * MiB)
DB = InstanceSpec(id=2, name="db", cpus=(2, 3), memory_bytes=512 * MiB)


def _tree_pool(host: Host, *, cpus: tuple[int, ...] = (1, 2, 3), memory: int = GiB) -> None:
    host.backend.apply_pool(PoolSpec(cpus=cpus, memory_base=0x4000_0000, memory_bytes=memory))


# -- pool ---------------------------------------------------------------------------------------


def test_tree_pool_baseline_then_overlays(tree: Host) -> None:
    assert tree.backend.read_pool().spec is None
    state = tree.backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=0x4000_0000, memory_bytes=GiB, llc_way_mask=0xF0))
    assert [path for path, _ in tree.io.writes] == ["device_tree"]
    assert state.spec is not None
    assert state.spec.cpus == (1, 2)
    assert len(state.chunks) == 1 and state.chunks[0].bytes == GiB  # the kernel picked the base
    first = state.chunks[0]
    assert state.spec.llc_way_mask == 0xF0  # recorded: the kernel keeps no LLC mask
    assert state.free_cpus == (1, 2) and state.free_memory_bytes == GiB

    state = tree.backend.apply_pool(
        PoolSpec(cpus=(2, 3), memory_base=0, memory_bytes=2 * GiB, devices=("0000:01:00.0",))
    )
    assert [path for path, _ in tree.io.writes] == ["device_tree", "overlays/new"]
    # spec 5.4: the first transaction is tx_2
    assert tree.io.read("/sys/fs/multikernel/overlays/tx_2/status") == b"applied\n"
    assert state.spec is not None and sorted(state.spec.cpus) == [2, 3]
    assert state.spec.memory_bytes == 2 * GiB and len(state.chunks) == 2
    assert state.free_devices == ("0000:01:00.0",)

    state = tree.backend.apply_pool(PoolSpec(cpus=(2, 3), memory_base=0, memory_bytes=GiB, devices=()))
    assert state.chunks == (first,)  # the newest whole chunk went
    assert state.free_devices == ()


def test_tree_pool_unchanged_writes_nothing(tree: Host) -> None:
    _tree_pool(tree)
    _tree_pool(tree)
    assert len(tree.io.writes) == 1


def test_tree_pool_shrink_needs_whole_free_chunks(tree: Host) -> None:
    _tree_pool(tree)
    tree.backend.create_instances([WEB])
    with pytest.raises(KernelError) as raised:
        _tree_pool(tree, memory=GiB // 2)
    assert raised.value.errno == "EBUSY" and "(in use)" in raised.value.detail


def test_tree_pool_change_failure_is_ebusy_naming_the_tx(tree: Host) -> None:
    _tree_pool(tree)
    tree.backend.create_instances([WEB])
    with pytest.raises(KernelError) as raised:  # CPU 1 is lent to web: cpu-remove fails
        _tree_pool(tree, cpus=(2, 3))
    assert raised.value.errno == "EBUSY"
    assert "overlays/tx_" in raised.value.detail and "'failed'" in raised.value.detail


def test_v2_pool_is_recorded_and_checked_against_the_boot_pool(v2: Host) -> None:
    assert v2.backend.read_pool().spec is None
    spec = PoolSpec(cpus=(1, 2, 3), memory_base=POOL_BASE, memory_bytes=2 * GiB)
    state = v2.backend.apply_pool(spec)
    assert state.spec == spec and state.chunks == (MemChunk(POOL_BASE, 2 * GiB),)
    assert v2.io.writes[-1][0] == "device_tree"
    with pytest.raises(KernelError) as raised:
        v2.backend.apply_pool(PoolSpec(cpus=(1,), memory_base=POOL_BASE, memory_bytes=8 * GiB))
    assert raised.value.errno == "ERANGE"
    with pytest.raises(KernelError) as raised:
        v2.backend.apply_pool(PoolSpec(cpus=(1,), memory_base=0x1000_0000, memory_bytes=GiB))
    assert raised.value.errno == "EINVAL"
    assert v2.backend.read_pool().spec == spec


# -- create -------------------------------------------------------------------------------------


def test_v2_create_reads_back_each_instance(v2: Host) -> None:
    v2.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=POOL_BASE, memory_bytes=2 * GiB))
    created = v2.backend.create_instances([WEB, DB])
    assert [(i.id, i.name, i.kernel_state) for i in created] == [(1, "web", "ready"), (2, "db", "ready")]
    assert created[1].cpus == (2, 3)  # read back from device_tree_source's [hex bytes] form
    assert created[1].memory_bytes == 512 * MiB
    assert created[1].memory and created[1].memory[0].bytes == 512 * MiB  # iomem regions
    state = v2.backend.read_pool()
    assert state.free_cpus == () and state.free_memory_bytes == 2 * GiB - 768 * MiB


def test_v2_skipped_instance_is_an_error_and_rolls_back(v2: Host) -> None:
    # The kernel skips db (CPU 7 is not below nr_cpu_ids, spec 5.2) and the write still succeeds.
    with pytest.raises(KernelError) as raised:
        v2.backend.create_instances([WEB, InstanceSpec(id=2, name="db", cpus=(7,), memory_bytes=512 * MiB)])
    assert raised.value.errno == "EINVAL" and "db" in raised.value.detail
    assert v2.backend.list_instances() == []  # web was created by the write, then removed


def test_v2_skip_for_memory_is_enomem(v2: Host) -> None:
    v2.backend.apply_pool(PoolSpec(cpus=(1,), memory_base=POOL_BASE, memory_bytes=GiB))
    # v2 ignores the baseline and carves from the whole boot pool (4 GiB here).
    v2.backend.create_instances([InstanceSpec(id=1, name="big", cpus=(1,), memory_bytes=3 * GiB)])
    with pytest.raises(KernelError) as raised:
        v2.backend.create_instances([InstanceSpec(id=2, name="more", cpus=(2,), memory_bytes=2 * GiB)])
    assert raised.value.errno == "ENOMEM"


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_duplicates_are_eexist_before_any_write(make_host: MakeHost, profile: str) -> None:
    host = make_host(profile)
    if profile == "tree":
        _tree_pool(host)
    host.backend.create_instances([WEB])
    writes = len(host.io.writes)
    for spec in (
        InstanceSpec(id=9, name="web", cpus=(), memory_bytes=0),
        InstanceSpec(id=1, name="x", cpus=(), memory_bytes=0),
    ):
        with pytest.raises(KernelError) as raised:
            host.backend.create_instances([spec])
        assert raised.value.errno == "EEXIST"
    assert len(host.io.writes) == writes


def test_tree_create_is_one_overlay_per_instance(tree: Host) -> None:
    _tree_pool(tree)
    created = tree.backend.create_instances([WEB, DB])
    assert [path for path, _ in tree.io.writes] == ["device_tree", "overlays/new", "overlays/new"]
    assert created[1].cpus == (2, 3) and created[1].memory_bytes == 512 * MiB
    assert tree.backend.read_pool().free_cpus == ()


def test_tree_create_failure_rolls_back_earlier_transactions(tree: Host) -> None:
    _tree_pool(tree)
    big = InstanceSpec(id=2, name="big", cpus=(2,), memory_bytes=4 * GiB)
    with pytest.raises(KernelError) as raised:
        tree.backend.create_instances([WEB, big])
    assert raised.value.errno == "ENOMEM"
    assert "overlays/tx_3" in raised.value.detail and "the kernel logged" in raised.value.detail
    assert tree.backend.list_instances() == []
    # web's transaction was rolled back by rmdir: tx_2 is gone, the failed tx_3 stays.
    assert tree.io.listdir("/sys/fs/multikernel/overlays") == ["new", "tx_3"]


def test_tree_create_without_cpus_is_ebusy_and_rolled_back(tree: Host) -> None:
    _tree_pool(tree)
    # CPU 0 is the host's, never in the pool: the kernel creates db without it (spec 5.3).
    with pytest.raises(KernelError) as raised:
        tree.backend.create_instances([WEB, InstanceSpec(id=2, name="db", cpus=(2, 0), memory_bytes=512 * MiB)])
    assert raised.value.errno == "EBUSY" and "CPUs [0" in raised.value.detail
    assert tree.backend.list_instances() == []


# -- update / delete ----------------------------------------------------------------------------


def test_tree_update_moves_cpus_and_memory(tree: Host) -> None:
    _tree_pool(tree)
    tree.backend.create_instances([WEB])
    grown = tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(2, 3), memory_bytes=512 * MiB))
    assert grown.cpus == (2, 3) and grown.memory_bytes == 512 * MiB
    # The kernel removes whole instance chunks only: shrink back by the chunk that grew it.
    shrunk = tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(2,), memory_bytes=256 * MiB))
    assert shrunk.cpus == (2,) and shrunk.memory_bytes == 256 * MiB
    writes = len(tree.io.writes)
    tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(2,), memory_bytes=256 * MiB))
    assert len(tree.io.writes) == writes  # nothing to change, nothing written


def test_tree_update_beyond_the_pool_is_enomem(tree: Host) -> None:
    _tree_pool(tree)
    tree.backend.create_instances([WEB])
    with pytest.raises(KernelError) as raised:
        tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=4 * GiB))
    assert raised.value.errno == "ENOMEM"


def test_v2_update_is_eopnotsupp(v2: Host) -> None:
    v2.backend.create_instances([WEB])
    with pytest.raises(KernelError) as raised:
        v2.backend.update_instance(WEB)
    assert raised.value.errno == "EOPNOTSUPP" and raised.value.status == 409


def test_release_ranges_are_whole_regions_only() -> None:
    from mkd.kernel_types import KernelInstance

    instance = KernelInstance(
        id=1,
        name="web",
        kernel_state="ready",
        cpus=(),
        memory_bytes=3 * MiB,
        llc_way_mask=None,
        devices=(),
        kimage=None,
        memory=(MemChunk(0x100000, 2 * MiB), MemChunk(0x800000, MiB)),
    )
    assert ranges_to_release(instance, MiB) == [MemChunk(0x800000, MiB)]
    assert ranges_to_release(instance, 2 * MiB) == [MemChunk(0x100000, 2 * MiB)]
    with pytest.raises(KernelError) as raised:  # spec 8.6.2: a part of a region cannot be named
        ranges_to_release(instance, MiB + 4096)
    assert raised.value.errno == "EINVAL" and "whole regions" in raised.value.detail


def test_v2_delete_is_rmdir_and_busy_propagates(v2: Host, images: dict[str, Path]) -> None:
    from mkd.kernel_types import LoadRequest
    from mkd.kexec.flags import load_flags

    v2.backend.create_instances([WEB, DB])
    v2.backend.delete_instance(2)
    assert [i.name for i in v2.backend.list_instances()] == ["web"]
    v2.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(1, has_initrd=False))
    )
    with pytest.raises(KernelError) as raised:  # spec vector 35
        v2.backend.delete_instance(1)
    assert raised.value.errno == "EBUSY"
    with pytest.raises(KernelError) as raised:
        v2.backend.delete_instance(7)
    assert raised.value.errno == "ENOENT" and raised.value.status == 404


def test_tree_delete_is_an_instance_remove_overlay(tree: Host, images: dict[str, Path]) -> None:
    from mkd.kernel_types import LoadRequest
    from mkd.kexec.flags import load_flags

    _tree_pool(tree)
    tree.backend.create_instances([WEB, DB])
    tree.backend.delete_instance(2)
    assert [i.name for i in tree.backend.list_instances()] == ["web"]
    tree.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(1, has_initrd=False))
    )
    with pytest.raises(KernelError) as raised:  # spec vector 46
        tree.backend.delete_instance(1)
    assert raised.value.errno == "EBUSY" and "instance-remove 'web'" in raised.value.detail
    assert tree.backend.read_instance(1).kernel_state == "loaded"


def test_read_unknown_instance_is_enoent(tree: Host) -> None:
    with pytest.raises(KernelError) as raised:
        tree.backend.read_instance(5)
    assert raised.value.errno_code == errno.ENOENT


def test_tree_create_checks_platform_devices_only(tree: Host) -> None:
    # uart0 is not in the pool, so the kernel creates db without it; PCI devices live in the
    # instance DTB's bridge tree (spec 5.3), so only platform ones are checked.
    _tree_pool(tree)
    with_pci = InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=MiB, devices=("0000:01:00.0",))
    assert tree.backend.create_instances([with_pci])[0].name == "web"
    with_uart = InstanceSpec(id=2, name="db", cpus=(2,), memory_bytes=MiB, devices=("uart0",))
    with pytest.raises(KernelError) as raised:
        tree.backend.create_instances([with_uart])
    assert raised.value.errno == "EBUSY" and "devices ['uart0']" in raised.value.detail
    assert [i.name for i in tree.backend.list_instances()] == ["web"]


def test_v2_pool_record_survives_a_new_backend(v2: Host) -> None:
    from mkd.backends.host.backend import HostBackend

    spec = PoolSpec(cpus=(1, 2), memory_base=POOL_BASE, memory_bytes=GiB, llc_way_mask=0x3)
    v2.backend.apply_pool(spec)
    again = HostBackend(v2.settings, v2.io)
    assert again.read_pool().spec == spec


def test_without_the_kernel_log_a_failed_transaction_errno_is_inferred(make_host: MakeHost) -> None:
    """A real kernel only logs why a transaction failed (spec 5.4): the errno is inferred."""
    host = make_host("tree", real_view=True)
    _tree_pool(host, cpus=(1, 2))
    with pytest.raises(KernelError) as raised:
        host.backend.create_instances([InstanceSpec(id=2, name="big", cpus=(2,), memory_bytes=4 * GiB)])
    assert raised.value.errno == "ENOMEM" and "inferred" in raised.value.detail
    host.backend.create_instances([WEB])
    # CPU 3 is not in this pool: the kernel logs EBUSY, a client without its log infers EINVAL for
    # a READY instance (overlays.py), and says it inferred it
    with pytest.raises(KernelError) as raised:
        host.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(1, 3), memory_bytes=WEB.memory_bytes))
    assert raised.value.errno == "EINVAL" and "inferred" in raised.value.detail


def test_a_v2_skip_answers_the_errno_the_kernel_logged(v2: Host) -> None:
    """spec 5.2: the write succeeds; the simulator's log says why (CPU 9 >= nr_cpu_ids: EINVAL)."""
    v2.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=POOL_BASE, memory_bytes=2 * GiB))
    with pytest.raises(KernelError) as raised:
        v2.backend.create_instances([InstanceSpec(id=1, name="web", cpus=(9,), memory_bytes=256 * MiB)])
    assert raised.value.errno == "EINVAL" and "the kernel logged" in raised.value.detail
    assert v2.backend.list_instances() == []


# -- the pool read after a write reads what the write touched, not every instance (issue 15) --


def _instance_reads(host: Host) -> set[str]:
    return {path.split("/")[1] for path in host.io.reads if path.startswith("instances/")}


@pytest.mark.parametrize("profile", ["tree", "v2"])
def test_pool_read_after_create_and_delete_reads_only_the_new_directory(
    profile: str, request: pytest.FixtureRequest
) -> None:
    host: Host = request.getfixturevalue(profile)
    if profile == "tree":
        _tree_pool(host)
    else:
        host.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=POOL_BASE, memory_bytes=GiB))
    host.backend.create_instances([WEB])
    host.backend.read_pool()
    host.io.reads.clear()
    host.backend.create_instances([DB])
    host.io.reads.clear()
    state = host.backend.read_pool()
    assert _instance_reads(host) == {"db"}  # web was remembered
    assert state.free_memory_bytes == GiB - 768 * MiB
    host.backend.delete_instance(2)
    host.io.reads.clear()
    state = host.backend.read_pool()
    assert _instance_reads(host) == set()
    assert state.free_memory_bytes == GiB - 256 * MiB
    if profile == "v2":
        assert state.free_cpus == (2, 3)


def test_pool_read_after_a_resize_sees_the_new_size(tree: Host) -> None:
    _tree_pool(tree)
    tree.backend.create_instances([WEB])
    assert tree.backend.read_pool().free_memory_bytes == GiB - 256 * MiB
    tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=512 * MiB))
    assert tree.backend.read_pool().free_memory_bytes == GiB - 512 * MiB


def test_pool_read_sees_an_instance_removed_by_another_hand(v2: Host) -> None:
    v2.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=POOL_BASE, memory_bytes=GiB))
    v2.backend.create_instances([WEB, DB])
    assert v2.backend.read_pool().free_cpus == ()
    v2.kernel.rmdir_instance("db")  # spec 1.1, not through this backend: the listing shows it gone
    state = v2.backend.read_pool()
    assert state.free_cpus == (2, 3) and state.free_memory_bytes == GiB - 256 * MiB
