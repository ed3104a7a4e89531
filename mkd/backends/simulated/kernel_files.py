"""The simulated kernel behind the kernel's own interface: paths, one-write writes, rmdir, fds.

`SimulatedKernelIO` implements `mkd.backends.kernel_io.KernelIO` over a SimulatedKernel, so
the one kernel client drives the simulator exactly as it drives a host. Every path resolves to
a directory or a file with the kernfs behaviour of its mode (spec 6.1, 5.4):
- an unknown path is ENOENT; a read of a write-only file (overlays/new) and a write to a
  read-only one are EACCES, as kernfs answers at open time; a write to a directory is EISDIR;
- rmdir of a file is ENOTDIR; other rmdirs are the kernel's (instances/<name> on v2,
  overlays/tx_N on the tree, EPERM elsewhere);
- the syscalls take file descriptors and read the files through them, as the kernel does.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mkd.backends.kernel_io import SYSFS_ROOT, ConsoleFile, read_one_by_one
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.mktty import MkttyFile
from mkd.devicetree.build import v2_device_tree_source
from mkd.errors import KernelError
from mkd.kernel_types import LoadRequest


@dataclass(frozen=True)
class _Dir:
    entries: Callable[[], list[str]]
    remove: Callable[[], None] | None = None  # rmdir of this directory


@dataclass(frozen=True)
class _File:
    read: Callable[[], bytes] | None = None  # None: write-only (mode 0200)
    write: Callable[[bytes], None] | None = None  # None: read-only (mode 0444)


_Node = _Dir | _File
_T = TypeVar("_T")
_MULTIKERNEL_PARTS = [part for part in SYSFS_ROOT.split("/") if part]
_INSTANCES_PARTS = [*_MULTIKERNEL_PARTS, "instances"]
_STATUS_PATHS = 8192  # remembered status paths: every instance's, with room for renames


def _oserror(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _text(value: Callable[[], str]) -> _File:
    return _File(read=lambda: value().encode())


def _static(entries: list[str]) -> _Dir:
    return _Dir(lambda: entries)


class SimulatedKernelIO:
    """KernelIO over one SimulatedKernel (kernel errors come back as the errno of the call)."""

    def __init__(self, kernel: SimulatedKernel) -> None:
        self.kernel = kernel
        self._sys_files = self._build_sys()
        self._sys_dirs = _directories(self._sys_files)
        # instances/<name>/status paths already resolved once -> name: the file exists exactly
        # while the instance does, which status_bytes checks, so the path walk is skipped.
        self._status_paths: dict[str, str] = {}

    # -- KernelIO: files ----------------------------------------------------------------------

    def read(self, path: str) -> bytes:
        name = self._status_paths.get(path)
        if name is not None:  # the status poll's read, once per running instance each second
            return self._call(path, lambda: self.kernel.status_bytes(name))
        parts = [part for part in path.split("/") if part]
        node = self._node(path, parts)
        if isinstance(node, _Dir):
            raise _oserror(errno.EISDIR, path)
        if node.read is None:
            raise _oserror(errno.EACCES, path)
        data = self._call(path, node.read)
        if parts[:-2] == _INSTANCES_PARTS and parts[-1] == "status":
            if len(self._status_paths) >= _STATUS_PATHS:
                self._status_paths.clear()
            self._status_paths[path] = parts[-2]
        return data

    def read_each(self, paths: Sequence[str]) -> list[bytes | None]:
        names = [self._status_paths.get(path) for path in paths]
        if None not in names:  # the status poll's paths, resolved before: one hold of the kernel
            return self.kernel.statuses_bytes([name for name in names if name is not None])
        return read_one_by_one(self, paths)

    def listdir(self, path: str) -> list[str]:
        node = self._node(path)
        if not isinstance(node, _Dir):
            raise _oserror(errno.ENOTDIR, path)
        return sorted(node.entries())

    def is_dir(self, path: str) -> bool:
        try:
            return isinstance(self._node(path), _Dir)
        except OSError:
            return False

    def exists(self, path: str) -> bool:
        try:
            self._node(path)
        except OSError:
            return False
        return True

    def write_once(self, path: str, data: bytes) -> None:
        node = self._node(path)
        if isinstance(node, _Dir):
            raise _oserror(errno.EISDIR, path)
        if node.write is None:
            raise _oserror(errno.EACCES, path)
        self._call(path, lambda: node.write(data) if node.write is not None else None)

    def rmdir(self, path: str) -> None:
        node = self._node(path)
        if not isinstance(node, _Dir):
            raise _oserror(errno.ENOTDIR, path)
        if node.remove is None:
            raise _oserror(errno.EPERM, path)
        self._call(path, node.remove)

    # -- KernelIO: syscalls ---------------------------------------------------------------------

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
        # The kernel reads the images through the descriptors it was given (spec 2.7.1 steps 1, 4).
        request = LoadRequest(_fd_file(kernel_fd), _fd_file(initrd_fd), cmdline, flags)
        self.kernel.load(request)

    def reboot(self, cmd: int, mk_id: int) -> None:
        self.kernel.reboot(cmd, mk_id)

    def has_console(self) -> bool:
        return self.kernel.profile == "tree"  # /dev/mktty arrived with v7.0-mk2 (spec 8.8)

    def open_console(self) -> ConsoleFile:
        if not self.has_console():
            raise _oserror(errno.ENOENT, "/dev/mktty")
        return _SimulatedConsoleFile(self.kernel.console.open())

    def close(self) -> None:
        self.kernel.close()

    # -- path resolution --------------------------------------------------------------------------

    @staticmethod
    def _call(path: str, action: Callable[[], bytes | None]) -> bytes:
        try:
            return action() or b""
        except KernelError as exc:
            raise OSError(exc.errno_code, exc.detail, path) from exc

    def _node(self, path: str, parts: list[str] | None = None) -> _Node:
        if parts is None:
            parts = [part for part in path.split("/") if part]
        node = self._lookup(parts)
        if node is None:
            raise _oserror(errno.ENOENT, path)
        return node

    def _lookup(self, parts: list[str]) -> _Node | None:
        if parts[: len(_MULTIKERNEL_PARTS)] == _MULTIKERNEL_PARTS:
            return self._multikernel(parts[len(_MULTIKERNEL_PARTS) :])
        if parts[:1] == ["proc"]:
            return self._proc(parts[1:])
        if parts[:1] == ["sys"]:
            return self._sys(parts[1:])
        if not parts:
            return _static(["proc", "sys"])
        return None

    # -- /sys/fs/multikernel (spec 6.1, 5.4) --------------------------------------------------------

    def _multikernel(self, parts: list[str]) -> _Node | None:
        kernel = self.kernel
        tree = kernel.profile == "tree"
        if not parts:
            return _static(["device_tree", "instances", *(["overlays"] if tree else [])])
        head, rest = parts[0], parts[1:]
        if head == "device_tree" and not rest:
            return _File(read=kernel.read_device_tree, write=lambda data: _discard(kernel.write_device_tree(data)))
        if head == "instances":
            if not rest:
                return _Dir(kernel.instance_names)
            return self._instance(rest[0], rest[1:])
        if head == "overlays" and tree:
            return self._overlays(rest)
        return None

    def _instance(self, name: str, rest: list[str]) -> _Node | None:
        kernel = self.kernel
        if kernel.find_named(name) is None:
            return None
        dt_file = "device_tree" if kernel.profile == "tree" else "device_tree_source"
        if not rest:
            return _Dir(lambda: ["id", "status", dt_file], remove=lambda: kernel.rmdir(f"instances/{name}"))
        if len(rest) != 1:
            return None
        if rest[0] == "id":
            return _text(lambda: kernel.id_file(name))
        if rest[0] == "status":
            return _text(lambda: kernel.status_file(name))
        if rest[0] == dt_file == "device_tree":
            return _File(read=lambda: kernel.instance_device_tree(name))
        if rest[0] == dt_file == "device_tree_source":
            return _text(lambda: v2_device_tree_source(kernel.read_instance_named(name)))
        return None

    def _overlays(self, rest: list[str]) -> _Node | None:
        kernel = self.kernel
        if not rest:
            return _Dir(lambda: ["new", *(f"tx_{tx_id}" for tx_id in kernel.overlay_ids())])
        name = rest[0]
        if name == "new" and len(rest) == 1:
            return _File(write=lambda data: _discard(kernel.overlay_new(data)))
        if not (name.startswith("tx_") and name[3:].isdigit()) or not kernel.has_overlay(int(name[3:])):
            return None
        tx_id = int(name[3:])
        if len(rest) == 1:
            return _Dir(lambda: sorted(kernel.tx_files(tx_id)), remove=lambda: kernel.rmdir_tx(tx_id))
        if len(rest) == 2 and rest[1] in kernel.tx_files(tx_id):
            return _File(read=lambda: kernel.tx_files(tx_id)[rest[1]])
        return None

    # -- /proc ------------------------------------------------------------------------------------

    def _proc(self, parts: list[str]) -> _Node | None:
        kernel = self.kernel
        env = kernel.loader_env
        files: dict[str, Callable[[], bytes]] = {
            "iomem": lambda: kernel.proc_iomem().encode(),
            "kimage": lambda: kernel.proc_kimage().encode(),
            "meminfo": lambda: f"MemTotal:       {env.total_ram_bytes // 1024} kB\n".encode(),
            "cpuinfo": self._cpuinfo,
            "cmdline": lambda: b"BOOT_IMAGE=/vmlinuz-mk root=/dev/sim\n",
        }
        if env.kexec_sig_enforced:
            # How a host shows enforcement built in (read by the host's loader environment).
            files["config.gz"] = lambda: gzip.compress(b"CONFIG_KEXEC_SIG_FORCE=y\n", mtime=0)
        if not parts:
            return _Dir(lambda: [*files, "mk-sim"])
        if parts == ["mk-sim"]:
            return _static(["device_tree_log", "features", "kimage_segments", "tx_log"])
        if parts == ["mk-sim", "device_tree_log"]:
            return _text(kernel.device_tree_log)
        if parts == ["mk-sim", "tx_log"]:
            return _Dir(kernel.tx_log_names)
        if len(parts) == 3 and parts[:2] == ["mk-sim", "tx_log"] and parts[2] in kernel.tx_log_names():
            tx_id = int(parts[2][3:])
            return _text(lambda: f"{kernel.tx_log(tx_id)}\n")
        if parts == ["mk-sim", "kimage_segments"]:
            return _text(kernel.kimage_segments)
        if parts == ["mk-sim", "features"]:
            return _text(self._features)
        if len(parts) == 1 and parts[0] in files:
            return _File(read=files[parts[0]])
        return None

    def _features(self) -> str:
        """What this kernel declares beyond the real interface: per-instance unload on rfc-v2 is
        the simulator's default (spec 2.3), the seed's single kexec_image slot is bug_compat;
        LLC way masks are the open pull request's behaviour, off in the release (spec 8.6.3)."""
        settings = self.kernel.settings
        per_instance = settings.kernel_profile == "tree" or not settings.bug_compat
        llc = settings.kernel_profile == "tree" and settings.llc_way_masks  # spec 8.6.3
        declared = (("per_instance_unload", per_instance), ("llc_way_masks", llc))
        return "".join(f"{word}\n" for word, on in declared if on)

    def _cpuinfo(self) -> bytes:
        la57 = " la57" if self.kernel.loader_env.five_level_paging else ""
        blocks = [
            f"processor\t: {cpu.logical_id}\napicid\t\t: {cpu.id}\nflags\t\t: fpu lm{la57}\n\n"
            for cpu in self.kernel.topology.cpus
        ]
        return "".join(blocks).encode()

    # -- /sys (topology, lockdown) --------------------------------------------------------------------

    def _sys(self, parts: list[str]) -> _Node | None:
        key = tuple(parts)
        node = self._sys_files.get(key)
        if node is not None:
            return node
        children = self._sys_dirs.get(key)
        return _static(sorted(children)) if children else None

    def _build_sys(self) -> dict[tuple[str, ...], _Node]:
        """The machine's /sys files; the topology is fixed, so they are built once."""
        topology = self.kernel.topology
        tree: dict[tuple[str, ...], _Node] = {
            ("kernel", "security", "lockdown"): _text(lambda: "[none] integrity confidentiality\n"),
            ("fs", "resctrl", "info", "L3", "cbm_mask"): _text(lambda: f"{topology.llc_way_mask:x}\n"),
            ("devices", "system", "cpu", "present"): _text(lambda: f"0-{len(topology.cpus) - 1}\n"),
        }
        for cpu in topology.cpus:
            cache = ("devices", "system", "cpu", f"cpu{cpu.logical_id}", "cache", "index3")
            tree[(*cache, "level")] = _constant("3\n")
            tree[(*cache, "id")] = _constant(f"{cpu.llc}\n")
        for node in range(topology.numa_nodes):
            members = ",".join(str(cpu.logical_id) for cpu in topology.cpus if cpu.numa_node == node)
            tree[("devices", "system", "node", f"node{node}", "cpulist")] = _constant(members + "\n")
        for device in topology.devices:
            if device.type == "pci":
                # The simulated machine names devices only; it has no PCI vendor or device ids.
                numa = -1 if device.numa_node is None else device.numa_node
                tree[("bus", "pci", "devices", device.name, "numa_node")] = _constant(f"{numa}\n")
        return tree


