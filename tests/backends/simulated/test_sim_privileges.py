"""Refusals before any multikernel rule: CAP_SYS_BOOT (spec 2.2 step 1, 6.2), lockdown (2.7.1
step 3) and a kernel file open for writing (2.7.1 step 1, deny_write_access -> ETXTBSY)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.reboot import LINUX_REBOOT_CMD_MULTIKERNEL, LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE
from mkd.errors import KernelError
from mkd.kexec.flags import KEXEC_FILE_UNLOAD


def _errno(call: object, *args: object) -> int:
    with pytest.raises(KernelError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.errno_code


def _load(backend: HostBackend, kernel: Path, initrd: Path | None = None, flags: int | None = None) -> int:
    return kernel_of(backend).kexec_file_load(kernel, initrd, b"\0", load_flags(1) if flags is None else flags)


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_without_cap_sys_boot_every_kexec_and_reboot_call_is_eperm(
    make_backend: BackendFactory, images: dict[str, Path], profile: str
) -> None:
    backend = with_baseline(make_backend(kernel_profile=profile, cap_sys_boot=False))
    backend.create_instances([spec(1, "web", (1,), 256 * MiB)])
    assert _errno(_load, backend, images["vmlinux"]) == errno.EPERM
    # before the flags check and the id check
    assert _errno(_load, backend, images["vmlinux"], None, 0x10000) == errno.EPERM
    kernel = kernel_of(backend)
    assert _errno(kernel.kexec_file_load, None, None, None, KEXEC_FILE_UNLOAD | load_flags(1)) == errno.EPERM
    # reboot: before the magic check
    assert _errno(kernel_of(backend).reboot, LINUX_REBOOT_CMD_MULTIKERNEL, 1) == errno.EPERM
    assert _errno(lambda: kernel_of(backend).reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1, magic1=0)) == errno.EPERM
    assert backend.read_instance(1).kernel_state == "ready"


def test_with_cap_sys_boot_a_bad_magic_is_einval(tree: HostBackend) -> None:
    assert _errno(lambda: kernel_of(tree).reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1, magic1=0)) == errno.EINVAL


@pytest.mark.parametrize("level", ["integrity", "confidentiality"])
def test_lockdown_refuses_the_unsigned_image_after_the_probe(
    make_backend: BackendFactory, images: dict[str, Path], level: str
) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree", lockdown=level))
    backend.create_instances([spec(1, "web", (1,), 256 * MiB)])
    assert _errno(_load, backend, images["vmlinux"]) == errno.EPERM
    # the probe runs first: garbage is ENOEXEC; the initrd is read after: fd -1 does not matter
    assert _errno(_load, backend, images["garbage"]) == errno.ENOEXEC
    assert _errno(_load, backend, images["vmlinux"], None, load_flags(1, initrd=True)) == errno.EPERM
    # enforcement wins over lockdown (its errno is returned before lockdown is looked at)
    enforcing = make_backend(kernel_profile="tree", lockdown=level, kexec_sig_enforced=True)  # same state dir
    assert _errno(_load, enforcing, images["vmlinux"]) == errno.EKEYREJECTED


def test_lockdown_does_not_stop_unload_or_halt(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    backend.create_instances([spec(1, "web", (1,), 256 * MiB)])
    _load(backend, images["vmlinux"])
    locked = make_backend(kernel_profile="tree", lockdown="confidentiality")  # same state dir, now locked
    assert kernel_of(locked).reboot(LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE, 1) == 0
    assert locked.unload(1).kernel_state == "ready"


@pytest.mark.parametrize("mode", ["r+b", "ab", "wb"])
def test_a_kernel_open_for_writing_is_etxtbsy(
    tree: HostBackend, images: dict[str, Path], tmp_path: Path, mode: str
) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    kernel = shutil.copy(images["vmlinux"], tmp_path / "vmlinux")
    with open(kernel, mode) as writer:
        if mode == "wb":
            writer.write(images["vmlinux"].read_bytes())
            writer.flush()
        assert _errno(_load, tree, kernel) == errno.ETXTBSY
    assert tree.read_instance(1).kernel_state == "ready"
    assert _load(tree, kernel) == 0  # the writer is gone


def test_an_initrd_open_for_writing_is_etxtbsy(tree: HostBackend, images: dict[str, Path], tmp_path: Path) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    initrd = shutil.copy(images["initrd"], tmp_path / "initrd")
    with open(initrd, "r+b"):
        assert _errno(_load, tree, images["vmlinux"], initrd, load_flags(1, initrd=True)) == errno.ETXTBSY
    with open(initrd, "rb"):  # readers do not count
        assert _load(tree, images["vmlinux"], initrd, flags=load_flags(1, initrd=True)) == 0
