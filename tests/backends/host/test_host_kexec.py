"""Load, unload, start and stop: the exact syscall arguments and the kernel's errno surfacing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import GiB, Host, MakeHost, MiB, RealKernelView

from mkd.backends.host.backend import HostBackend
from mkd.backends.host.syscalls import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, LoadRequest, PoolSpec
from mkd.kexec.flags import load_flags


def _ready(host: Host, instance_id: int = 3) -> None:
    if host.kernel.profile == "tree":
        host.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=0, memory_bytes=GiB))
    host.backend.create_instances([InstanceSpec(id=instance_id, name="web", cpus=(1,), memory_bytes=256 * MiB)])


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_load_without_initrd(make_host: MakeHost, images: dict[str, Path], profile: str) -> None:
    host = make_host(profile)
    _ready(host)
    before = _open_fds()
    request = LoadRequest(
        kernel=images["kernel"],
        initrd=None,
        cmdline=b"console=ttyS0\0",
        flags=0x10 | (3 << 5),
        kernel_sha256="ab" * 32,
    )
    instance = host.backend.kexec_file_load(request)
    call = host.io.loads[-1]
    # NO_INITRAMFS is added when there is no initrd (spec 2.7.1 step 4), initrd fd is -1.
    assert call.flags == 0x10 | (3 << 5) | 0x4
    assert call.initrd is None
    assert call.kernel is not None
    assert call.kernel.path == str(images["kernel"])
    assert call.kernel.inode == (os.stat(images["kernel"]).st_dev, os.stat(images["kernel"]).st_ino)
    assert call.kernel.read_only and call.kernel.cloexec
    assert call.cmdline == b"console=ttyS0\0"
    assert _open_fds() == before  # both fds closed
    assert instance.kernel_state == ("loaded" if profile == "tree" else "loading")
    assert instance.kimage is not None
    assert instance.kimage.kernel_sha256 == "ab" * 32
    assert instance.kimage.cmdline == "console=ttyS0"
    assert instance.kimage.loader == "vmlinux"
    # The simulator shows its segments in a file of its own; /proc/kimage has the count and start.
    assert instance.kimage.segments_source == "kernel"
    simulated = host.kernel.read_instance(3).kimage
    assert simulated is not None and instance.kimage.segments == simulated.segments != ()
    row = host.backend.procfs.kimages()[3]
    assert instance.kimage.start == row.start != 0
    assert instance.kimage.spawnable


def test_load_with_initrd_passes_both_fds(tree: Host, images: dict[str, Path]) -> None:
    _ready(tree)
    flags = load_flags(3, has_initrd=True)
    tree.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=images["initrd"], cmdline=None, flags=flags)
    )
    call = tree.io.loads[-1]
    assert call.flags == 0x10 | (3 << 5)
    assert call.initrd is not None and call.initrd.path == str(images["initrd"])
    assert call.initrd.read_only and call.initrd.cloexec
    assert call.kernel is not None and call.kernel.path == str(images["kernel"])
    assert call.cmdline is None


def test_record_survives_a_new_backend(make_host: MakeHost, images: dict[str, Path]) -> None:
    host = make_host("tree")
    _ready(host)
    host.backend.kexec_file_load(
        LoadRequest(
            kernel=images["kernel"],
            initrd=None,
            cmdline=b"x\0",
            flags=load_flags(3, has_initrd=False),
            kernel_sha256="cd" * 32,
        )
    )
    again = HostBackend(host.settings, host.io)
    kimage = again.read_instance(3).kimage
    assert kimage is not None and kimage.kernel_sha256 == "cd" * 32


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_segments_are_computed_when_the_kernel_does_not_show_them(
    make_host: MakeHost, images: dict[str, Path], profile: str
) -> None:
    host = make_host(profile)
    state_file = host.settings.daemon.state_dir / "client.json"
    client = HostBackend(host.settings, RealKernelView(host.kernel), state_file=state_file)
    if profile == "tree":
        client.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=0, memory_bytes=GiB))
    client.create_instances([InstanceSpec(id=3, name="web", cpus=(1,), memory_bytes=256 * MiB)])
    request = LoadRequest(kernel=images["kernel"], initrd=None, cmdline=b"x\0", flags=load_flags(3, has_initrd=False))
    kimage = client.kexec_file_load(request).kimage
    assert kimage is not None and kimage.segments_source == "computed"
    kernel_view = host.kernel.read_instance(3).kimage
    assert kernel_view is not None
    # The daemon's loaders place what the kernel placed over the same chunks (spec 3.3). Pages the
    # kernel takes from its own allocator (tree control and swap pages) are not predictable from
    # outside: the computed ones are only said to lie outside the pool.
    assert [(s.kind, s.mem, s.memsz) for s in kimage.segments if s.in_pool] == [
        (s.kind, s.mem, s.memsz) for s in kernel_view.segments if s.in_pool
    ]
    assert [s.kind for s in kimage.segments] == [s.kind for s in kernel_view.segments]
    # Kept across a restart: the kernel cannot tell them again.
    again = HostBackend(host.settings, RealKernelView(host.kernel), state_file=state_file)
    restarted = again.read_instance(3).kimage
    assert restarted is not None and restarted.segments == kimage.segments


@pytest.mark.parametrize(
    ("instance_id", "code"),
    [(5, errno.ENOENT), (0, errno.EINVAL), (2048, errno.EINVAL)],
)
def test_load_errno_from_the_kernel(tree: Host, images: dict[str, Path], instance_id: int, code: int) -> None:
    _ready(tree)
    before = _open_fds()
    request = LoadRequest(
        kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(instance_id, has_initrd=False)
    )
    with pytest.raises(KernelError) as raised:
        tree.backend.kexec_file_load(request)
    assert raised.value.errno_code == code
    assert _open_fds() == before


def test_second_load_is_ebusy_and_fds_are_closed(v2: Host, images: dict[str, Path]) -> None:
    _ready(v2)
    request = LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
    v2.backend.kexec_file_load(request)
    before = _open_fds()
    with pytest.raises(KernelError) as raised:
        v2.backend.kexec_file_load(request)
    assert raised.value.errno == "EBUSY" and raised.value.status == 409
    assert _open_fds() == before


def test_injected_errno_surfaces_as_the_same_kernel_error(tree: Host, images: dict[str, Path]) -> None:
    _ready(tree)
    tree.io.fail_next = errno.EKEYREJECTED
    with pytest.raises(KernelError) as raised:
        tree.backend.kexec_file_load(
            LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
        )
    assert raised.value.errno == "EKEYREJECTED" and raised.value.status == 422
    assert tree.backend.read_instance(3).kimage is None


def test_missing_image_file_never_reaches_the_kernel(tree: Host, tmp_path: Path) -> None:
    _ready(tree)
    with pytest.raises(KernelError) as raised:
        tree.backend.kexec_file_load(
            LoadRequest(kernel=tmp_path / "gone", initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
        )
    # The daemon names its own stored file: one that cannot be opened is a host fault (502), and
    # the problem carries no server path.
    assert raised.value.errno == "EIO" and "gone" not in raised.value.detail
    assert tree.io.loads == []


def test_tree_unload_flags(tree: Host, images: dict[str, Path]) -> None:
    _ready(tree)
    tree.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
    )
    instance = tree.backend.unload(3)
    call = tree.io.loads[-1]
    assert call.flags == 0x1 | 0x10 | (3 << 5)
    assert (call.kernel, call.initrd, call.cmdline) == (None, None, None)  # fds -1
    assert instance.kernel_state == "ready" and instance.kimage is None
    with pytest.raises(KernelError) as raised:  # spec vector 23: no kimage → ENOENT
        tree.backend.unload(3)
    assert raised.value.errno == "ENOENT"


def test_v2_unload_is_refused_without_a_syscall(make_host: MakeHost) -> None:
    # A v2 kernel that does not declare per-instance unload (the seed's single slot).
    v2 = make_host("rfc-v2", bug_compat=True)
    _ready(v2)
    with pytest.raises(KernelError) as raised:
        v2.backend.unload(3)
    assert raised.value.errno == "EOPNOTSUPP"
    assert v2.io.loads == []


def test_start_and_stop_send_reboot_commands(tree: Host, images: dict[str, Path]) -> None:
    _ready(tree)
    with pytest.raises(KernelError) as raised:  # spec vector 25: no kimage
        tree.backend.start(3)
    assert raised.value.errno == "EINVAL"
    tree.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
    )
    with pytest.raises(KernelError) as raised:  # spec vector 29: graceful halt of a loaded one
        tree.backend.stop(3, force=False)
    assert raised.value.errno == "EINVAL"
    assert tree.backend.start(3).kernel_state == "active"
    assert tree.backend.stop(3, force=False).kernel_state == "loaded"
    assert tree.backend.stop(3, force=True).kernel_state == "loaded"
    assert tree.io.reboots == [
        (LINUX_REBOOT_CMD_MULTIKERNEL, 3),
        (LINUX_REBOOT_CMD_MULTIKERNEL_HALT, 3),
        (LINUX_REBOOT_CMD_MULTIKERNEL, 3),
        (LINUX_REBOOT_CMD_MULTIKERNEL_HALT, 3),
        (LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE, 3),
    ]
    with pytest.raises(KernelError) as raised:  # spec vector 33
        tree.backend.stop(99, force=False)
    assert raised.value.errno == "ENOENT"


def test_v2_start_and_no_halt(v2: Host, images: dict[str, Path]) -> None:
    _ready(v2)
    v2.backend.kexec_file_load(
        LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(3, has_initrd=False))
    )
    assert v2.backend.start(3).kernel_state == "loading"  # v2 never reports active
    with pytest.raises(KernelError) as raised:
        v2.backend.stop(3, force=True)
    assert raised.value.errno == "EINVAL" and raised.value.detail == "rfc-v2 has no halt"
    assert v2.io.reboots == [(LINUX_REBOOT_CMD_MULTIKERNEL, 3)]


def test_start_errno_injected(tree: Host) -> None:
    _ready(tree)
    tree.io.fail_next = errno.EBUSY
    with pytest.raises(KernelError) as raised:
        tree.backend.start(3)
    assert raised.value.errno == "EBUSY"
