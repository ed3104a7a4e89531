"""LibcSyscalls marshalling: syscall numbers, argument types and errno, without entering the kernel."""

from __future__ import annotations

import ctypes
import errno
from typing import Any

import pytest

from mkd.backends.host.syscalls import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
    LINUX_REBOOT_MAGIC1,
    LINUX_REBOOT_MAGIC2,
    LibcSyscalls,
    MultikernelBootArgs,
    UnsupportedMachine,
)
from mkd.errors import KernelError


class Recorder:
    def __init__(self, result: int = 0) -> None:
        self.result = result
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> int:
        self.calls.append(args)
        return self.result


def _value(arg: Any) -> Any:
    return arg.value if hasattr(arg, "value") else arg


@pytest.mark.parametrize(("machine", "kexec_nr", "reboot_nr"), [("x86_64", 320, 169), ("aarch64", 294, 142)])
def test_syscall_numbers_follow_the_machine(machine: str, kexec_nr: int, reboot_nr: int) -> None:
    recorder = Recorder()
    syscalls = LibcSyscalls(machine=machine, syscall=recorder)
    syscalls.kexec_file_load(3, -1, None, 0x74)
    syscalls.reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 3)
    assert _value(recorder.calls[0][0]) == kexec_nr
    assert _value(recorder.calls[1][0]) == reboot_nr


def test_unknown_machine_is_refused_clearly() -> None:
    with pytest.raises(UnsupportedMachine, match="x86_64 and arm64.*riscv64"):
        LibcSyscalls(machine="riscv64", syscall=Recorder())


def test_kexec_file_load_passes_cmdline_with_its_nul_and_length() -> None:
    recorder = Recorder()
    LibcSyscalls(machine="x86_64", syscall=recorder).kexec_file_load(5, 6, b"console=ttyS0\0", 0x10 | (3 << 5))
    nr, kernel_fd, initrd_fd, length, buffer, flags = recorder.calls[0]
    assert isinstance(kernel_fd, ctypes.c_int) and kernel_fd.value == 5
    assert isinstance(initrd_fd, ctypes.c_int) and initrd_fd.value == 6
    assert isinstance(length, ctypes.c_ulong) and length.value == len(b"console=ttyS0\0") == 14
    assert bytes(buffer) == b"console=ttyS0\0"
    assert isinstance(flags, ctypes.c_ulong) and flags.value == 0x70


def test_kexec_file_load_without_cmdline_passes_null_and_zero() -> None:
    recorder = Recorder()
    LibcSyscalls(machine="x86_64", syscall=recorder).kexec_file_load(5, -1, None, 0x74)
    _, _, initrd_fd, length, buffer, _ = recorder.calls[0]
    assert initrd_fd.value == -1
    assert length.value == 0
    assert buffer is None


def test_cmdline_bytes_go_to_the_kernel_unrepaired() -> None:
    # A cmdline without NUL is the kernel's EINVAL to give (spec 2.7.1 step 6), not ours to fix.
    recorder = Recorder()
    LibcSyscalls(machine="x86_64", syscall=recorder).kexec_file_load(5, -1, b"quiet", 0x34)
    assert recorder.calls[0][3].value == 5
    assert bytes(recorder.calls[0][4]) == b"quiet"


def test_reboot_passes_magic_command_and_boot_args() -> None:
    recorder = Recorder()
    LibcSyscalls(machine="x86_64", syscall=recorder).reboot(LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE, 7)
    nr, magic1, magic2, cmd, arg = recorder.calls[0]
    assert (nr.value, magic1.value, magic2.value, cmd.value) == (169, 0xFEE1DEAD, 672274793, 0x4D4B4C46)
    assert (LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2) == (0xFEE1DEAD, 0x28121969)
    boot_args = arg._obj
    assert isinstance(boot_args, MultikernelBootArgs)
    assert boot_args.mk_id == 7
    assert ctypes.sizeof(boot_args) == 4


@pytest.mark.parametrize("code", [errno.EBUSY, errno.ENOENT, errno.EINVAL, errno.EPERM])
def test_failure_reads_errno_into_kernel_error(code: int) -> None:
    syscalls = LibcSyscalls(machine="x86_64", syscall=Recorder(-1), get_errno=lambda: code)
    with pytest.raises(KernelError) as raised:
        syscalls.kexec_file_load(3, -1, None, 0x34)
    assert raised.value.errno_code == code
    assert "kexec_file_load(flags=0x34)" in raised.value.detail
    with pytest.raises(KernelError) as raised:
        syscalls.reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1)
    assert raised.value.errno_code == code


def test_default_entry_point_is_libc_syscall() -> None:
    syscalls = LibcSyscalls(machine="x86_64")
    assert callable(syscalls._syscall)
