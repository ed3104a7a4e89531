"""Fixtures for the kernel client: HostBackend over the simulated kernel's interface.

There is no fake of the kernel here (DESIGN "Two backends"): the client drives the simulator
through `SimulatedKernelIO`, the same paths, writes and syscalls it uses on a host. The
`RecordingIO` spy only records what crossed the interface (and can make the next syscall
fail with an errno, as a kernel may), so tests can say what the client did.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.backends.kernel_io import SYSFS_ROOT, read_one_by_one
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.kernel_files import SimulatedKernelIO
from mkd.config import Settings
from mkd.errors import KernelError
from mkd.testing import imagegen

GiB = 1 << 30
MiB = 1 << 20
POOL_BASE = 0x1_0000_0000


@dataclass(frozen=True)
class FdInfo:
    """What an fd passed to kexec_file_load pointed at, captured during the call."""

    path: str
    inode: tuple[int, int]
    read_only: bool
    cloexec: bool


@dataclass(frozen=True)
class LoadCall:
    kernel: FdInfo | None
    initrd: FdInfo | None
    cmdline: bytes | None
    flags: int


def _fd_info(fd: int) -> FdInfo | None:
    if fd < 0:
        return None
    stat = os.fstat(fd)
    return FdInfo(
        path=os.readlink(f"/proc/self/fd/{fd}"),
        inode=(stat.st_dev, stat.st_ino),
        read_only=fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY,
        cloexec=bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
    )


@dataclass
class RecordingIO(SimulatedKernelIO):
    """SimulatedKernelIO that records the reads, writes and syscalls the client made."""

    reads: list[str] = field(default_factory=list)  # path relative to the multikernel root
    writes: list[tuple[str, bytes]] = field(default_factory=list)  # path relative to the multikernel root
    loads: list[LoadCall] = field(default_factory=list)
    reboots: list[tuple[int, int]] = field(default_factory=list)
    fail_next: int | None = None  # errno the next syscall returns

    def __init__(self, kernel: SimulatedKernel) -> None:
        super().__init__(kernel)
        self.reads, self.writes, self.loads, self.reboots, self.fail_next = [], [], [], [], None

    def read(self, path: str) -> bytes:
        self.reads.append(path.removeprefix(SYSFS_ROOT + "/"))
        return super().read(path)

    def read_each(self, paths: Sequence[str]) -> list[bytes | None]:
        return read_one_by_one(self, paths)  # each recorded by read()

    def write_once(self, path: str, data: bytes) -> None:
        self.writes.append((path.removeprefix(SYSFS_ROOT + "/"), data))
        super().write_once(path, data)

    def _fault(self) -> None:
        if self.fail_next is not None:
            code, self.fail_next = self.fail_next, None
            raise KernelError(code, f"injected {os.strerror(code)}")

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
        self.loads.append(LoadCall(_fd_info(kernel_fd), _fd_info(initrd_fd), cmdline, flags))
        self._fault()
        super().kexec_file_load(kernel_fd, initrd_fd, cmdline, flags)

    def reboot(self, cmd: int, mk_id: int) -> None:
        self.reboots.append((cmd, mk_id))
        self._fault()
        super().reboot(cmd, mk_id)


class RealKernelView(RecordingIO):
    """The simulator as a real kernel shows itself: without the simulator's own /proc/mk-sim files."""

    def read(self, path: str) -> bytes:
        if path.startswith("/proc/mk-sim"):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return super().read(path)


@dataclass
class Host:
    backend: HostBackend
    io: RecordingIO
    kernel: SimulatedKernel
    settings: Settings


MakeHost = Callable[..., Host]


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[MakeHost]:
    built: list[Host] = []

    def make(
        profile: Literal["rfc-v2", "tree"] = "tree", *, machine: str = "x86_64", real_view: bool = False,
        **simulator: object,
    ) -> Host:
        base = tmp_path / profile
        sim: dict[str, object] = {
            "kernel_profile": profile,
            "cpus": 4,
            "numa_nodes": 2,
            "pool_base": POOL_BASE,
            "pool_bytes": 4 * GiB,
            "devices": ["0000:01:00.0", "uart0"],
            "halt_ack_timeout_s": 0.05,
        }
        sim.update(simulator)
        settings = Settings.model_validate({"daemon": {"state_dir": str(base / "state")}, "simulator": sim})
        kernel = SimulatedKernel(settings.simulator, settings.simulator_state_path)
        io = RealKernelView(kernel) if real_view else RecordingIO(kernel)
        backend = HostBackend(settings, io, machine=machine, poll_interval_s=0.01)
        host = Host(backend, io, kernel, settings)
        built.append(host)
        return host

    yield make
    for host in built:
        host.backend.close()
        host.kernel.close()


@pytest.fixture
def tree(make_host: MakeHost) -> Host:
    return make_host("tree")


@pytest.fixture
def v2(make_host: MakeHost) -> Host:
    return make_host("rfc-v2")


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    directory = tmp_path / "images"
    directory.mkdir()
    return {
        "kernel": imagegen.write_file(directory / "vmlinux", imagegen.vmlinux()),
        "bzimage": imagegen.write_file(directory / "bzImage", imagegen.bzimage()),
        "initrd": imagegen.write_file(directory / "initrd.img", imagegen.initrd(size=8192)),
    }
