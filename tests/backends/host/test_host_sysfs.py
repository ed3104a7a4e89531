"""The sysfs, procfs and device-tree readers on their own; OsKernelIO on a tmpfs tree."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import GiB, Host

from mkd.backends.host.procfs import Procfs
from mkd.backends.host.readback import parse_instance_dts, parse_pool_dtb
from mkd.backends.host.sysfs import MultikernelFs
from mkd.backends.kernel_io import OsKernelIO
from mkd.devicetree.build import build_root_tree
from mkd.errors import KernelError
from mkd.kernel_types import MemChunk, PoolSpec


def test_profile_detection(tmp_path: Path) -> None:
    fs = MultikernelFs(OsKernelIO(sysfs_root=str(tmp_path)))
    assert not fs.present()
    (tmp_path / "device_tree").write_text("")
    assert fs.present() and fs.profile() == "rfc-v2"
    (tmp_path / "overlays").mkdir()
    assert fs.profile() == "tree"


def test_kernel_refusal_keeps_its_errno(tree: Host) -> None:
    tree.backend.apply_pool(PoolSpec(cpus=(1,), memory_base=0, memory_bytes=GiB))
    with pytest.raises(KernelError) as raised:  # spec vector 38: baseline written twice
        tree.backend.fs.write_root_tree(tree.io.read("/sys/fs/multikernel/device_tree"))
    assert raised.value.errno == "EBUSY"


def test_oversized_blob_is_efbig_without_a_write(tree: Host) -> None:
    with pytest.raises(KernelError) as raised:
        tree.backend.fs.write_overlay(b"\0" * ((1 << 20) + 1))
    assert raised.value.errno_code == errno.EFBIG
    assert tree.io.writes == []


def test_overlay_write_without_a_new_transaction_is_eio(tmp_path: Path) -> None:
    # A plain file accepts the write and creates no tx_N, as no kernel would.
    (tmp_path / "overlays" / "tx_9").mkdir(parents=True)
    (tmp_path / "overlays" / "new").write_bytes(b"")
    fs = MultikernelFs(OsKernelIO(sysfs_root=str(tmp_path)))
    with pytest.raises(KernelError) as raised:
        fs.write_overlay(b"dtbo")
    assert raised.value.errno == "EIO"


def test_transaction_ids_sort_numerically(tmp_path: Path) -> None:
    for name in ("tx_9", "tx_10", "tx_2", "new", "tx_x"):
        (tmp_path / "overlays" / name).mkdir(parents=True)
    assert MultikernelFs(OsKernelIO(sysfs_root=str(tmp_path))).transaction_ids() == [2, 9, 10]


def test_os_kernel_io_reads_whole_files_and_fails_as_read_does(tmp_path: Path) -> None:
    io = OsKernelIO(sysfs_root=str(tmp_path))
    big = bytes(range(256)) * 1000  # several read(2) calls
    (tmp_path / "device_tree").write_bytes(big)
    (tmp_path / "status").write_bytes(b"active\n")
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "instances").mkdir()
    assert io.read("/sys/fs/multikernel/device_tree") == big
    assert io.read("/sys/fs/multikernel/status") == b"active\n"
    assert io.read("/sys/fs/multikernel/empty") == b""
    with pytest.raises(FileNotFoundError):
        io.read("/sys/fs/multikernel/absent")
    with pytest.raises(OSError) as raised:
        io.read("/sys/fs/multikernel/instances")
    assert raised.value.errno == errno.EISDIR


def test_os_kernel_io_write_once_rmdir_and_roots(tmp_path: Path) -> None:
    io = OsKernelIO(sysfs_root=str(tmp_path / "mk"), proc_root=str(tmp_path / "proc"), sys_root=str(tmp_path / "sys"))
    (tmp_path / "mk").mkdir()
    target = tmp_path / "mk" / "file"
    target.write_bytes(b"old contents, longer")
    io.write_once("/sys/fs/multikernel/file", b"blob")
    # One write at offset 0 without O_TRUNC (kernfs has nothing to truncate).
    assert target.read_bytes() == b"blobcontents, longer"
    assert io.read("/sys/fs/multikernel/file") == b"blobcontents, longer"
    (tmp_path / "mk" / "dir").mkdir()
    assert io.is_dir("/sys/fs/multikernel/dir") and io.listdir("/sys/fs/multikernel") == ["dir", "file"]
    io.rmdir("/sys/fs/multikernel/dir")
    assert not (tmp_path / "mk" / "dir").exists()
    with pytest.raises(FileNotFoundError):
        io.write_once("/sys/fs/multikernel/missing", b"x")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "iomem").write_text("x\n")
    assert io.read("/proc/iomem") == b"x\n"  # /proc maps to its own root, /sys/fs/multikernel to its own
    with pytest.raises(OSError) as raised:
        io.read("/etc/passwd")
    assert raised.value.errno == errno.ENOENT


def test_pool_dtb_readback() -> None:
    blob = build_root_tree(
        "tree",
        PoolSpec(cpus=(1, 2), memory_base=0, memory_bytes=0, devices=("0000:01:00.0", "uart0")),
        chunks=[MemChunk(0x2000_0000, GiB, 1), MemChunk(0x1000_0000, 1 << 20, 0)],
        free_cpus=[2],
    )
    pool = parse_pool_dtb(blob)
    assert pool.cpus == (1, 2) and pool.cpus_available == (2,)
    assert pool.chunks == (MemChunk(0x1000_0000, 1 << 20, 0), MemChunk(0x2000_0000, GiB, 1))
    assert pool.devices == ("0000:01:00.0", "uart0")
    assert parse_pool_dtb(build_root_tree("tree", None)).baseline_applied is False
    with pytest.raises(KernelError):
        parse_pool_dtb(b"not a dtb at all, not at all")


def test_v2_dts_readback_both_cell_forms() -> None:
    one = (
        "/dts-v1/;\n\n/web {\n\tid = <1>;\n\tresources {\n\t\tcpus = <3>;\n"
        "\t\tmemory-bytes = <0x20000000>; // 512 MB\n\t};\n};\n"
    )
    assert parse_instance_dts(one).cpus == (3,)
    assert parse_instance_dts(one).memory_bytes == 0x20000000
    many = "/db {\n\tid = <2>;\n\tresources {\n\t\tcpus = [00 00 00 05 00 00 00 02];\n\t};\n};\n"
    assert parse_instance_dts(many).cpus == (2, 5)
    assert parse_instance_dts(many).memory_bytes == 0


def test_procfs_kimage_rows_both_profiles(tmp_path: Path) -> None:
    (tmp_path / "kimage").write_text(
        "MK_ID  Type        Start Address   Segments  Mode  Cmdline\n"
        "------------------------------------------------------------\n"
        '    1  multikernel 0x000100002000        5  file  "console=ttyS0 quiet"\n'
        "    0  default     0x000000001000        3  sys\n"
        "   12  multikernel 0x0000abcd0000        4\n"
    )
    rows = Procfs(OsKernelIO(proc_root=str(tmp_path))).kimages()
    assert set(rows) == {1, 12}
    assert (rows[1].start, rows[1].segment_count, rows[1].mode, rows[1].cmdline) == (
        0x100002000,
        5,
        "file",
        "console=ttyS0 quiet",
    )
    assert rows[12].mode is None and rows[12].cmdline is None
    assert Procfs(OsKernelIO(proc_root=str(tmp_path / "absent"))).kimages() is None


def test_procfs_memory_and_instance_regions(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text("MemTotal:        1024 kB\n")
    (tmp_path / "iomem").write_text(
        "100000000-1ffffffff : Multikernel Memory Pool\n"
        "  100200000-1003fffff : mk-instance-1-web-region-1\n"
        "  100000000-1001fffff : mk-instance-1-web-region-0\n"
        "  100400000-1004fffff : mk-instance-2-my-db-region-0\n"
    )
    procfs = Procfs(OsKernelIO(proc_root=str(tmp_path)))
    assert procfs.memory_bytes() == 1 << 20
    region = procfs.pool_region()
    assert region is not None and (region.start, region.size) == (0x1_0000_0000, 4 * GiB)
    assert procfs.instance_regions() == {
        1: (MemChunk(0x1_0000_0000, 2 << 20), MemChunk(0x1_0020_0000, 2 << 20)),
        2: (MemChunk(0x1_0040_0000, 1 << 20),),
    }
    # one instance's rows, found by name without parsing the others (ids 1 and 12 do not mix)
    (tmp_path / "iomem").write_text(
        "100000000-1ffffffff : Multikernel Memory Pool\n"
        "  100200000-1003fffff : mk-instance-1-web-region-1\n"
        "  100000000-1001fffff : mk-instance-1-web-region-0\n"
        "  100400000-1004fffff : mk-instance-12-mk-instance-1-x-region-0\n"
        "  00000000-00000000 : mk-instance-3-hidden-region-0\n"
    )
    assert procfs.regions_of(1) == (MemChunk(0x1_0000_0000, 2 << 20), MemChunk(0x1_0020_0000, 2 << 20))
    assert procfs.regions_of(12) == (MemChunk(0x1_0040_0000, 1 << 20),)
    assert procfs.regions_of(3) == () and procfs.regions_of(4) == ()  # addresses read as 0; absent
    assert procfs.instance_regions()[12] == procfs.regions_of(12)  # the parse follows the new bytes


def test_the_status_poll_reads_each_status_and_none_for_one_gone(tmp_path: Path) -> None:
    for name, status in (("web", b"active\n"), ("db", b"loaded\n")):
        (tmp_path / "instances" / name).mkdir(parents=True)
        (tmp_path / "instances" / name / "status").write_bytes(status)
    fs = MultikernelFs(OsKernelIO(sysfs_root=str(tmp_path)))
    assert fs.read_statuses_of(["web", "gone", "db"]) == ["active", None, "loaded"]
    assert fs.read_statuses_of([]) == []
