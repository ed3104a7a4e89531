"""The two multikernel syscalls, kexec_file_load(2) and reboot(2), through ctypes `syscall(2)`.

glibc has no wrapper for kexec_file_load and its reboot(3) wrapper drops the `arg` pointer, so
both go through the raw `syscall` entry point with the numbers of the running architecture.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Callable
from typing import Any, Protocol

from mkd.errors import KernelError

# spec 6.2: reboot(2) magic numbers and the multikernel commands.
LINUX_REBOOT_MAGIC1 = 0xFEE1DEAD
LINUX_REBOOT_MAGIC2 = 672274793  # 0x28121969
LINUX_REBOOT_CMD_MULTIKERNEL = 0x4D4B4C49  # "MKLI", start (v2 + tree)
LINUX_REBOOT_CMD_MULTIKERNEL_HALT = 0x4D4B4C48  # "MKLH", graceful halt (tree)
LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE = 0x4D4B4C46  # "MKLF", forced halt (tree)

# (kexec_file_load, reboot) syscall numbers per `platform.machine()`.
SYSCALL_NUMBERS: dict[str, tuple[int, int]] = {
    "x86_64": (320, 169),
    "aarch64": (294, 142),
    "arm64": (294, 142),
}


class Syscalls(Protocol):
    """The kernel entry points the host backend needs; both raise KernelError(errno) on failure."""

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None: ...

    def reboot(self, cmd: int, mk_id: int) -> None: ...


class MultikernelBootArgs(ctypes.Structure):
    """`struct multikernel_boot_args { int mk_id; }`, the reboot(2) `arg` (spec 6.2)."""

    _fields_ = [("mk_id", ctypes.c_int)]


class UnsupportedMachine(RuntimeError):
    """The running architecture has no multikernel support in the kernel."""


def syscall_numbers(machine: str) -> tuple[int, int]:
    """(kexec_file_load, reboot) numbers for a `platform.machine()` string."""
    try:
        return SYSCALL_NUMBERS[machine]
    except KeyError:
        raise UnsupportedMachine(f"multikernel exists only on x86_64 and arm64; this machine is {machine!r}") from None


def _libc_syscall() -> Callable[..., int]:
    libc = ctypes.CDLL(None, use_errno=True)
    function: Callable[..., int] = libc.syscall
    return function


class LibcSyscalls:
    """Syscalls through libc's `syscall(2)`.

    `syscall` and `get_errno` are injectable so the argument marshalling is testable without
    entering the kernel; the defaults are libc's `syscall` loaded with use_errno=True and
    `ctypes.get_errno`.
    """

    def __init__(
        self,
        *,
        machine: str | None = None,
        syscall: Callable[..., int] | None = None,
        get_errno: Callable[[], int] = ctypes.get_errno,
    ) -> None:
        self.machine = machine or platform.machine()
        self.nr_kexec_file_load, self.nr_reboot = syscall_numbers(self.machine)
        self._syscall = syscall or _libc_syscall()
        self._get_errno = get_errno

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
        # spec 2.7.1 step 6: cmdline_len counts the terminating NUL; 0 with a NULL pointer means
        # "no command line". The bytes go to the kernel exactly as given (a missing NUL is the
        # kernel's EINVAL to report, not ours to repair).
        buffer: Any
        if cmdline is None:
            length, buffer = 0, None
        else:
            length = len(cmdline)
            buffer = (ctypes.c_char * max(length, 1)).from_buffer_copy(cmdline or b"\0")
        result = self._syscall(
            ctypes.c_long(self.nr_kexec_file_load),
            ctypes.c_int(kernel_fd),
            ctypes.c_int(initrd_fd),
            ctypes.c_ulong(length),
            buffer,
            ctypes.c_ulong(flags),
        )
        self._check(result, f"kexec_file_load(flags={flags:#x})")

    def reboot(self, cmd: int, mk_id: int) -> None:
        args = MultikernelBootArgs(mk_id)
        result = self._syscall(
            ctypes.c_long(self.nr_reboot),
            ctypes.c_uint(LINUX_REBOOT_MAGIC1),
            ctypes.c_uint(LINUX_REBOOT_MAGIC2),
            ctypes.c_uint(cmd),
            ctypes.byref(args),
        )
        self._check(result, f"reboot(cmd={cmd:#x}, mk_id={mk_id})")

    def _check(self, result: int, call: str) -> None:
        if result == -1:
            code = self._get_errno()
            raise KernelError(code, f"{call} failed: {os.strerror(code)}")
