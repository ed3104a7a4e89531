"""SimulatedKernelIO: the simulator behind the kernel's own paths, with kernfs's answers."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import GiB, Host, MakeHost, MiB

from mkd.backends.simulated.kernel_files import SimulatedKernelIO
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, PoolSpec

MK = "/sys/fs/multikernel"


def _errno(host: Host, call: str, *args: object) -> int | None:
    with pytest.raises(OSError) as raised:
        getattr(host.io, call)(*args)
    return raised.value.errno


@pytest.mark.parametrize(
    ("call", "path", "code"),
    [
        ("read", f"{MK}/no_such_file", errno.ENOENT),
        ("read", "/etc/passwd", errno.ENOENT),  # nothing outside /proc and /sys
        ("read", f"{MK}/instances/ghost/status", errno.ENOENT),
        ("read", f"{MK}/overlays/tx_99/status", errno.ENOENT),
        ("read", f"{MK}/overlays/new", errno.EACCES),  # 0200: kernfs has no read op
        ("read", f"{MK}/instances", errno.EISDIR),
        ("listdir", f"{MK}/device_tree", errno.ENOTDIR),
        ("rmdir", f"{MK}/device_tree", errno.ENOTDIR),
        ("rmdir", f"{MK}/overlays", errno.EPERM),
        ("rmdir", f"{MK}/overlays/tx_99", errno.ENOENT),
    ],
)
def test_paths_answer_as_kernfs(tree: Host, call: str, path: str, code: int) -> None:
    assert _errno(tree, call, path) == code


def test_writes_to_read_only_files_and_directories(tree: Host) -> None:
    assert _errno(tree, "write_once", "/proc/iomem", b"x") == errno.EACCES
    assert _errno(tree, "write_once", "/proc/kimage", b"x") == errno.EACCES
    assert _errno(tree, "write_once", f"{MK}/instances", b"x") == errno.EISDIR
    assert _errno(tree, "write_once", f"{MK}/overlays/tx_2", b"x") == errno.ENOENT


def test_kernel_refusals_keep_their_errno(make_host: MakeHost) -> None:
    v2 = make_host("rfc-v2")
    tree = make_host("tree")
    assert _errno(v2, "write_once", f"{MK}/device_tree", b"not a dtb") == errno.EINVAL
    assert _errno(v2, "read", f"{MK}/overlays") == errno.ENOENT  # v2 has no overlays/
    assert _errno(tree, "write_once", f"{MK}/overlays/new", b"") == errno.EINVAL  # spec 5.4: empty
    assert _errno(tree, "write_once", f"{MK}/overlays/new", b"\0" * ((1 << 20) + 1)) == errno.EFBIG


def test_directory_listings_follow_the_profile(make_host: MakeHost) -> None:
    v2, tree = make_host("rfc-v2"), make_host("tree")
    assert v2.io.listdir(MK) == ["device_tree", "instances"]
    assert tree.io.listdir(MK) == ["device_tree", "instances", "overlays"]
    assert tree.io.listdir(f"{MK}/overlays") == ["new"]
    assert v2.io.read(f"{MK}/device_tree").startswith(b"Write multikernel device tree")
    assert tree.io.is_dir("/sys/devices/system/cpu") and not tree.io.is_dir("/proc/iomem")
    assert tree.io.exists("/sys/devices/system/cpu/cpu3/cache/index3/level")
    assert not tree.io.exists("/sys/devices/system/cpu/cpu4")


def test_kexec_reads_through_the_fd(tree: Host, tmp_path: Path) -> None:
    from mkd.kernel_types import InstanceSpec, PoolSpec
    from mkd.kexec.flags import load_flags
    from mkd.testing import imagegen

    tree.backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=0, memory_bytes=1 << 30))
    tree.backend.create_instances([InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=128 << 20)])
    image = imagegen.write_file(tmp_path / "vmlinux", imagegen.vmlinux())
    flags = load_flags(1, has_initrd=False)
    write_only = os.open(image, os.O_WRONLY)
    try:
        with pytest.raises(KernelError) as raised:  # kernel_read_file needs FMODE_READ
            tree.io.kexec_file_load(write_only, -1, None, flags)
        assert raised.value.errno_code == errno.EBADF
    finally:
        os.close(write_only)
    fd = os.open(image, os.O_RDONLY)
    try:
        image.rename(tmp_path / "moved")  # the fd still names the file the kernel reads
        tree.io.kexec_file_load(fd, -1, None, flags)
    finally:
        os.close(fd)
    assert tree.kernel.read_instance(1).kernel_state == "loaded"


def test_whole_kernel_files_follow_every_change(tree: Host) -> None:
    """The simulator renders iomem, the pool DTB and an instance's tree once per change of the
    model (a client reads them on every call); every change shows in the next read."""
    from mkd.devicetree.overlay import build_instance_create_overlay
    from mkd.kernel_types import InstanceSpec, PoolSpec

    tree.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=0, memory_bytes=1 << 30))
    iomem, pool = tree.io.read("/proc/iomem"), tree.io.read(f"{MK}/device_tree")
    assert tree.kernel.proc_iomem() is tree.kernel.proc_iomem()  # nothing changed: one rendering
    assert b"mk-instance" not in iomem
    tree.backend.create_instances([InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=128 << 20)])
    assert b"mk-instance-1-web-region-0" in tree.io.read("/proc/iomem")
    web = tree.io.read(f"{MK}/instances/web/device_tree")
    tree.backend.update_instance(InstanceSpec(id=1, name="web", cpus=(1, 2), memory_bytes=128 << 20))
    assert tree.io.read(f"{MK}/instances/web/device_tree") != web
    assert tree.backend.read_instance(1).cpus == (1, 2)
    # a change written straight to the kernel (no client involved) shows too
    tree.kernel.overlay_new(build_instance_create_overlay(InstanceSpec(id=2, name="db", cpus=(3,), memory_bytes=0)))
    assert tree.io.read(f"{MK}/device_tree") != pool  # CPU 3 is lent now
    assert [instance.name for instance in tree.backend.list_instances()] == ["web", "db"]
    tree.kernel.rmdir_tx(max(tree.kernel.overlay_ids()))
    assert [instance.name for instance in tree.backend.list_instances()] == ["web"]



def test_read_each_answers_as_one_read_per_file(tree: Host) -> None:
    """The status poll's batch: the simulator answers resolved status paths in one hold of the
    kernel, and anything else file by file; a file that is gone is None either way."""
    tree.backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=0, memory_bytes=GiB))
    tree.backend.create_instances([InstanceSpec(id=i, name=f"vm{i}", cpus=(i,), memory_bytes=128 * MiB)
                                   for i in (1, 2)])
    io = SimulatedKernelIO(tree.kernel)  # not the recording wrapper: its read_each reads one by one
    paths = [f"{MK}/instances/vm1/status", f"{MK}/instances/vm2/status", f"{MK}/instances/ghost/status"]
    one_by_one = [io.read(path) if "ghost" not in path else None for path in paths]
    assert io.read_each(paths) == one_by_one == [b"ready\n", b"ready\n", None]
    assert io.read_each(paths[:2]) == one_by_one[:2]  # resolved before: the batch
    tree.backend.delete_instance(2)
    assert io.read_each(paths[:2]) == [b"ready\n", None]
