"""The kernel's own interface, as one client uses it on either kernel (DESIGN "Two backends").

A client reads and writes files (sysfs, /proc) and makes two syscalls. `KernelIO` is exactly
that surface; the real OS implements it with paths and libc (`OsKernelIO`), the simulator
implements it in process (`mkd.backends.simulated.kernel_files.SimulatedKernelIO`). Paths are
the kernel's absolute ones ("/sys/fs/multikernel/device_tree", "/proc/iomem").

File calls fail as the OS does, with OSError carrying the errno (FileNotFoundError for a
missing path); the syscalls raise KernelError(errno), as `LibcSyscalls` does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from typing import Protocol

from mkd.backends.host.syscalls import LibcSyscalls, Syscalls, UnsupportedMachine
from mkd.errors import KernelError

SYSFS_ROOT = "/sys/fs/multikernel"
# Files only the simulator has (DESIGN "Two backends": it may expose what the real interface
# does not). A real kernel has neither, so a client reading them learns which kind it drives.
SEGMENTS_PATH = "/proc/mk-sim/kimage_segments"  # every kimage segment, one per line
FEATURES_PATH = "/proc/mk-sim/features"  # behaviour the kernel declares, one word per line
CONSOLE_DEVICE = "/dev/mktty"  # the tree's console misc device at v7.0-mk2 (spec 8.8)
READ_CHUNK_BYTES = 1 << 16  # a sysfs text file fits in one read; a device tree takes a few


class ConsoleFile(Protocol):
    """One open file of the console device (spec 8.8), non-blocking as opened with O_NONBLOCK.

    The first write selects the instance ("<id>\\n"); later writes are input. `read` returns
    what is buffered or raises BlockingIOError (EAGAIN) when nothing is; other OSErrors carry
    the kernel's errno (ENOTCONN before the id is written). `fileno` is a descriptor for
    poll/epoll that is readable while `read` has output to give, so a client waits for output
    the same way on both kernels.
    """

    def write(self, data: bytes) -> int: ...

    def read(self, size: int) -> bytes: ...

    def fileno(self) -> int: ...

    def close(self) -> None: ...


# What a real kernel only logs (dmesg): the errno of a failed overlay transaction (spec 5.4),
# `<ERRNO>: <reason>` in tx_log/tx_<N>, and the instances the last v2 device_tree write skipped
# (spec 5.2), `<name> <ERRNO> <reason>` per line.
TX_LOG_DIR = "/proc/mk-sim/tx_log"
DEVICE_TREE_LOG_PATH = "/proc/mk-sim/device_tree_log"


class KernelIO(Protocol):
    """What a client does to a kernel: file reads, one-write writes, rmdir, two syscalls."""

    def read(self, path: str) -> bytes:
        """The whole file; OSError (ENOENT, EISDIR, EACCES) as read(2) gives it."""
        ...

    def read_each(self, paths: Sequence[str]) -> list[bytes | None]:
        """Each file whole, None for one that cannot be read (gone meanwhile): the status poll's
        call, once a poll for every running instance."""
        ...

    def listdir(self, path: str) -> list[str]:
        """The entry names of a directory; OSError (ENOENT, ENOTDIR)."""
        ...

    def is_dir(self, path: str) -> bool: ...

    def exists(self, path: str) -> bool: ...

    def write_once(self, path: str, data: bytes) -> None:
        """One open + one write(2) at offset 0 + close: kernfs applies a blob per write (spec 5.4)."""
        ...

    def rmdir(self, path: str) -> None: ...

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None: ...

    def reboot(self, cmd: int, mk_id: int) -> None: ...

    def has_console(self) -> bool:
        """Whether the console device exists (the tree at v7.0-mk2, spec 8.8)."""
        ...

    def open_console(self) -> ConsoleFile:
        """open(2) of the console device, O_RDWR | O_NONBLOCK; OSError as open gives it."""
        ...

    def close(self) -> None:
        """Let go of the kernel (the simulator stops its work; a host has nothing to release)."""
        ...


def read_one_by_one(io: KernelIO, paths: Sequence[str]) -> list[bytes | None]:
    """KernelIO.read_each as a read(2) of each file."""
    found: list[bytes | None] = []
    for path in paths:
        try:
            found.append(io.read(path))
        except OSError:
            found.append(None)
    return found


def join(*parts: str) -> str:
    """Kernel paths are plain strings joined with "/" (called per file: no pathlib parsing)."""
    return "/".join(part.strip("/") if index else part.rstrip("/") for index, part in enumerate(parts))


class OsKernelIO:
    """KernelIO on the running machine: real paths and libc's syscall(2).

    The roots are movable so the file plumbing can be exercised on a tmpfs; a daemon uses the
    defaults (`sysfs_root` is `[daemon] sysfs_root`).
    """

    def __init__(
        self,
        *,
        sysfs_root: str = SYSFS_ROOT,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        syscalls: Syscalls | None = None,
        machine: str | None = None,
        console_device: str = CONSOLE_DEVICE,
    ) -> None:
        self.sysfs_root = sysfs_root
        self.console_device = console_device
        self.proc_root = proc_root
        self.sys_root = sys_root
        self.machine = machine
        self._syscalls = syscalls

    @property
    def syscalls(self) -> Syscalls:
        # Built on first use: a machine without the syscall numbers can still be probed (and told why).
        if self._syscalls is None:
            try:
                self._syscalls = LibcSyscalls(machine=self.machine)
            except UnsupportedMachine as exc:
                raise KernelError(errno.ENODEV, str(exc)) from exc
        return self._syscalls

    def real_path(self, path: str) -> str:
        """Where a kernel path lives on this machine (the multikernel root first: it is under /sys)."""
        for kernel_root, root in ((SYSFS_ROOT, self.sysfs_root), ("/proc", self.proc_root), ("/sys", self.sys_root)):
            if path == kernel_root or path.startswith(kernel_root + "/"):
                return root + path[len(kernel_root) :]
        raise OSError(errno.ENOENT, f"{path} is outside /proc and /sys")

    def read(self, path: str) -> bytes:
        # Plain read(2)s, not open(): the status poll reads a file per running instance each
        # second, and the buffered file object costs more than the syscalls (27 µs against 11).
        fd = os.open(self.real_path(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, READ_CHUNK_BYTES):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def read_each(self, paths: Sequence[str]) -> list[bytes | None]:
        return read_one_by_one(self, paths)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(self.real_path(path)))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.real_path(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(self.real_path(path))

    def write_once(self, path: str, data: bytes) -> None:
        # kernfs applies a device tree per write() call and rejects a write at offset != 0
        # (spec 5.4), so the blob must go in exactly one write on a fresh descriptor.
        real = self.real_path(path)
        fd = os.open(real, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {real}: {written} of {len(data)} bytes")

    def rmdir(self, path: str) -> None:
        os.rmdir(self.real_path(path))

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
        self.syscalls.kexec_file_load(kernel_fd, initrd_fd, cmdline, flags)

    def reboot(self, cmd: int, mk_id: int) -> None:
        self.syscalls.reboot(cmd, mk_id)

    def has_console(self) -> bool:
        return os.path.exists(self.console_device)

    def open_console(self) -> ConsoleFile:
        return OsConsoleFile(os.open(self.console_device, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))

    def close(self) -> None:
        return None


class OsConsoleFile:
    """A console device descriptor: write(2) and non-blocking read(2) (EAGAIN is BlockingIOError)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        return os.write(self.fd, data)

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
