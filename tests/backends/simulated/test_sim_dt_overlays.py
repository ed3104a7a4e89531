"""tree overlays: overlays/new, tx_<N> files, apply order, rollback (spec 5.3, 5.4; vectors 42-52)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of, load_flags

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.persistence import stored_document
from mkd.devicetree.dts import dts_to_dtb
from mkd.errors import KernelError


def _overlay(*fragments: str, root_props: str = "") -> bytes:
    body = "".join(
        f'fragment@{index:x} {{ target-path = "{target}"; __overlay__ {{ {ops} }}; }};'
        for index, (target, ops) in enumerate(fragment.split("|", 1) for fragment in fragments)
    )
    return dts_to_dtb(f"/dts-v1/;\n/ {{ {root_props} {body} }};")


def _create(name: str, resources: str = "", extra: str = "") -> str:
    return f'/instances|instance-create {{ instance-name = "{name}"; {extra} resources {{ {resources} }}; }};'


def _remove(name: str) -> str:
    return f'/instances|instance-remove {{ instance-name = "{name}"; }};'


def _errno_of(call: object, *args: object) -> int:
    with pytest.raises(KernelError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.errno_code


def _new(kernel: SimulatedKernel, *fragments: str) -> tuple[int, str]:
    """(tx id, status); a failed status carries the errno the kernel only logs: "failed EEXIST"."""
    tx_id = kernel.overlay_new(_overlay(*fragments))
    return tx_id, _status(kernel, tx_id)


def _status(kernel: SimulatedKernel, tx_id: int) -> str:
    status = kernel.tx_status(tx_id)
    if status != "failed":
        return status
    error = kernel._model.overlays[tx_id].error or ""
    return f"failed {error.removeprefix('rollback: ').split(':', 1)[0]}"


def _names(kernel: SimulatedKernel) -> list[str]:
    return [inst.name for inst in kernel.list_instances()]


MEM_256M = "memory-bytes = /bits/ 64 <0x10000000>;"
VIRTIO_17 = "virtio { " + "".join(f"v{n} {{ device-id = <1>; queues = <1>; }};" for n in range(17)) + "};"
BASELINE = dts_to_dtb(
    "/dts-v1/; / { resources { cpus = /bits/ 64 <1 2 3 4>; memory@0 { size = /bits/ 64 <0x40000000>; }; }; };"
)  # the spec 7 tree setup, written as the kernel's baseline


def test_vector_42_resources_overlay_before_any_baseline(make_backend: BackendFactory) -> None:
    kernel = kernel_of(make_backend(kernel_profile="tree"))
    data = _overlay("/resources|cpu-add { cpu@1 { reg = /bits/ 64 <1>; }; };")
    assert kernel.overlay_new(data) == 2  # the write succeeds; the first transaction is tx_2
    assert kernel.tx_status(2) == "failed"
    files = kernel.tx_files(2)
    assert files == {
        "id": b"2\n",
        "status": b"failed\n",
        "instance": b"/resources\n",
        "resources": b"unknown\n",
        "dtbo": data,
    }
    assert kernel.overlay_ids() == [2]
    assert kernel.read_pool().free_cpus == ()


def test_vector_43_second_create_of_the_same_name_fails(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    first, status = _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M))
    assert status == "applied"
    second, status = _new(kernel, _create("web", "cpus = /bits/ 64 <2>;"))
    assert (second, status) == (first + 1, "failed EEXIST")
    assert kernel.read_instance(1).cpus == (1,)
    # an explicit id that is taken is EEXIST too
    _, status = _new(kernel, _create("api", extra="id = <1>;"))
    assert status == "failed EEXIST"
    assert _names(kernel) == ["web"]


def test_vector_44_explicit_id_zero_fails(tree: HostBackend) -> None:
    _, status = _new(kernel_of(tree), _create("zero", MEM_256M, extra="id = <0>;"))
    assert status == "failed ENOMEM"
    assert kernel_of(tree).list_instances() == []
    assert kernel_of(tree).read_pool().free_memory_bytes == GiB


def test_vector_45_no_id_takes_the_lowest_free(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("a", extra="id = <1>;"), _create("b", extra="id = <2>;"))
    _, status = _new(kernel, _create("c"))
    assert status == "applied"
    assert kernel.id_file("c") == "3\n"


def _load(backend: HostBackend, image: Path, instance_id: int) -> None:
    kernel_of(backend).kexec_file_load(image, None, b"quiet\0", load_flags(instance_id))


def test_vector_46_removing_a_loaded_instance_fails(tree: HostBackend, images: dict[str, Path]) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M, extra="id = <1>;"))
    _load(tree, images["vmlinux"], 1)
    assert kernel.status_file("web") == "loaded\n"
    _, status = _new(kernel, _remove("web"))
    assert status == "failed EBUSY"
    assert kernel.status_file("web") == "loaded\n"
    assert kernel.read_instance(1).cpus == (1,)


def test_instance_remove_of_ready_and_unknown(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1 2>;" + MEM_256M))
    _, status = _new(kernel, _remove("web"))
    assert status == "applied"
    assert kernel.list_instances() == []
    pool = kernel.read_pool()
    assert (pool.free_cpus, pool.free_memory_bytes) == ((1, 2, 3, 4), GiB)
    _, status = _new(kernel, _remove("web"))  # ENOENT
    assert status == "failed ENOENT"


@pytest.mark.parametrize(
    "target",
    ["/foo", "/instances/", "/instances/a/b", "/resources/x", "/"],
)
def test_vector_47_bad_target_fails(tree: HostBackend, target: str) -> None:
    _, status = _new(kernel_of(tree), f"{target}|cpu-add {{ cpu@1 {{ reg = <1>; }}; }};")
    assert status == "failed EINVAL"
    assert kernel_of(tree).read_pool().free_cpus == (1, 2, 3, 4)


def test_vector_48_a_2_mib_blob_is_efbig_and_creates_no_tx(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    before = kernel.overlay_ids()
    assert _errno_of(kernel.overlay_new, b"\xd0\x0d\xfe\xed" + b"\0" * (2 * MiB - 4)) == errno.EFBIG
    assert kernel.overlay_ids() == before
    next_id = kernel.overlay_new(_overlay(_create("web")))
    assert next_id == kernel._model.next_tx and next_id not in before  # no id was used up


def test_refusals_of_the_write_itself(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    before = kernel.overlay_ids()  # the client's baseline added the PCI device with an overlay
    data = _overlay(_create("web"))
    assert _errno_of(kernel.overlay_new, b"") == errno.EINVAL
    assert _errno_of(kernel.overlay_new, data, 4) == errno.EINVAL  # offset != 0
    assert _errno_of(kernel.overlay_new, b"\0" + data[1:]) == errno.EINVAL  # bad header
    assert _errno_of(kernel.overlay_new, data[:40]) == errno.EINVAL  # totalsize beyond the write
    assert kernel.overlay_ids() == before


def test_vector_49_rollback_of_a_create_destroys_the_ready_instance(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    before = kernel.overlay_ids()
    tx_id, _ = _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M))
    kernel.rmdir(f"overlays/tx_{tx_id}")
    assert kernel.list_instances() == []
    assert kernel.read_pool().free_memory_bytes == GiB
    assert kernel.tx_status(tx_id) == "removed"
    assert kernel.overlay_ids() == before
    assert _errno_of(kernel.tx_files, tx_id) == errno.ENOENT
    assert _errno_of(kernel.rmdir_tx, tx_id) == errno.ENOENT  # already removed
    assert _errno_of(kernel.rmdir_tx, 999) == errno.ENOENT


def test_vector_50_rollback_of_an_active_instance_is_ebusy(tree: HostBackend, images: dict[str, Path]) -> None:
    kernel = kernel_of(tree)
    before = kernel.overlay_ids()
    tx_id, _ = _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M, extra="id = <1>;"))
    _load(tree, images["vmlinux"], 1)
    tree.start(1)
    assert _errno_of(kernel.rmdir, f"/sys/fs/multikernel/overlays/tx_{tx_id}") == errno.EBUSY
    assert kernel.tx_status(tx_id) == "failed"
    assert kernel.overlay_ids() == [*before, tx_id]
    assert kernel.status_file("web") == "active\n"
    # once halted and unloaded, the same rollback goes through
    tree.stop(1, force=True)
    tree.unload(1)
    kernel.rmdir_tx(tx_id)
    assert kernel.list_instances() == []


def test_vector_51_cpu_not_in_the_pool_is_only_logged(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _, status = _new(kernel, _create("web", "cpus = /bits/ 64 <1 7>;" + MEM_256M))
    assert status == "applied"
    assert kernel.status_file("web") == "ready\n"
    assert kernel.read_instance(1).cpus == ()
    assert kernel.read_pool().free_cpus == (1, 2, 3, 4)


def test_vector_52_more_memory_than_the_pool_fails(tree: HostBackend) -> None:
    _, status = _new(kernel_of(tree), _create("big", "memory-bytes = /bits/ 64 <0x80000000>;"))
    assert status == "failed ENOMEM"
    assert kernel_of(tree).list_instances() == []


@pytest.mark.parametrize(
    ("create", "code"),
    [
        ("/instances|instance-create { resources { }; };", "EINVAL"),  # no instance-name
        ('/instances|instance-create { instance-name = ""; resources { }; };', "EINVAL"),
        ('/instances|instance-create { instance-name = "a/b"; resources { }; };', "EINVAL"),
        ('/instances|instance-create { instance-name = "web"; };', "EINVAL"),  # no resources
        (_create("web", "memory-bytes = <0x10000000>;"), "EINVAL"),  # 4 bytes, the tree wants 8
        (_create("web", "memory-bytes = /bits/ 64 <0x1001>;"), "EINVAL"),
        (_create("web", "cpus = <1>;"), "EINVAL"),  # u32 cells, the tree wants u64
        (_create("web", "numa-nodes = <1024>;"), "EINVAL"),
        (_create("web", 'device-names = "eth0";'), "EINVAL"),
        (_create("web", 'devices { d { device-type = "platform"; }; };'), "EINVAL"),
        (_create("web", 'devices { d { device-type = "pci"; pci-id = "1:2"; }; };'), "EINVAL"),
        (_create("web", "virtio { net { device-id = <1>; }; };"), "EINVAL"),
        (_create("web", "virtio { net { device-id = <1>; queues = <0>; }; };"), "EINVAL"),
        (_create("web", VIRTIO_17), "E2BIG"),
    ],
)
def test_instance_create_schema_refusals(tree: HostBackend, create: str, code: str) -> None:
    _, status = _new(kernel_of(tree), create)
    assert status == f"failed {code}"
    assert kernel_of(tree).list_instances() == []


def test_instance_create_with_numa_devices_and_virtio(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    resources = (
        "cpus = /bits/ 64 <2 1>; numa-nodes = <0 1>;" + MEM_256M + "devices {"
        ' nic { device-type = "pci"; pci-id = "0000:01:00.0"; };'
        ' uart { device-type = "platform"; acpi-hid = "PNP0501"; };'  # not in the pool: only logged
        "}; virtio { net { device-id = <1>; queues = <2>; }; };"
    )
    _, status = _new(kernel, _create("web", resources, extra="id = <7>;"))
    assert status == "applied"
    inst = kernel.read_instance(7)
    assert inst.cpus == (2, 1)  # the first listed CPU is the boot CPU
    assert inst.devices == ("0000:01:00.0",)
    assert {chunk.numa_node for chunk in inst.memory} == {0}


def test_first_error_stops_without_rolling_back(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    tx_id, status = _new(kernel, _create("a"), "/foo|", _create("b"))
    assert status == "failed EINVAL"
    assert _names(kernel) == ["a"]  # fragment 0 stays applied, fragment 2 never ran
    kernel.rmdir_tx(tx_id)  # the rollback undoes what was applied
    assert kernel.list_instances() == []


def test_fragments_run_in_ascending_unit_address(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    data = dts_to_dtb(
        "/dts-v1/; / {"
        ' mk,resources = "web: 2 cpus";'
        ' fragment@10 { target-path = "/instances/web"; __overlay__ { cpu-add { cpu@2 { reg = <2>; }; }; }; };'
        ' fragment@2 { target-path = "/instances"; __overlay__ {'
        '   instance-create { instance-name = "web"; resources { cpus = /bits/ 64 <1>; }; }; }; };'
        "};"
    )
    tx_id = kernel.overlay_new(data)
    assert kernel.tx_status(tx_id) == "applied"
    assert kernel.read_instance(1).cpus == (1, 2)
    files = kernel.tx_files(tx_id)
    assert files["instance"] == b"/instances\n"  # the first fragment in unit-address order
    assert files["resources"] == b"web: 2 cpus\n"


@pytest.mark.parametrize(
    "root",
    [
        "",  # no fragments
        'fragment@xyz { target-path = "/instances"; __overlay__ { }; };',
        'fragment { target-path = "/instances"; __overlay__ { }; };',
        "fragment@0 { __overlay__ { }; };",  # no target-path
        'fragment@0 { target-path = "/instances"; };',  # no __overlay__
    ],
)
def test_malformed_fragments_fail_the_tx(tree: HostBackend, root: str) -> None:
    tx_id = kernel_of(tree).overlay_new(dts_to_dtb(f"/dts-v1/; / {{ {root} }};"))
    assert _status(kernel_of(tree), tx_id) == "failed EINVAL"


def test_target_rules_for_ops(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web"))
    # resource ops under /instances, instance ops outside it, unknown instance
    assert _new(kernel, "/instances|cpu-add { cpu@1 { reg = <1>; }; };")[1] == "failed EINVAL"
    assert _new(kernel, '/resources|instance-remove { instance-name = "web"; };')[1] == "failed EINVAL"
    assert _new(kernel, '/instances/web|instance-create { instance-name = "x"; resources { }; };')[1] == "failed EINVAL"
    assert _new(kernel, "/instances/nope|cpu-add { cpu@1 { reg = <1>; }; };")[1] == "failed ENOENT"
    assert _names(kernel) == ["web"]


def test_resources_ops_and_their_rollback(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    chunk = kernel.read_pool().chunks[0]
    tx_id, status = _new(
        kernel,
        "/resources|"
        "cpu-remove { cpu@4 { reg = <4>; }; };"
        "memory-add { memory@0 { size = /bits/ 64 <0x4000000>; numa-node-id = <1>; }; };"
        "cpu-add { cpu@5 { reg = /bits/ 64 <5>; }; cpu@6 { reg = <6>; }; };"
        'device-add { uart { device-name = "uart0"; }; };',
    )
    assert status == "applied"
    pool = kernel.read_pool()
    assert pool.free_cpus == (1, 2, 3, 5, 6)
    assert [(c.bytes, c.numa_node) for c in pool.chunks] == [(chunk.bytes, chunk.numa_node), (64 * MiB, 1)]
    assert pool.free_devices == ("0000:01:00.0", "uart0")
    assert pool.spec is not None and pool.spec.cpus == (1, 2, 3, 5, 6)
    assert not kernel.cpu_online(5) and kernel.cpu_online(4)
    kernel.rmdir_tx(tx_id)
    pool = kernel.read_pool()
    assert pool.free_cpus == (1, 2, 3, 4)
    assert pool.free_devices == ("0000:01:00.0",)
    assert len(pool.chunks) == 2  # undo of a /resources memory-add is a no-op (spec 5.4)


def test_resources_memory_remove_needs_a_whole_free_chunk(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, "/resources|memory-add { memory@0 { size = /bits/ 64 <0x4000000>; }; };")
    first, second = kernel.read_pool().chunks

    def remove(base: int, size: int) -> str:
        reg = f"reg = /bits/ 64 <{base:#x} {size:#x}>;"
        return _new(kernel, f"/resources|memory-remove {{ memory@{base:x} {{ {reg} }}; }};")[1]

    assert remove(second.base, second.bytes // 2) == "failed EINVAL"  # not a whole chunk
    _new(kernel, _create("web", MEM_256M))
    assert remove(first.base, first.bytes) == "failed EBUSY"  # web's memory is carved from it (EBUSY)
    tx_id, status = _new(
        kernel, f"/resources|memory-remove {{ memory@0 {{ reg = /bits/ 64 <{second.base:#x} {second.bytes:#x}>; }}; }};"
    )
    assert status == "applied"
    assert kernel.read_pool().chunks == (first,)
    kernel.rmdir_tx(tx_id)  # the chunk comes back at the same place
    assert kernel.read_pool().chunks == (first, second)


def test_resources_refusals(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1>;"))
    assert _new(kernel, "/resources|cpu-remove { cpu@1 { reg = <1>; }; };")[1] == "failed EBUSY"  # lent: EBUSY
    assert _new(kernel, "/resources|cpu-add { cpu@9 { reg = <9>; }; };")[1] == "failed EINVAL"  # not online, 8.5.5
    assert _new(kernel, "/resources|cpu-add { cpu@2 { reg = [00 02]; }; };")[1] == "failed EINVAL"  # bad reg
    assert _new(kernel, '/resources|device-add { d { device-name = "nope"; }; };')[1] == "failed ENODEV"  # ENODEV
    assert _new(kernel, "/resources|memory-add { memory@0 { reg = /bits/ 64 <0 0x1000>; }; };")[1] == "failed EINVAL"
    assert kernel.read_pool().free_cpus == (2, 3, 4)


def test_a_failing_resources_op_keeps_the_items_before_it(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    tx_id, status = _new(kernel, "/resources|cpu-add { cpu@5 { reg = <5>; }; cpu@9 { reg = <9>; }; };")
    assert status == "failed EINVAL"  # CPU 9 is not online in the host (spec 8.5.5)
    pool = kernel.read_pool()
    assert pool.free_cpus == (1, 2, 3, 4, 5)
    assert pool.spec is not None and pool.spec.cpus == (1, 2, 3, 4, 5)
    kernel.rmdir_tx(tx_id)
    assert kernel.read_pool().free_cpus == (1, 2, 3, 4)


def test_instance_ops_and_their_rollback(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M))
    tx_id, status = _new(
        kernel,
        "/instances/web|"
        "cpu-add { cpu@2 { reg = <2>; }; };"
        "cpu-remove { cpu@1 { reg = <1>; }; };"
        "memory-add { memory@0 { size = /bits/ 64 <0x1000000>; }; };"
        'device-add { nic { pci-id = "0000:01:00.0"; }; };',
    )
    assert status == "applied"
    inst = kernel.read_instance(1)
    assert inst.cpus == (2,)
    assert inst.memory_bytes == 272 * MiB
    assert inst.devices == ("0000:01:00.0",)
    kernel.rmdir_tx(tx_id)
    inst = kernel.read_instance(1)
    assert (inst.cpus, inst.memory_bytes, inst.devices) == ((1,), 256 * MiB, ())
    assert kernel.read_pool().free_memory_bytes == GiB - 256 * MiB


def test_instance_memory_remove_names_a_chunk(tree: HostBackend, images: dict[str, Path]) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M, extra="id = <1>;"))
    [chunk] = kernel.read_instance(1).memory
    reg = f"reg = /bits/ 64 <{chunk.base:#x} {chunk.bytes:#x}>;"
    _load(tree, images["vmlinux"], 1)
    assert _new(kernel, f"/instances/web|memory-remove {{ memory@0 {{ {reg} }}; }};")[1] == "failed EBUSY"  # a segment
    tree.unload(1)
    tx_id, status = _new(kernel, f"/instances/web|memory-remove {{ memory@0 {{ {reg} }}; }};")
    assert status == "applied"
    assert kernel.read_instance(1).memory_bytes == 0
    kernel.rmdir_tx(tx_id)
    assert kernel.read_instance(1).memory == (chunk,)


def test_ops_on_an_active_instance_need_the_spawn_ack(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = make_backend(Faults(update_ack=False), kernel_profile="tree")
    kernel = kernel_of(backend)
    kernel.write_device_tree(BASELINE)
    _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M, extra="id = <1>;"))
    _load(backend, images["vmlinux"], 1)
    backend.start(1)
    assert _new(kernel, "/instances/web|cpu-add { cpu@2 { reg = <2>; }; };")[1] == "failed ETIMEDOUT"  # no ACK (8.3.3)
    kernel_of(backend).faults.update_ack = True
    assert _new(kernel, "/instances/web|cpu-add { cpu@2 { reg = <2>; }; };")[1] == "applied"
    assert kernel.read_instance(1).cpus == (1, 2)


def test_mkdir_and_rmdir_elsewhere_are_eperm(tree: HostBackend) -> None:
    kernel = kernel_of(tree)
    _new(kernel, _create("web"))
    for path in ("overlays/tx_9", "instances/foo", "overlays", "foo"):
        assert _errno_of(kernel.mkdir, path) == errno.EPERM
    for path in ("instances/web", "overlays", "overlays/new", "instances"):
        assert _errno_of(kernel.rmdir, path) == errno.EPERM
    assert _names(kernel) == ["web"]


def test_transactions_survive_a_reload(make_backend: BackendFactory) -> None:
    first = make_backend(kernel_profile="tree")
    kernel = kernel_of(first)
    failed = kernel.overlay_new(_overlay("/resources|cpu-add { cpu@1 { reg = <1>; }; };"))
    kernel.write_device_tree(BASELINE)
    applied, _ = _new(kernel, _create("web", "cpus = /bits/ 64 <1>;" + MEM_256M))
    removed, _ = _new(kernel, _create("tmp"))
    kernel.rmdir_tx(removed)
    files = {tx_id: kernel.tx_files(tx_id) for tx_id in (failed, applied)}
    first.close()

    second = make_backend(kernel_profile="tree")
    kernel = kernel_of(second)
    assert kernel.overlay_ids() == [failed, applied]
    assert {tx_id: kernel.tx_files(tx_id) for tx_id in (failed, applied)} == files
    assert kernel.tx_status(removed) == "removed"
    assert kernel.overlay_new(_overlay(_create("next"))) == removed + 1  # the counter goes on
    kernel.rmdir_tx(applied)  # the reloaded tx still knows what to undo
    assert _names(kernel) == ["next"]
    assert kernel.read_pool().free_cpus == (1, 2, 3, 4)


def test_a_state_file_without_overlays_still_loads(make_backend: BackendFactory) -> None:
    first = make_backend(kernel_profile="tree")
    kernel_of(first).overlay_new(_overlay(_create("web")))
    path = first.settings.simulator_state_path
    first.close()
    data = stored_document(path, first.settings.simulator)
    del data["overlays"]
    # as the whole-state JSON file of earlier releases, which a kernel takes over
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    path.with_suffix(".json").write_text(json.dumps(data))
    second = make_backend(kernel_profile="tree")
    assert _errno_of(kernel_of(second).tx_status, 2) == errno.ENOENT
    assert kernel_of(second).overlay_new(_overlay(_create("x"))) == 3