class _SimulatedConsoleFile:
    """The simulator's /dev/mktty file with the OS's errors: KernelError becomes OSError, EAGAIN
    BlockingIOError, so a client handles both kernels alike."""

    def __init__(self, opened: MkttyFile) -> None:
        self._file = opened

    def write(self, data: bytes) -> int:
        return _console_call(lambda: self._file.write(data))

    def read(self, size: int) -> bytes:
        try:  # spelled out (no closure): the reader calls this for every console each second
            return self._file.read(size)
        except KernelError as exc:
            raise _console_error(exc) from exc

    def fileno(self) -> int:
        return self._file.fileno()

    def close(self) -> None:
        self._file.close()


def _console_call(action: Callable[[], _T]) -> _T:
    try:
        return action()
    except KernelError as exc:
        raise _console_error(exc) from exc


def _console_error(exc: KernelError) -> OSError:
    if exc.errno_code == errno.EAGAIN:
        return BlockingIOError(errno.EAGAIN, exc.detail, "/dev/mktty")
    return OSError(exc.errno_code, exc.detail, "/dev/mktty")


def _directories(files: dict[tuple[str, ...], _Node]) -> dict[tuple[str, ...], set[str]]:
    """Every directory above the files, with the names in it."""
    found: dict[tuple[str, ...], set[str]] = {}
    for path in files:
        for depth in range(len(path)):
            found.setdefault(path[:depth], set()).add(path[depth])
    return found


def _constant(text: str) -> _File:
    data = text.encode()
    return _File(read=lambda: data)


def _discard(_: object) -> None:
    return None


def _fd_file(fd: int) -> Path | None:
    """The file an fd refers to, as the kernel's fdget() sees it; None (EBADF later) when it has none.

    An fd not open for reading is EBADF (kernel_read_file needs FMODE_READ), which the loaders
    answer for None. The simulator keeps segment sources by path instead of copying images
    into memory (spec 3.5 re-copies them at start), so the fd's file is named by the path it
    was opened at while that path still is the same inode, else by /proc/self/fd/<fd>.
    """
    if fd < 0:
        return None
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        opened = os.fstat(fd)
    except OSError:
        return None
    if mode == os.O_WRONLY:
        return None
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")
        now = os.stat(path)
    except OSError:
        return Path(f"/proc/self/fd/{fd}")
    if (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        return Path(f"/proc/self/fd/{fd}")
    return Path(path)
