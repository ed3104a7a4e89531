"""M10-M24, M38, M39 (spec 8.6, 8.7, 8.9): CPUs, memory and devices into and out of an instance,
through the spawn's ACK when it is ACTIVE, as bookkeeping otherwise."""

from __future__ import annotations

from pathlib import Path

from conftest import BackendFactory
from mk2_setup import (
    START,
    WEB,
    MiB,
    active_web,
    cells,
    errno_of,
    load_web,
    machine,
    ready_web,
    write_overlay,
)

from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.config import SimulatorSettings
from mkd.kexec.flags import KEXEC_FILE_UNLOAD, KEXEC_MULTIKERNEL, kexec_mk_id

NIC = "0000:65:00.0"
NIC_NODE = f'devices {{ nic {{ device-type = "pci"; pci-id = "{NIC}"; }}; }};'
NO_ACK = {"instances": {"web": {"ack": False}}}


def _cpu(op: str, cpu: int) -> str:
    return f"{op} {{ cpu@{cpu} {{ reg = <0 {cpu}>; }}; }};"


def _memory(op: str, reg: str) -> str:
    return f"{op} {{ memory@0 {{ reg = <{reg}>; }}; }};"


def _free_cpus(kernel: SimulatedKernel) -> list[int]:
    return cells(kernel.read_device_tree(), "/resources", "cpus-available")


def _instance_cpus(kernel: SimulatedKernel) -> list[int]:
    return cells(kernel.instance_device_tree("web"), "/resources", "cpus")


def _with_nic_in_pool(make_backend: BackendFactory, **simulator: object) -> SimulatedKernel:
    kernel = machine(make_backend, devices=[NIC, "0000:66:00.0"], **simulator)
    for device in (NIC, "0000:66:00.0"):
        assert write_overlay(kernel, "/resources", f'device-add {{ d {{ pci-id = "{device}"; }}; }};') == "applied"
    return kernel


def test_m10_cpu_add_to_an_active_instance(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 3)) == "applied"
    assert _instance_cpus(kernel) == [1, 2, 3]
    assert _free_cpus(kernel) == [4]


def test_m11_cpu_add_of_a_cpu_outside_the_pool_sends_nothing(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = active_web(make_backend, images["vmlinux"], faults=NO_ACK)
    # EBUSY, not ETIMEDOUT: the refusal comes before any message to the (silent) spawn
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 9)) == "failed EBUSY"
    assert _instance_cpus(kernel) == [1, 2]


def test_m12_a_cpu_the_spawn_did_not_see_at_boot(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])  # the pool had {3,4} free at the start
    assert cells(kernel.boot_device_tree(1), "/chosen", "multikernel,pool-cpus") == [3, 4]
    assert write_overlay(kernel, "/resources", _cpu("cpu-add", 5)) == "applied"
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 5)) == "failed ENODEV"
    assert 5 in _free_cpus(kernel)


def test_m12_host_tree_layout_lists_every_cpu(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"], chosen_layout="host-tree")
    assert cells(kernel.boot_device_tree(1), "/chosen/multikernel,host-tree", "cpus") == list(range(8))
    assert write_overlay(kernel, "/resources", _cpu("cpu-add", 5)) == "applied"
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 5)) == "applied"  # (inferred)
    assert _instance_cpus(kernel) == [1, 2, 5]


def test_m13_cpu_add_without_ack_times_out(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    assert SimulatorSettings().resource_ack_timeout_s == 10  # MK_RES_ACK wait (hotplug.c)
    kernel = active_web(make_backend, images["vmlinux"], faults=NO_ACK)
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 3)) == "failed ETIMEDOUT"
    assert _free_cpus(kernel) == [3, 4]


