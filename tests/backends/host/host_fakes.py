"""A fake multikernel kernel for the host backend tests: sysfs files that react to writes, a
syscall shim that records and checks every argument, and fake /proc and /sys trees.

The fake is one object playing both roles the real kernel plays: `FileOps` (what a write to
kernfs does) and `Syscalls` (kexec_file_load, reboot). Its rules are the spec's, reduced to what
the tests exercise.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mkd.backends.host.backend import HostBackend
from mkd.backends.host.syscalls import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.config import Settings
from mkd.devicetree.build import build_instance_tree, build_root_tree, v2_device_tree_source
from mkd.devicetree.fdt import DtNode, open_dtb
from mkd.errors import KernelError
from mkd.kernel_types import KernelInstance, KernelProfile, MemChunk, PoolSpec
from mkd.kexec.flags import KEXEC_FILE_NO_INITRAMFS, KEXEC_FILE_UNLOAD, KEXEC_MULTIKERNEL, kexec_get_mk_id

GiB = 1 << 30
MiB = 1 << 20
V2_POOL_BASE = 0x1_0000_0000
V2_POOL_BYTES = 4 * GiB
TREE_CHUNK_BASE = 0x2_0000_0000


@dataclass(frozen=True)
class FdInfo:
    """What an fd passed to the shim pointed at, captured during the call."""

    path: str
    inode: tuple[int, int]
    read_only: bool
    cloexec: bool


@dataclass(frozen=True)
class LoadCall:
    kernel: FdInfo | None
    initrd: FdInfo | None
    kernel_fd: int
    initrd_fd: int
    cmdline: bytes | None
    flags: int


@dataclass
class FakeInstance:
    id: int
    name: str
    status: str
    cpus: list[int]
    memory: list[MemChunk]
    devices: list[str]
    kimage: bool = False

    @property
    def memory_bytes(self) -> int:
        return sum(chunk.bytes for chunk in self.memory)


@dataclass
class FakeTx:
    id: int
    status: str
    created: list[str] = field(default_factory=list)


def _fd_info(fd: int) -> FdInfo | None:
    if fd < 0:
        return None
    try:
        stat = os.fstat(fd)
    except OSError:
        return None
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    return FdInfo(
        path=os.readlink(f"/proc/self/fd/{fd}"),
        inode=(stat.st_dev, stat.st_ino),
        read_only=flags & os.O_ACCMODE == os.O_RDONLY,
        cloexec=bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
    )


def _props(node: DtNode) -> dict[str, bytes]:
    return dict(node.properties())


def _u32s(value: bytes) -> list[int]:
    return [cell for (cell,) in struct.iter_unpack(">I", value)]


def _u64s(value: bytes) -> list[int]:
    return [cell for (cell,) in struct.iter_unpack(">Q", value)]


class FakeKernel:
    """A multikernel kernel reduced to its sysfs files, /proc/iomem, /proc/kimage and syscalls."""

    def __init__(self, root: Path, proc: Path, profile: KernelProfile) -> None:
        self.root = root
        self.proc = proc
        self.profile = profile
        self.instances: dict[str, FakeInstance] = {}
        self.pool_cpus: list[int] = []
        self.pool_chunks: list[MemChunk] = []
        self.pool_devices: list[str] = []
        self.tx_counter = 1  # spec 5.4: pre-incremented, the first transaction is tx_2
        self.txs: dict[int, FakeTx] = {}
        self.loads: list[LoadCall] = []
        self.reboots: list[tuple[int, int]] = []
        self.writes: list[tuple[str, bytes]] = []
        self.fail_next: int | None = None  # errno the next syscall returns (fault injection)
        self.skip_v2: set[str] = set()  # v2 instances the fake "skips" as the real one may
        self.withhold_cpus: set[int] = set()  # tree CPUs the pool "cannot give" (spec 5.3)
        (root / "instances").mkdir(parents=True)
        if profile == "tree":
            (root / "overlays").mkdir()
            (root / "overlays" / "new").write_bytes(b"")
        self._render()

    # -- sysfs rendering --------------------------------------------------------------------

    def _render(self) -> None:
        if self.profile == "tree":
            spec = None
            if self.pool_cpus or self.pool_chunks:
                spec = PoolSpec(
                    cpus=tuple(self.pool_cpus),
                    memory_base=self.pool_chunks[0].base if self.pool_chunks else 0,
                    memory_bytes=sum(chunk.bytes for chunk in self.pool_chunks),
                    devices=tuple(self.pool_devices),
                )
            lent = {cpu for inst in self.instances.values() for cpu in inst.cpus}
            blob = build_root_tree(
                "tree",
                spec,
                chunks=self.pool_chunks,
                free_cpus=[cpu for cpu in self.pool_cpus if cpu not in lent],
            )
            (self.root / "device_tree").write_bytes(blob)
        else:
            (self.root / "device_tree").write_text("Write multikernel device tree here to propagate to instances\n")
        instances_dir = self.root / "instances"
        for entry in instances_dir.iterdir():
            if entry.name not in self.instances:
                shutil.rmtree(entry)
        for inst in self.instances.values():
            directory = instances_dir / inst.name
            directory.mkdir(exist_ok=True)
            (directory / "id").write_text(f"{inst.id}\n")
            (directory / "status").write_text(f"{inst.status}\n")
            view = self.view(inst)
            if self.profile == "tree":
                (directory / "device_tree").write_bytes(build_instance_tree("tree", view))
            else:
                (directory / "device_tree_source").write_text(v2_device_tree_source(view))
        self._render_proc()

    def _render_proc(self) -> None:
        lines = []
        if self.profile == "rfc-v2":
            end = V2_POOL_BASE + V2_POOL_BYTES - 1
            lines.append(f"{V2_POOL_BASE:08x}-{end:08x} : Multikernel Memory Pool")
        for inst in sorted(self.instances.values(), key=lambda inst: inst.id):
            for n, chunk in enumerate(inst.memory):
                end = chunk.base + chunk.bytes - 1
                lines.append(f"  {chunk.base:08x}-{end:08x} : mk-instance-{inst.id}-{inst.name}-region-{n}")
        (self.proc / "iomem").write_text("00000000-00000fff : Reserved\n" + "\n".join(lines) + "\n")
        rows = ["MK_ID  Type        Start Address   Segments", "-" * 44]
        loaded = [inst for inst in self.instances.values() if inst.kimage]
        for inst in sorted(loaded, key=lambda inst: inst.id):
            rows.append(f"{inst.id:5d}  {'multikernel':<10} 0x{0x1000 * inst.id:012x} {4:8d}")
        if not loaded and self.profile == "rfc-v2":
            rows.append("No kimages loaded")
        (self.proc / "kimage").write_text("\n".join(rows) + "\n")

    def view(self, inst: FakeInstance) -> KernelInstance:
        return KernelInstance(
            id=inst.id,
            name=inst.name,
            kernel_state=inst.status,
            cpus=tuple(inst.cpus),
            memory=tuple(inst.memory),
            memory_bytes=inst.memory_bytes,
            llc_way_mask=None,
            devices=tuple(inst.devices),
            kimage=None,
        )

    def by_id(self, mk_id: int) -> FakeInstance | None:
        return next((inst for inst in self.instances.values() if inst.id == mk_id), None)

    # -- memory -----------------------------------------------------------------------------

    def _pool_ranges(self) -> list[MemChunk]:
        if self.profile == "rfc-v2":
            return [MemChunk(V2_POOL_BASE, V2_POOL_BYTES)]
        return list(self.pool_chunks)

    def free_bytes(self) -> int:
        used = sum(inst.memory_bytes for inst in self.instances.values())
        return sum(chunk.bytes for chunk in self._pool_ranges()) - used

    def _carve(self, size: int) -> list[MemChunk] | None:
        taken = sorted((c.base, c.base + c.bytes) for inst in self.instances.values() for c in inst.memory)
        for chunk in self._pool_ranges():
            cursor = chunk.base
            for start, end in taken:
                if end <= cursor or start >= chunk.base + chunk.bytes:
                    continue
                if start - cursor >= size:
                    break
                cursor = max(cursor, end)
            if chunk.base + chunk.bytes - cursor >= size:
                return [MemChunk(cursor, size)]
        return None

    # -- FileOps ----------------------------------------------------------------------------

    def write_once(self, path: Path, data: bytes) -> None:
        relative = path.relative_to(self.root).as_posix()
        self.writes.append((relative, data))
        if relative == "device_tree":
            self._write_root_tree(data)
        elif relative == "overlays/new" and self.profile == "tree":
            self._write_overlay(data)
        else:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        self._render()

    def rmdir(self, path: Path) -> None:
        parts = path.relative_to(self.root).parts
        if len(parts) == 2 and parts[0] == "instances" and self.profile == "rfc-v2":
            inst = self.instances.get(parts[1])
            if inst is None:
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            if inst.status in ("loading", "active"):  # spec 1.1
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
            del self.instances[inst.name]
        elif len(parts) == 2 and parts[0] == "overlays" and parts[1].startswith("tx_"):
            tx = self.txs.get(int(parts[1][3:]))
            if tx is None or tx.status == "removed":
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            for name in reversed(tx.created):
                inst = self.instances.get(name)
                if inst is not None and inst.status in ("loaded", "active"):
                    tx.status = "failed"
                    self._render_tx(tx)
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
                self.instances.pop(name, None)
            del self.txs[tx.id]
            shutil.rmtree(self.root / "overlays" / f"tx_{tx.id}")
        else:
            raise OSError(errno.EPERM, os.strerror(errno.EPERM), str(path))
        self._render()

    def _write_root_tree(self, data: bytes) -> None:
        root = open_dtb(data)
        if self.profile == "rfc-v2":  # spec 5.2
            instances = root.child("instances")
            if instances is None:
                raise OSError(errno.EINVAL, "no /instances")
            for node in instances.children():
                props = _props(node)
                resources = node.child("resources")
                res = _props(resources) if resources is not None else {}
                mk_id = _u32s(props["id"])[0] if "id" in props else None
                size = _u32s(res["memory-bytes"])[0] if len(res.get("memory-bytes", b"")) == 4 else 0
                if mk_id is None or node.name in self.instances or node.name in self.skip_v2:
                    continue
                if self.by_id(mk_id) is not None:
                    continue
                memory = self._carve(size) if size else []
                if memory is None:
                    continue
                cpus = _u32s(res["cpus"]) if "cpus" in res else []
                self.instances[node.name] = FakeInstance(mk_id, node.name, "ready", cpus, memory, [])
            return
        # tree baseline, spec 5.1
        if self.pool_cpus or self.pool_chunks:
            raise OSError(errno.EBUSY, "baseline already applied")
        resources = root.child("resources")
        if resources is None:
            raise OSError(errno.EINVAL, "no /resources")
        self.pool_cpus = _u64s(_props(resources)["cpus"])
        base = TREE_CHUNK_BASE
        for node in resources.children():
            if node.unit_name == "memory":
                size = _u64s(_props(node)["size"])[0]
                self.pool_chunks.append(MemChunk(base, size, 0))
                base += size

    # -- overlays (spec 5.4) ----------------------------------------------------------------

    def _write_overlay(self, data: bytes) -> None:
        root = open_dtb(data)
        self.tx_counter += 1
        tx = FakeTx(self.tx_counter, "applied")
        self.txs[tx.id] = tx
        try:
            for fragment in root.children():
                target = _props(fragment)["target-path"].rstrip(b"\0").decode()
                overlay = fragment.child("__overlay__")
                assert overlay is not None
                for op in overlay.children():
                    self._apply_op(tx, target, op)
        except OSError:
            tx.status = "failed"
        self._render_tx(tx, data)

    def _render_tx(self, tx: FakeTx, dtbo: bytes | None = None) -> None:
        directory = self.root / "overlays" / f"tx_{tx.id}"
        directory.mkdir(exist_ok=True)
        (directory / "id").write_text(f"{tx.id}\n")
        (directory / "status").write_text(f"{tx.status}\n")
        (directory / "instance").write_text("unknown\n")
        (directory / "resources").write_text("unknown\n")
        if dtbo is not None:
            (directory / "dtbo").write_bytes(dtbo)

    def _apply_op(self, tx: FakeTx, target: str, op: DtNode) -> None:
        name = op.unit_name
        props = _props(op)
        if name == "instance-create":
            self._instance_create(tx, op, props)
        elif name == "instance-remove":
            inst = self.instances.get(props["instance-name"].rstrip(b"\0").decode())
            if inst is None:
                raise OSError(errno.ENOENT, "unknown")
            if inst.status in ("loaded", "active"):
                raise OSError(errno.EBUSY, "busy")
            del self.instances[inst.name]
        elif target == "/resources":
            self._resources_op(name, op)
        elif target.startswith("/instances/"):
            inst = self.instances.get(target.removeprefix("/instances/"))
            if inst is None:
                raise OSError(errno.ENOENT, "unknown")
            self._instance_op(inst, name, op)
        else:
            raise OSError(errno.EINVAL, "bad target")

    def _instance_create(self, tx: FakeTx, op: DtNode, props: dict[str, bytes]) -> None:
        name = props["instance-name"].rstrip(b"\0").decode()
        mk_id = _u32s(props["id"])[0]
        if name in self.instances or self.by_id(mk_id) is not None:
            raise OSError(errno.EEXIST, "exists")
        resources = op.child("resources")
        res = _props(resources) if resources is not None else {}
        size = _u64s(res["memory-bytes"])[0] if "memory-bytes" in res else 0
        if size > self.free_bytes():
            raise OSError(errno.ENOMEM, "pool")
        memory = self._carve(size) if size else []
        if memory is None:
            raise OSError(errno.ENOMEM, "pool")
        lent = {cpu for inst in self.instances.values() for cpu in inst.cpus}
        wanted = _u64s(res["cpus"]) if "cpus" in res else []
        free = [cpu for cpu in self.pool_cpus if cpu not in lent and cpu not in self.withhold_cpus]
        # spec 5.3: CPUs not free in the pool are only logged; the instance gets none of them.
        cpus = wanted if all(cpu in free for cpu in wanted) else []
        self.instances[name] = FakeInstance(mk_id, name, "ready", cpus, memory, [])
        tx.created.append(name)

    def _resources_op(self, name: str, op: DtNode) -> None:
        items = [_props(item) for item in op.children()]
        if name == "cpu-add":
            self.pool_cpus += [_u64s(item["reg"])[0] for item in items]
        elif name == "cpu-remove":
            lent = {cpu for inst in self.instances.values() for cpu in inst.cpus}
            for item in items:
                cpu = _u64s(item["reg"])[0]
                if cpu in lent or cpu not in self.pool_cpus:
                    raise OSError(errno.EBUSY, "cpu busy")
                self.pool_cpus.remove(cpu)
        elif name == "memory-add":
            base = max((c.base + c.bytes for c in self.pool_chunks), default=TREE_CHUNK_BASE)
            for item in items:
                size = _u64s(item["size"])[0]
                self.pool_chunks.append(MemChunk(base, size, 0))
                base += size
        elif name == "memory-remove":
            for item in items:
                base, size = _u64s(item["reg"])
                chunk = next((c for c in self.pool_chunks if c.base == base and c.bytes == size), None)
                if chunk is None:
                    raise OSError(errno.EINVAL, "not a chunk")
                self.pool_chunks.remove(chunk)
        elif name == "device-add":
            self.pool_devices += [self._device_name(item) for item in items]
        elif name == "device-remove":
            for item in items:
                self.pool_devices.remove(self._device_name(item))

    @staticmethod
    def _device_name(item: dict[str, bytes]) -> str:
        value = item.get("pci-id") or item["device-name"]
        return value.rstrip(b"\0").decode()

    def _instance_op(self, inst: FakeInstance, name: str, op: DtNode) -> None:
        items = [_props(item) for item in op.children()]
        if name == "cpu-add":
            inst.cpus += [_u64s(item["reg"])[0] for item in items]
        elif name == "cpu-remove":
            for item in items:
                inst.cpus.remove(_u64s(item["reg"])[0])
        elif name == "memory-add":
            size = _u64s(items[0]["size"])[0]
            if size > self.free_bytes():
                raise OSError(errno.ENOMEM, "pool")
            carved = self._carve(size)
            assert carved is not None
            inst.memory += carved
        elif name == "memory-remove":
            for item in items:
                base, size = _u64s(item["reg"])
                chunk = next(c for c in inst.memory if c.base <= base < c.base + c.bytes)
                inst.memory.remove(chunk)
                if base > chunk.base:
                    inst.memory.append(MemChunk(chunk.base, base - chunk.base))

    # -- Syscalls ---------------------------------------------------------------------------

    def _fault(self) -> None:
        if self.fail_next is not None:
            code, self.fail_next = self.fail_next, None
            raise KernelError(code, f"injected {errno.errorcode[code]}")

    def kexec_file_load(self, kernel_fd: int, initrd_fd: int, cmdline: bytes | None, flags: int) -> None:
        call = LoadCall(_fd_info(kernel_fd), _fd_info(initrd_fd), kernel_fd, initrd_fd, cmdline, flags)
        self.loads.append(call)
        self._fault()
        mk_id = kexec_get_mk_id(flags)
        if not flags & KEXEC_MULTIKERNEL or mk_id <= 0:
            raise KernelError(errno.EINVAL, "mk_id <= 0")
        inst = self.by_id(mk_id)
        if flags & KEXEC_FILE_UNLOAD:  # spec 2.4 step 2
            if inst is None or not inst.kimage:
                raise KernelError(errno.ENOENT, "no kimage")
            inst.kimage, inst.status = False, "ready"
            self._render()
            return
        if inst is None:
            raise KernelError(errno.ENOENT, "no instance")
        if inst.kimage:
            raise KernelError(errno.EBUSY, "has kimage")
        if call.kernel is None or not call.kernel.read_only:
            raise KernelError(errno.EBADF, "kernel fd")
        if not flags & KEXEC_FILE_NO_INITRAMFS and (call.initrd is None or not call.initrd.read_only):
            raise KernelError(errno.EBADF, "initrd fd")
        if cmdline is not None and (not cmdline or cmdline[-1:] != b"\0"):
            raise KernelError(errno.EINVAL, "cmdline must end in NUL")
        inst.kimage = True
        inst.status = "loaded" if self.profile == "tree" else "loading"
        self._render()

    def reboot(self, cmd: int, mk_id: int) -> None:
        self.reboots.append((cmd, mk_id))
        self._fault()
        inst = self.by_id(mk_id)
        if cmd == LINUX_REBOOT_CMD_MULTIKERNEL:  # spec 6.2 start
            if inst is None or not inst.kimage:
                raise KernelError(errno.EINVAL, "no kimage")
            if self.profile == "tree":
                if inst.status != "loaded":
                    raise KernelError(errno.EBUSY, "not loaded")
                inst.status = "active"
        elif cmd in (LINUX_REBOOT_CMD_MULTIKERNEL_HALT, LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE):
            if self.profile != "tree":
                raise KernelError(errno.EINVAL, "unknown command")
            if inst is None:
                raise KernelError(errno.ENOENT, "unknown")
            allowed = ("active",) if cmd == LINUX_REBOOT_CMD_MULTIKERNEL_HALT else ("active", "loaded")
            if inst.status not in allowed:
                raise KernelError(errno.EINVAL, "state")
            inst.status = "loaded"
        else:
            raise KernelError(errno.EINVAL, "unknown command")
        self._render()

    # -- the kernel acting on its own -------------------------------------------------------

    def set_status(self, name: str, status: str) -> None:
        self.instances[name].status = status
        self._render()


def make_fake_proc(proc: Path) -> None:
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:       32768000 kB\nMemFree:         1000 kB\n")
    cpuinfo = "".join(f"processor\t: {n}\napicid\t\t: {n * 2}\n\n" for n in range(4))
    (proc / "cpuinfo").write_text(cpuinfo)


def make_fake_sys(sys_root: Path) -> None:
    cpu_dir = sys_root / "devices" / "system" / "cpu"
    cpu_dir.mkdir(parents=True)
    (cpu_dir / "present").write_text("0-3\n")
    for n in range(4):
        for index, (level, cache_id) in enumerate(((1, n), (2, n), (3, n // 2))):
            directory = cpu_dir / f"cpu{n}" / "cache" / f"index{index}"
            directory.mkdir(parents=True)
            (directory / "level").write_text(f"{level}\n")
            (directory / "id").write_text(f"{cache_id}\n")
    for node, cpus in ((0, "0-1"), (1, "2-3")):
        directory = sys_root / "devices" / "system" / "node" / f"node{node}"
        directory.mkdir(parents=True)
        (directory / "cpulist").write_text(f"{cpus}\n")
    pci = sys_root / "bus" / "pci" / "devices" / "0000:01:00.0"
    pci.mkdir(parents=True)
    (pci / "vendor").write_text("0x8086\n")
    (pci / "device").write_text("0x10fb\n")
    (pci / "numa_node").write_text("1\n")
    resctrl = sys_root / "fs" / "resctrl" / "info" / "L3"
    resctrl.mkdir(parents=True)
    (resctrl / "cbm_mask").write_text("fff\n")


@dataclass
class Host:
    backend: HostBackend
    kernel: FakeKernel
    settings: Settings
    sysfs: Path
    proc: Path
    sys_root: Path


MakeHost = Callable[..., Host]
