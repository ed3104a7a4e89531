"""probe(): profile detection, capabilities, topology from fake /sys and /proc."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import POOL_BASE, GiB, Host, MakeHost, MiB

from mkd.backends.host.backend import HostBackend
from mkd.config import load_settings
from mkd.errors import KernelError
from mkd.kernel_types import CpuInfo


def test_tree_probe(tree: Host) -> None:
    info = tree.backend.probe()
    assert (info.backend, info.kernel_profile, info.arch) == ("host", "tree", "x86_64")
    assert all(info.capabilities.values())
    assert set(info.capabilities) == {"halt", "per_instance_unload", "hot_update", "numa", "active_reported"}
    topology = info.topology
    assert topology.cpus == (
        CpuInfo(id=0, logical_id=0, numa_node=0, llc=0),
        CpuInfo(id=2, logical_id=1, numa_node=0, llc=0),
        CpuInfo(id=4, logical_id=2, numa_node=1, llc=1),
        CpuInfo(id=6, logical_id=3, numa_node=1, llc=1),
    )
    assert topology.memory_bytes == 32768000 * 1024
    assert topology.numa_nodes == 2
    assert topology.llc_way_mask == 0xFFF
    assert [(d.name, d.type, d.vendor_id, d.device_id, d.numa_node) for d in topology.devices] == [
        ("0000:01:00.0", "pci", 0x8086, 0x10FB, 1)
    ]
    assert (topology.pool_base, topology.pool_bytes) == (0, 0)  # tree pools are chunks, not a range


def test_v2_probe(v2: Host) -> None:
    info = v2.backend.probe()
    assert info.kernel_profile == "rfc-v2"
    assert info.capabilities == {
        "halt": False,
        "per_instance_unload": False,
        "hot_update": False,
        "numa": False,
        "active_reported": False,
    }
    assert (info.topology.pool_base, info.topology.pool_bytes) == (V2_POOL_BASE, V2_POOL_BYTES)
    assert V2_POOL_BYTES == 4 * GiB


def test_iomem_without_addresses_means_unknown_pool(v2: Host) -> None:
    text = (v2.proc / "iomem").read_text()
    (v2.proc / "iomem").write_text(
        "\n".join("00000000-00000000 : " + line.partition(" : ")[2] for line in text.splitlines())
    )
    topology = v2.backend.probe().topology
    assert (topology.pool_base, topology.pool_bytes) == (0, 0)


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
    backend = HostBackend(settings, sysfs=tmp_path / "absent", procfs=tmp_path, sys_root=tmp_path)
    with pytest.raises(KernelError) as raised:
        backend.probe()
    assert raised.value.errno == "ENODEV"
    assert f"mount -t multikernel none {tmp_path / 'absent'}" in raised.value.detail