def test_m14_the_boot_cpu_cannot_be_removed(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-remove", 1)) == "failed EINVAL"
    assert _instance_cpus(kernel) == [1, 2]


def test_m15_cpu_remove_returns_the_cpu_to_the_pool(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-remove", 2)) == "applied"
    assert _instance_cpus(kernel) == [1]
    assert _free_cpus(kernel) == [2, 3, 4]


def test_m16_memory_add_off_the_block_size(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    assert SimulatorSettings().memory_block_size == 128 * MiB
    assert write_overlay(kernel, "/instances/web", _memory("memory-add", "0x1 0x0 0x0 0x4000000")) == "failed EINVAL"
    assert kernel.read_instance(1).memory_bytes == 256 * MiB


def test_m17_memory_add_to_an_active_instance_allocates_by_size(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    before = kernel.read_instance(1).memory
    assert write_overlay(kernel, "/instances/web", _memory("memory-add", "0x2 0x0 0x0 0x8000000")) == "applied"
    after = kernel.read_instance(1)
    added = [chunk for chunk in after.memory if chunk not in before]
    assert after.memory_bytes == 384 * MiB and [chunk.bytes for chunk in added] == [128 * MiB]


def test_m18_memory_add_to_a_ready_instance_ignores_the_base(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    assert write_overlay(kernel, "/instances/web", _memory("memory-add", "0x0 0x0 0x0 0x4000000")) == "applied"
    web = kernel.read_instance(1)
    assert web.memory_bytes == 320 * MiB
    assert all(chunk.base != 0 for chunk in web.memory)  # the pool chose where


def test_m19_memory_add_beyond_the_pool(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    assert write_overlay(kernel, "/instances/web", _memory("memory-add", "0x0 0x0 0x0 0x40000000")) == "failed ENOMEM"


def test_m20_memory_remove_of_the_kernel_region(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = ready_web(make_backend)
    load_web(kernel, images["vmlinux"])
    region = kernel.read_instance(1).memory[0]
    reg = f"{region.base >> 32:#x} {region.base & 0xFFFFFFFF:#x} 0x0 {region.bytes:#x}"
    assert write_overlay(kernel, "/instances/web", _memory("memory-remove", reg)) == "failed EBUSY"


def test_m21_memory_remove_must_name_a_region(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    region = kernel.read_instance(1).memory[0]
    reg = f"{region.base >> 32:#x} {region.base & 0xFFFFFFFF:#x} 0x0 0x4000000"
    assert write_overlay(kernel, "/instances/web", _memory("memory-remove", reg)) == "failed ENOENT"
    exact = f"{region.base >> 32:#x} {region.base & 0xFFFFFFFF:#x} 0x0 {region.bytes:#x}"
    assert write_overlay(kernel, "/instances/web", _memory("memory-remove", exact)) == "applied"
    assert kernel.read_instance(1).memory_bytes == 0


def test_m22_device_add_to_a_ready_instance_drops_the_driver(make_backend: BackendFactory) -> None:
    kernel = _with_nic_in_pool(make_backend)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", "")) == "applied"
    ops = f'device-add {{ nic {{ pci-id = "{NIC}"; driver = "vfio-pci"; }}; }};'
    assert write_overlay(kernel, "/instances/web", ops) == "applied"
    assert kernel.read_instance(1).devices == (NIC,)
    assert b"vfio-pci" not in kernel.instance_device_tree("web")


def test_m23_device_add_with_an_unknown_driver(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = _with_nic_in_pool(make_backend)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", NIC_NODE)) == "applied"
    load_web(kernel, images["vmlinux"])
    kernel.reboot(START, 1)
    ops = f'device-add {{ nic {{ pci-id = "{NIC}"; driver = "nosuchdrv"; }}; }};'
    assert write_overlay(kernel, "/instances/web", ops) == "failed ENOENT"
    rebind = f'device-add {{ nic {{ pci-id = "{NIC}"; driver = "vfio-pci"; }}; }};'
    assert write_overlay(kernel, "/instances/web", rebind) == "applied"


def test_m24_device_add_of_a_device_outside_the_boot_tree(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = _with_nic_in_pool(make_backend)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", "")) == "applied"
    load_web(kernel, images["vmlinux"])
    kernel.reboot(START, 1)
    assert write_overlay(kernel, "/instances/web", f'device-add {{ d {{ pci-id = "{NIC}"; }}; }};') == "failed ENODEV"
    assert kernel.read_instance(1).devices == ()


def test_device_remove_from_an_active_instance_only_warns(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    """spec 8.7.7: the spawn unbinds; the bookkeeping cannot fail the op."""
    kernel = _with_nic_in_pool(make_backend)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", NIC_NODE)) == "applied"
    load_web(kernel, images["vmlinux"])
    kernel.reboot(START, 1)
    remove = f'device-remove {{ d {{ pci-id = "{NIC}"; }}; }};'
    assert write_overlay(kernel, "/instances/web", remove) == "applied"
    assert kernel.read_instance(1).devices == ()
    assert write_overlay(kernel, "/instances/web", remove) == "applied"  # in its boot tree; nothing to move
    other = 'device-remove { d { pci-id = "0000:66:00.0"; }; };'
    assert write_overlay(kernel, "/instances/web", other) == "failed ENODEV"


def test_a_failed_op_keeps_what_applied_before_it(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """spec 8.7: the first error fails the transaction; earlier ops are not undone."""
    kernel = active_web(make_backend, images["vmlinux"])
    ops = _cpu("cpu-remove", 2) + _memory("memory-add", "0x0 0x0 0x0 0x4000000")
    assert write_overlay(kernel, "/instances/web", ops) == "failed EINVAL"  # memory first: 64 MiB is off-block
    ops = _cpu("cpu-remove", 2) + _cpu("cpu-add", 9)
    assert write_overlay(kernel, "/instances/web", ops) == "failed EBUSY"
    assert _instance_cpus(kernel) == [1]  # cpu-remove 2 stays applied


def _web_on_one_cpu(make_backend: BackendFactory, images: dict[str, Path]) -> SimulatedKernel:
    kernel = machine(make_backend)
    create = WEB.replace("cpus = /bits/ 64 <1 2>;", "cpus = /bits/ 64 <1>;").replace("{extra}", "")
    assert write_overlay(kernel, "/instances", create) == "applied"
    load_web(kernel, images["vmlinux"])
    return kernel


def test_m38_changes_to_a_loaded_instance_apply_at_the_next_start(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = _web_on_one_cpu(make_backend, images)
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-add", 2)) == "applied"
    assert kernel.reboot(START, 1) == 0
    assert cells(kernel.boot_device_tree(1), "/resources", "cpus") == [1, 2]


def test_m39_a_loaded_instance_without_cpus_cannot_start(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = _web_on_one_cpu(make_backend, images)
    assert write_overlay(kernel, "/instances/web", _cpu("cpu-remove", 1)) == "applied"
    assert errno_of(kernel.reboot, START, 1) == "EINVAL"
    assert kernel.status_file("web") == "loaded\n"


def test_a_boot_tree_too_large_for_its_page(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """spec 8.9.1: ENOSPC at start and the instance stays LOADED; a command line near 64 KiB does it."""
    kernel = ready_web(make_backend)
    load_web(kernel, images["vmlinux"], b"x" * (64 << 10))
    assert errno_of(kernel.reboot, START, 1) == "ENOSPC"
    assert kernel.status_file("web") == "loaded\n"
    unload = KEXEC_FILE_UNLOAD | KEXEC_MULTIKERNEL | kexec_mk_id(1)
    assert kernel.kexec_file_load(None, None, None, unload) == 0
    load_web(kernel, images["vmlinux"], b"console=mktty0")
    assert kernel.reboot(START, 1) == 0
