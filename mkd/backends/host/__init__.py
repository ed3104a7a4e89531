"""The host backend: the real multikernel kernel through /sys/fs/multikernel and two syscalls."""

from __future__ import annotations

from mkd.backends.host.backend import HostBackend
from mkd.backends.host.syscalls import LibcSyscalls, Syscalls
from mkd.backends.host.sysfs import FileOps, OsFileOps

__all__ = ["FileOps", "HostBackend", "LibcSyscalls", "OsFileOps", "Syscalls"]
