"""probe(): profile detection, capabilities, topology read through the kernel interface."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import POOL_BASE, GiB, Host, MakeHost

from mkd.backends.host.backend import HostBackend
from mkd.backends.host.procfs import Procfs
from mkd.backends.kernel_io import OsKernelIO
from mkd.config import load_settings
from mkd.errors import KernelError
from mkd.kernel_types import CpuInfo


def test_tree_probe(tree: Host) -> None:
    info = tree.backend.probe()
    assert (info.backend, info.kernel_profile, info.arch) == ("host", "tree", "x86_64")
    # v7.0-mk2 (spec 8): LLC way masks only where the kernel declares them (the release ignores them).
    assert info.capabilities == {
        "halt": True, "per_instance_unload": True, "hot_update": True, "numa": True, "active_reported": True,
        "llc_way_masks": False, "hotplug_active": True, "console": True,
    }
    topology = info.topology
    assert topology.cpus == (
        CpuInfo(id=0, logical_id=0, numa_node=0, llc=0),
        CpuInfo(id=1, logical_id=1, numa_node=0, llc=0),
        CpuInfo(id=2, logical_id=2, numa_node=1, llc=1),
        CpuInfo(id=3, logical_id=3, numa_node=1, llc=1),
    )
    assert topology.memory_bytes == 32 * GiB
    assert topology.numa_nodes == 2
    assert topology.llc_way_mask == 0xFFF
    # Only PCI devices are read from /sys/bus/pci; the simulator knows no vendor ids or node.
    assert [(d.name, d.type, d.vendor_id, d.device_id, d.numa_node) for d in topology.devices] == [
        ("0000:01:00.0", "pci", None, None, None)
    ]
    assert (topology.pool_base, topology.pool_bytes) == (0, 0)  # no tree pool until a baseline


def test_v2_probe(v2: Host) -> None:
    info = v2.backend.probe()
    assert info.kernel_profile == "rfc-v2"
    # The simulator unloads per id (spec 2.3 default) and declares it in its features file.
    assert info.capabilities == {
        "halt": False,
        "per_instance_unload": True,
        "hot_update": False,
        "numa": False,
        "active_reported": False,
        "llc_way_masks": False,
        "hotplug_active": False,
        "console": False,
    }
    assert (info.topology.pool_base, info.topology.pool_bytes) == (POOL_BASE, 4 * GiB)


def test_v2_without_a_declared_per_instance_unload_has_none(make_host: MakeHost) -> None:
    # bug_compat is the seed's single kexec_image slot; a real v2 kernel declares nothing.
    host = make_host("rfc-v2", bug_compat=True)
    assert host.backend.probe().capabilities["per_instance_unload"] is False


def test_iomem_without_addresses_means_unknown_pool(tmp_path: Path) -> None:
    # Without CAP_SYS_ADMIN a host's /proc/iomem shows zeros; only a real file can show that.
    (tmp_path / "iomem").write_text("00000000-00000000 : Multikernel Memory Pool\n")
    assert Procfs(OsKernelIO(proc_root=str(tmp_path))).pool_region() is None


def test_arm64_machine(make_host: MakeHost) -> None:
    host = make_host("tree", machine="aarch64")
    assert host.backend.probe().arch == "arm64"


def test_other_machines_are_refused(make_host: MakeHost) -> None:
    host = make_host("tree", machine="riscv64")
    with pytest.raises(KernelError) as raised:
        host.backend.probe()
    assert raised.value.errno == "ENODEV" and "riscv64" in raised.value.detail


def test_missing_multikernel_fs_says_how_to_mount(tmp_path: Path) -> None:
    settings = load_settings(overrides={"daemon.state_dir": tmp_path / "state"})
    io = OsKernelIO(sysfs_root=str(tmp_path / "absent"), proc_root=str(tmp_path), sys_root=str(tmp_path))
    backend = HostBackend(settings, io)
    with pytest.raises(KernelError) as raised:
        backend.probe()
    assert raised.value.errno == "ENODEV"
    assert f"mount -t multikernel none {tmp_path / 'absent'}" in raised.value.detail


def test_llc_way_masks_only_where_the_kernel_declares_them(make_host: MakeHost) -> None:
    # The release ignores llc-way-mask (spec 8.6.3); the simulator's setting models the open pull
    # request and declares it in its features file, which the client reads.
    assert make_host("tree", llc_way_masks=True).backend.probe().capabilities["llc_way_masks"] is True
    assert make_host("tree").backend.probe().capabilities["llc_way_masks"] is False
    assert make_host("rfc-v2", llc_way_masks=True).backend.probe().capabilities["llc_way_masks"] is False


def test_the_os_console_device_is_opened_non_blocking_and_connected_by_id(tmp_path: Path) -> None:
    # A FIFO stands in for /dev/mktty's file plumbing: what the client writes comes back, and an
    # empty device answers EAGAIN at once instead of blocking the caller.
    device = tmp_path / "mktty"
    io = OsKernelIO(console_device=str(device))
    assert io.has_console() is False
    with pytest.raises(FileNotFoundError):
        io.open_console()
    os.mkfifo(device)
    assert io.has_console() is True
    settings = load_settings(None, overrides={"daemon.state_dir": tmp_path / "state", "daemon.console_device": device})
    client = HostBackend(settings, io)
    console = client.open_console(7)
    try:
        assert console.read(100) == b"7\n"  # the connect write, looped back by the FIFO
        with pytest.raises(BlockingIOError):
            console.read(100)
    finally:
        console.close()
