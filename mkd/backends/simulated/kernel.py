"""The simulated multikernel kernel: one object, thread-safe, persisted after every mutation.

Rules live in the modules this one calls (pool_rules, instance_rules, kexec_syscall, reboot,
overlays, sysfs_dt, hotplug, states); this class adds what a kernel adds around them: locking (the kexec
mutex, spec 2.2), the asynchronous work of running spawns, the console device and the state file.

Under `tree` (the v7.0-mk2 release, spec 8) nothing is pushed to `watch()`: the kernel raises no
notification (8.1.2), so a client polls the status files. What a running spawn does on its own
(panic, poweroff, reboot, halt, hang: `[simulator] faults`, or `spawn_exit()`) is stored as a
time and applied when the kernel is next looked at, so 2,047 running spawns cost no threads.
"""

from __future__ import annotations

import errno
import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mkd.backends.simulated import (
    boot_log,
    boot_tree,
    instance_rules,
    kexec_syscall,
    overlays,
    pool_rules,
    reboot,
    sysfs_dt,
)
from mkd.backends.simulated.events import EventHub, EventStream
from mkd.backends.simulated.faults import Faults, SpawnEnd
from mkd.backends.simulated.global_pool import GlobalPool, Ram
from mkd.backends.simulated.hotplug import spawn_answers
from mkd.backends.simulated.machine import build_topology, node_memory_ranges
from mkd.backends.simulated.mktty import ConsoleTarget, Mktty
from mkd.backends.simulated.model import InstanceRecord, KernelModel, OverlayTx, SpawnRecord
from mkd.backends.simulated.overlay_ops import OpContext
from mkd.backends.simulated.persistence import StateStore, model_from_json, model_to_json
from mkd.backends.simulated.spawn_timeline import SpawnTimeline, arm_end, hung, print_up_to, printed_by
from mkd.backends.simulated.states import KEvent, KState, status_string, transition
from mkd.backends.simulated.views import chunk_nodes, id_file, instance_view, pool_view, status_file
from mkd.backends.simulated.workqueue import Workqueue
from mkd.config import SimulatorSettings
from mkd.devicetree.build import build_instance_tree
from mkd.errors import KernelError
from mkd.kernel_types import KernelEvent, KernelInstance, LoadRequest, PoolState, Topology
from mkd.kexec.flags import KEXEC_FILE_FLAGS, kexec_get_mk_id
from mkd.kexec.kexec_file import KexecEnv
from mkd.kexec.proc_kimage import render_proc_kimage

_Rendered = TypeVar("_Rendered")
# What the status file holds for each state, by profile (spec 6.1).
_STATUS_BYTES = {profile: {state: f"{status_string(profile, state)}\n".encode() for state in KState}
                 for profile in ("tree", "rfc-v2")}

MK_SYS_HEARTBEAT = 0x3001
MK_SYS_HALTED = 0x3004

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpawnStatus:
    """A running simulated spawn, as its MK_SYS_HEARTBEAT ticks show it (spec 6.3; the tree
    release has no heartbeat sender, spec 8.2.2, so there it never ticks)."""

    running: bool
    started_at: float
    heartbeats: int
    last_heartbeat: float | None


def _empty_model(settings: SimulatorSettings) -> KernelModel:
    if settings.kernel_profile == "rfc-v2":
        return KernelModel(profile="rfc-v2", pool=pool_rules.boot_pool(settings), ram=None)
    ram = Ram.for_nodes(node_memory_ranges(settings), floor=min(settings.pool_base, settings.memory_bytes // 2))
    return KernelModel(profile="tree", pool=GlobalPool(), ram=ram)


def _clone(model: KernelModel, settings: SimulatorSettings) -> KernelModel:
    return model_from_json(model_to_json(model, settings))


def _sysfs_parts(path: str) -> list[str]:
    """A path under /sys/fs/multikernel as its components (absolute or relative)."""
    return [part for part in path.removeprefix("/sys/fs/multikernel").split("/") if part]


class SimulatedKernel:
    def __init__(self, settings: SimulatorSettings, state_path: Path | None, faults: Faults | None = None) -> None:
        self.settings = settings
        self.profile = settings.kernel_profile
        self.state_path = state_path
        self.faults = faults if faults is not None else Faults(**settings.faults)
        self.topology: Topology = build_topology(settings)
        self.events = EventHub()
        self.kexec_mutex = threading.Lock()  # spec 2.2 step 3: a busy mutex is EBUSY, not a wait
        self._lock = threading.RLock()  # guards the model
        # Serialises whatever changes resources (overlays, the baseline write):
        # an overlay waiting for a spawn's ACK lets readers in but no other change (spec 8.7).
        self._resources = threading.Lock()
        self._closing = threading.Event()
        self._env = KexecEnv.from_settings(settings)
        self._state_file = StateStore(state_path, settings) if state_path is not None else None
        loaded = self._state_file.load() if self._state_file is not None else None
        self._model = loaded if loaded is not None else _empty_model(settings)
        self._work = Workqueue(f"mk-sim-{self.profile}")
        # The kernel's wall clock: what running spawns did on their own is settled against it.
        # Tests may replace it to step time instead of sleeping.
        self.clock: Callable[[], float] = time.time
        self.console = Mktty(self)  # /dev/mktty (spec 8.8)
        self._timeline = SpawnTimeline()
        for inst in self._model.instances.values():
            if inst.spawn is not None:
                self._timeline.schedule(inst.id, inst.spawn)
        self._names: dict[str, int] = {}  # instance name -> id, see find_named
        self._device_tree_log: list[str] = []  # what the last v2 device_tree write logged (5.2)
        # Whole-kernel files (/proc/iomem, /proc/kimage, the pool DTB) rendered once per model
        # generation: a client re-reads them on every call, and with 1,000 instances each
        # rendering is thousands of rows. Every change to the model ends in _save(), which (or
        # an op that lets readers in while it waits) starts a new generation.
        self._generation = 0
        self._rendered: dict[str, tuple[int, object]] = {}
        # The same per instance (its device_tree file): a change names the instances it touched
        # (as for the state file), or None for any, which starts a new generation of them all.
        self._all_instances_generation = 0
        self._instance_generations: dict[int, int] = {}
        self._instance_trees: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        if loaded is None:
            self._save()

    # -- plumbing --------------------------------------------------------------------------------

    def _save(self, touched: Collection[int] | None = None) -> None:
        self._generation += 1
        if touched is None:
            self._all_instances_generation += 1
        else:
            for instance_id in touched:
                self._instance_generations[instance_id] = self._instance_generations.get(instance_id, 0) + 1
        if self._state_file is not None:
            self._state_file.save(self._model, touched)

    @contextmanager
    def _mutation(self, touched: Collection[int] | None = None) -> Iterator[KernelModel]:
        """Hold the model; write the state file once at the end, also after a refusal that changed
        something (the v2 dangling kimage). `touched` names the instances the call may change
        (None: any), so only those are serialised again."""
        with self._lock:
            self._settle()
            try:
                yield self._model
            finally:
                self._save(touched)

    def _rendering(self, name: str, render: Callable[[], _Rendered]) -> _Rendered:
        """`render()` of this generation of the model (the caller holds the settled model)."""
        cached = self._rendered.get(name)
        if cached is not None and cached[0] == self._generation:
            return cached[1]  # type: ignore[return-value]
        rendered = render()
        self._rendered[name] = (self._generation, rendered)
        return rendered

    @contextmanager
    def _settled(self) -> Iterator[KernelModel]:
        """Hold the model after applying what running spawns did on their own up to now."""
        with self._lock:
            self._settle()
            yield self._model

    def _settle(self) -> None:
        """Apply due spawn ends: print what the spawn printed, then MK_SYS_HALTED -> LOADED (spec 8.4)."""
        now = self.clock()
        touched: list[int] = []
        for instance_id, started_at in self._timeline.pop_due(now):
            inst = self._same_spawn(instance_id, started_at)
            if inst is None or inst.spawn is None:
                continue
            print_up_to(self.console, inst, now)
            if inst.spawn.ends_at is not None and inst.spawn.ends_at <= now:
                self._settle_halted(inst)
                touched.append(instance_id)
        if touched:
            self._save(touched)

    def _settle_halted(self, inst: InstanceRecord) -> None:
        before = inst.state
        inst.state = transition(self._model.profile, inst.state, KEvent.SPAWN_HALTED, instance_id=inst.id)
        how = inst.spawn.end if inst.spawn is not None else None
        inst.spawn = None
        log.info("multikernel: instance %d %s: %s -> loaded after MK_SYS_HALTED (%s)", inst.id, inst.name,
                 status_string(self.profile, before), how)

    @contextmanager
    def _kexec_lock(self) -> Iterator[None]:
        if not self.kexec_mutex.acquire(blocking=False):
            raise KernelError(errno.EBUSY, "kexec is busy (another load or exec is in progress)")
        try:
            yield
        finally:
            self.kexec_mutex.release()

    def _record(self, instance_id: int) -> InstanceRecord:
        inst = self._model.instances.get(instance_id)
        if inst is None:
            raise KernelError(errno.ENOENT, f"no instance {instance_id}", instance_id=instance_id)
        return inst

    def _view(self, inst: InstanceRecord) -> KernelInstance:
        return instance_view(self._model, inst, chunk_nodes(self._model, inst))

    def _by_name(self, name: str) -> InstanceRecord:
        inst = self.find_named(name)
        if inst is None:
            raise KernelError(errno.ENOENT, f"no instance named {name}")
        return inst

    def find_named(self, name: str) -> InstanceRecord | None:
        """The instance called `name`, in O(1): a client reads instances/<name>/* for each of up
        to 2,047 instances, and a scan per file would make one listing quadratic. The index is
        checked on every hit and rebuilt on a miss, so it is never stale."""
        with self._lock:
            instance_id = self._names.get(name)
            inst = self._model.instances.get(instance_id) if instance_id is not None else None
            if inst is not None and inst.name == name:
                return inst
            self._names = {record.name: record.id for record in self._model.instances.values()}
            instance_id = self._names.get(name)
            return self._model.instances.get(instance_id) if instance_id is not None else None

    # -- reading ---------------------------------------------------------------------------------

    def read_pool(self) -> PoolState:
        with self._settled():
            return pool_view(self._model)

    def list_instances(self) -> list[KernelInstance]:
        with self._settled():
            return [self._view(inst) for inst in sorted(self._model.instances.values(), key=lambda i: i.id)]

    def read_instance(self, instance_id: int) -> KernelInstance:
        with self._settled():
            return self._view(self._record(instance_id))

    def lowest_free_id(self) -> int:
        with self._lock:
            return self._model.lowest_free_id()

    def status_file(self, name: str) -> str:
        """/sys/fs/multikernel/instances/<name>/status. The lock and settle are spelled out rather
        than `_settled()`: the status poll reads this once per running instance each second."""
        with self._lock:
            self._settle()
            return status_file(self._model, self._by_name(name))

    def status_bytes(self, name: str) -> bytes:
        """status_file() encoded, from a table: no string is built per read."""
        with self._lock:
            self._settle()
            instance_id = self._names.get(name)  # find_named's index, inlined for the poll
            inst = self._model.instances.get(instance_id) if instance_id is not None else None
            if inst is None or inst.name != name:
                inst = self._by_name(name)
            return _STATUS_BYTES[self.profile][inst.state]

    def statuses_bytes(self, names: list[str]) -> list[bytes | None]:
        """status_bytes() of each name under one hold of the kernel; None where there is no such
        instance (any more)."""
        with self._lock:
            self._settle()
            table = _STATUS_BYTES[self.profile]
            found: list[bytes | None] = []
            index, instances = self._names, self._model.instances
            for name in names:
                instance_id = index.get(name)  # find_named's index, inlined for the poll
                inst = instances.get(instance_id) if instance_id is not None else None
                if inst is None or inst.name != name:
                    inst = self.find_named(name)
                found.append(None if inst is None else table[inst.state])
            return found

    def id_file(self, name: str) -> str:
        """/sys/fs/multikernel/instances/<name>/id."""
        with self._lock:
            self._settle()
            return id_file(self._by_name(name))

    def proc_kimage(self) -> str:
        """/proc/kimage (spec 2.6): every multikernel kimage, by id."""
        with self._settled():
            return self._rendering("kimage", self._render_proc_kimage)

    def _render_proc_kimage(self) -> str:
        rows = [
            (inst.id, "multikernel", inst.kimage.kimage.start, inst.kimage.nr_segments, "file", inst.kimage.cmdline)
            for inst in sorted(self._model.instances.values(), key=lambda i: i.id)
            if inst.kimage is not None
        ]
        return render_proc_kimage(self.profile, rows)

    # -- the file interface's reads (kernel_files.py dispatches paths to these) ------------------

    def instance_names(self) -> list[str]:
        """The directories under /sys/fs/multikernel/instances."""
        with self._lock:
            return sorted(inst.name for inst in self._model.instances.values())

    def read_instance_named(self, name: str) -> KernelInstance:
        """instances/<name> as the kernel's record of it (ENOENT when there is none)."""
        with self._lock:
            return self._view(self._by_name(name))

    def proc_iomem(self) -> str:
        """/proc/iomem (spec 3.1, 3.2): System RAM, the multikernel pool, each instance chunk."""
        with self._lock:
            return self._rendering("iomem", self._render_proc_iomem)

    def _render_proc_iomem(self) -> str:
        ram = self._env.system_ram
        rows: list[tuple[int, int, int, str]] = [(base, size, 0, "System RAM") for base, size in ram]
        pool = [(c.base, c.size) for c in self._model.pool.chunks]
        rows += [(base, size, 0, "Multikernel Memory Pool") for base, size in pool]
        for inst in self._model.instances.values():
            for n, (base, size) in enumerate(inst.chunks):
                rows.append((base, size, 1, f"mk-instance-{inst.id}-{inst.name}-region-{n}"))
        lines = [f"{'  ' * depth}{base:08x}-{base + size - 1:08x} : {name}" for base, size, depth, name in sorted(rows)]
        return "".join(line + "\n" for line in lines)

    def kimage_segments(self) -> str:
        """The simulator's own debug file: every kimage segment the real kernel keeps to itself
        (spec 2.6 shows only a count). One line per segment:
        `<mk_id> <index> <kind> <mem:#x> <memsz:#x> <bufsz:#x> <in_pool 0|1> <sha256>`."""
        with self._lock:
            return self._rendering("kimage_segments", self._render_kimage_segments)

    def _render_kimage_segments(self) -> str:
        lines = [
            f"{inst.id} {n} {seg.kind} {seg.mem:#x} {seg.memsz:#x} {seg.bufsz:#x} {int(seg.in_pool)} {seg.sha256}"
            for inst in sorted(self._model.instances.values(), key=lambda i: i.id)
            if inst.kimage is not None
            for n, seg in enumerate(inst.kimage.kimage.segments)
        ]
        return "".join(line + "\n" for line in lines)

    @property
    def loader_env(self) -> KexecEnv:
        """The build and machine facts the kernel's loaders run under."""
        return self._env

    def spawn_status(self, instance_id: int) -> SpawnStatus | None:
        """Heartbeats tick every heartbeat_interval_s while the spawn runs."""
        with self._settled():
            spawn = self._record(instance_id).spawn
            if spawn is None:
                return None
            interval = self.settings.heartbeat_interval_s
            beating = spawn.running and self.profile == "rfc-v2"  # tree: MK_SYS_HEARTBEAT has no sender
            ticks = math.floor(max(self.clock() - spawn.started_at, 0.0) / interval) if beating else 0
            last = spawn.started_at + ticks * interval if ticks else None
            return SpawnStatus(spawn.running, spawn.started_at, ticks, last)

    # -- instances ---------------------------------------------------------------------------------

    def rmdir_instance(self, name: str) -> None:
        """rmdir /sys/fs/multikernel/instances/<name> (spec 6.1): tree removes only via overlays."""
        if self.profile == "tree":
            raise KernelError(errno.EPERM, "instances are removed with overlays")
        with self._mutation() as model:
            inst = model.by_name(name)
            if inst is None:
                raise KernelError(errno.ENOENT, f"no instance named {name}")
            instance_rules.destroy(model, inst.id)

    def mkdir_instance(self, name: str) -> None:
        """mkdir under instances/ is refused in both generations (spec 6.1, vector 37)."""
        raise KernelError(errno.EPERM, f"cannot mkdir instances/{name}: instances come from device trees")

    # -- /sys/fs/multikernel/device_tree and overlays (spec 5, 6.1) --------------------------------

    def write_device_tree(self, data: bytes) -> int:
        """write(2) to device_tree: v2 defines instances (5.2), tree applies the baseline (5.1)."""
        with self._resources, self._mutation() as model:
            if self.profile == "rfc-v2":
                self._device_tree_log = sysfs_dt.write_v2_root(model, data, self.settings)
            else:
                candidate = _clone(model, self.settings)  # a refused baseline changes nothing
                sysfs_dt.write_tree_baseline(candidate, data, self.settings)
                self._model = candidate
            return len(data)

    def read_device_tree(self) -> bytes:
        """read(2) of device_tree: v2's fixed text, or the tree's binary pool DTB (5.1 "Read-back")."""
        with self._settled():
            return self._rendering("device_tree", lambda: sysfs_dt.read_root(self._model))

    def cpu_online(self, cpu: int) -> bool:
        """/sys/devices/system/cpu/cpu<N>/online (spec 4)."""
        if not 0 <= cpu < self.settings.cpus:
            raise KernelError(errno.ENOENT, f"no CPU {cpu}")
        with self._lock:
            return sysfs_dt.cpu_online(self._model, cpu)

    def overlay_new(self, dtbo: bytes, offset: int = 0) -> int:
        """write(2) to overlays/new (5.4): returns the new transaction's id, whatever its status."""
        self._require_overlays()
        with self._resources, self._settled() as model:
            touched: list[int] | None = None  # a refusal part-way: serialise everything again
            try:
                tx = overlays.new_transaction(self._op_context(model), dtbo, offset)
                touched = self._ids_named(op.instance for op in tx.applied)
                return tx.id
            finally:
                self._save(touched)

    def _op_context(self, model: KernelModel) -> OpContext:
        return OpContext(model, self.settings, self.faults, now=self.clock(), wait=self._wait_for_ack)

    def _wait_for_ack(self, seconds: float) -> None:
        """Wait out an ACK that does not come without holding the model (the caller holds it once,
        and `_resources`), so status reads and the spawns' own exits go on meanwhile."""
        self._generation += 1  # what the op changed so far is not what was rendered before it
        self._all_instances_generation += 1
        self._lock.release()
        try:
            self._closing.wait(seconds)
        finally:
            self._lock.acquire()

    def overlay_ids(self) -> list[int]:
        """The tx_<N> directories under overlays/."""
        self._require_overlays()
        with self._settled():
            return sorted(tx_id for tx_id, tx in self._model.overlays.items() if tx.status != "removed")

    def has_overlay(self, tx_id: int) -> bool:
        """overlays/tx_<N> exists (O(1): a client looks its files up on every overlay write)."""
        with self._settled():
            tx = self._model.overlays.get(tx_id) if self.profile == "tree" else None
            return tx is not None and tx.status != "removed"

    def tx_status(self, tx_id: int) -> str:
        """overlays/tx_<N>/status without the newline; a removed tx reads `removed`."""
        with self._settled():
            return self._tx(tx_id).status

    def tx_log(self, tx_id: int) -> str | None:
        """What the kernel logged (dmesg) when overlays/tx_<N> failed: "EBUSY: why"; the status
        file only says `failed`."""
        with self._settled():
            return self._tx(tx_id).error

    def tx_log_names(self) -> list[str]:
        """The transactions with a logged failure, as tx_<N> (the simulator's /proc/mk-sim/tx_log)."""
        with self._settled():
            return [f"tx_{tx.id}" for tx in self._model.overlays.values() if tx.error is not None]

    def device_tree_log(self) -> str:
        """Why the last v2 device_tree write skipped instances (spec 5.2: only logged), one
        `<name> <ERRNO> <reason>` per line; the simulator's /proc/mk-sim/device_tree_log."""
        with self._lock:
            return "".join(line + "\n" for line in self._device_tree_log)

    def tx_files(self, tx_id: int) -> dict[str, bytes]:
        """The files of overlays/tx_<N>: id, status, instance, resources, dtbo."""
        with self._settled():
            tx = self._tx(tx_id)
            if tx.status == "removed":
                raise KernelError(errno.ENOENT, f"no overlays/tx_{tx_id}")
            return overlays.tx_files(tx)

    def rmdir_tx(self, tx_id: int) -> None:
        """rmdir overlays/tx_<N>: roll the transaction back (5.4)."""
        with self._resources, self._settled() as model:
            tx = self._tx(tx_id)
            touched = self._ids_named(op.instance for op in tx.applied)
            try:
                overlays.rollback(self._op_context(model), tx)
            finally:
                self._save(touched)

    def _ids_named(self, names: Iterable[str | None]) -> list[int]:
        """Ids of the instances an overlay's ops changed; the state file re-serialises only those
        (instances it created have nothing serialised yet, removed ones are dropped)."""
        found = (self.find_named(name) for name in set(names) if name is not None)
        return [inst.id for inst in found if inst is not None]

    def mkdir(self, path: str) -> None:
        """mkdir anywhere under /sys/fs/multikernel is EPERM (6.1, 5.4); v2 has no overlays/ at all."""
        if self.profile == "rfc-v2" and _sysfs_parts(path)[:1] == ["overlays"]:
            raise KernelError(errno.ENOENT, "rfc-v2 has no overlays directory")
        raise KernelError(errno.EPERM, f"cannot mkdir {path}")

    def rmdir(self, path: str) -> None:
        """rmdir under /sys/fs/multikernel: instance dirs (v2), tx dirs (tree), else EPERM (6.1, 5.4)."""
        parts = _sysfs_parts(path)
        if len(parts) == 2 and parts[0] == "instances":
            self.rmdir_instance(parts[1])
            return
        if parts[:1] == ["overlays"]:
            self._require_overlays()
            if len(parts) == 2 and parts[1].startswith("tx_") and parts[1][3:].isdigit():
                self.rmdir_tx(int(parts[1][3:]))
                return
        raise KernelError(errno.EPERM, f"cannot rmdir {path}")

    def _require_overlays(self) -> None:
        if self.profile == "rfc-v2":
            raise KernelError(errno.ENOENT, "rfc-v2 has no /sys/fs/multikernel/overlays")

    def _tx(self, tx_id: int) -> OverlayTx:
        self._require_overlays()
        tx = self._model.overlays.get(tx_id)
        if tx is None:
            raise KernelError(errno.ENOENT, f"no overlays/tx_{tx_id}")
        return tx

    # -- kexec_file_load --------------------------------------------------------------------------

    def load(self, request: LoadRequest) -> KernelInstance | None:
        """kexec_file_load: generic checks (spec 2.2), then the profile's order."""
        self._require_cap_sys_boot()  # spec 2.2 step 1, unload included
        if request.flags & ~KEXEC_FILE_FLAGS:
            raise KernelError(errno.EINVAL, f"flags {request.flags:#x} have bits outside KEXEC_FILE_FLAGS")
        # bug_compat's single kexec_image slot can free another instance's kimage.
        touched = None if self.settings.bug_compat else [kexec_get_mk_id(request.flags)]
        with self._kexec_lock(), self._mutation(touched) as model:
            inst = kexec_syscall.kexec_file_load(model, request, self._env, self.settings, self.faults)
            return None if inst is None else self._view(inst)

    def kexec_file_load(
        self,
        kernel: Path | None,
        initrd: Path | None,
        cmdline: bytes | None,
        flags: int,
        *,
        kernel_sha256: str = "",
        initrd_sha256: str | None = None,
    ) -> int:
        """The raw syscall shape: files instead of fds; returns 0 or raises the errno."""
        self.load(LoadRequest(kernel, initrd, cmdline, flags, kernel_sha256, initrd_sha256))
        return 0

    # -- reboot ------------------------------------------------------------------------------------

    def reboot(
        self,
        cmd: int,
        mk_id: int,
        *,
        magic1: int = reboot.LINUX_REBOOT_MAGIC1,
        magic2: int = reboot.LINUX_REBOOT_MAGIC2,
    ) -> int:
        """reboot(magic1, magic2, cmd, &{mk_id}) for the multikernel commands (spec 6.2)."""
        self._require_cap_sys_boot()  # spec 6.2: before the magic check; lockdown does not apply
        reboot.check_magic(magic1, magic2)
        if cmd == reboot.LINUX_REBOOT_CMD_MULTIKERNEL:
            self._spawn(mk_id)
        elif cmd in (reboot.LINUX_REBOOT_CMD_MULTIKERNEL_HALT, reboot.LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE):
            if self.profile == "rfc-v2":
                raise KernelError(errno.EINVAL, "rfc-v2 has no halt", instance_id=mk_id)
            if cmd == reboot.LINUX_REBOOT_CMD_MULTIKERNEL_HALT:
                self._halt(mk_id)
            else:
                with self._mutation(touched=[mk_id]) as model:
                    reboot.force_halt(model, mk_id)
        else:
            raise KernelError(errno.EINVAL, f"unknown reboot command {cmd:#x}")
        return 0

    def _require_cap_sys_boot(self) -> None:
        if not self.settings.cap_sys_boot:
            raise KernelError(errno.EPERM, "the caller lacks CAP_SYS_BOOT")

    def _spawn(self, mk_id: int) -> None:
        with self._kexec_lock(), self._mutation(touched=[mk_id]) as model:
            if self.profile == "rfc-v2":
                inst = reboot.kexec_by_id_v2(model, mk_id, self.faults)
            else:
                inst = reboot.kexec_by_id_tree(model, mk_id, self.faults, self.settings, self._finalize)
                self._booted(inst)
            if self.faults.fail_after_start:
                started_at = inst.spawn.started_at if inst.spawn else 0.0
                self._work.queue_work(lambda: self._spawn_failed(mk_id, started_at))

    def _finalize(self, inst: InstanceRecord) -> SpawnRecord:
        """mk_manifest_finalize at exec (spec 8.9): the boot tree of this start, or ENOSPC."""
        assert inst.kimage is not None
        tree = boot_tree.build(self._model, inst, self.settings, inst.kimage.cmdline)
        enumerated = boot_tree.enumerated_cpus(self._model, inst, self.settings)
        return SpawnRecord(
            started_at=self.clock(),
            boot_tree=tree,
            boot_cpus=sorted(set(inst.cpus) | set(enumerated)),
            boot_devices=list(inst.devices),
        )

    def _booted(self, inst: InstanceRecord) -> None:
        """After a tree start: the ring was zeroed, the spawn prints its banner, faults are armed."""
        spawn = inst.spawn
        assert spawn is not None and inst.kimage is not None
        self.console.exec_reset(inst.id)  # input queued while LOADED is lost (spec 8.8.3)
        self.console.emit(
            inst.id, boot_log.boot_banner(inst.id, inst.name, inst.cpus, inst.chunks, inst.kimage.cmdline)
        )
        fault = self.faults.spawn(inst.name)
        if fault.after_start is not None:
            self._arm_end_now(inst, spawn, fault.after_start, spawn.started_at + fault.delay_s)

    def _arm_end_now(self, inst: InstanceRecord, spawn: SpawnRecord, how: SpawnEnd, at: float) -> None:
        arm_end(inst, spawn, how, at)
        self._timeline.schedule(inst.id, spawn)

    def _halt(self, mk_id: int) -> None:
        """Graceful halt: MK_SYS_SHUTDOWN, then wait for the ACK without holding the model."""
        with self._mutation(touched=[mk_id]) as model:
            inst = reboot.halt_check(model, mk_id)
            acks = self.faults.halt_ack and inst.spawn is not None and inst.spawn.running
            if self.profile == "tree":
                if self.console.ring_full(mk_id):  # MK_SYS_SHUTDOWN cannot be sent (spec 8.3.1)
                    raise KernelError(errno.ENOSPC, "the instance's IPI ring is full", instance_id=mk_id)
                acks = acks and spawn_answers(self._op_context(model), inst)
            if acks:
                reboot.halt_acked(model, inst)
                return
        self._closing.wait(self.settings.halt_ack_timeout_s)
        raise KernelError(errno.ETIMEDOUT, "no MK_SYS_SHUTDOWN_ACK from the spawn kernel", instance_id=mk_id)

    # -- the running spawn ---------------------------------------------------------------------------

    def spawn_halt_self(self, instance_id: int) -> None:
        """The spawn sends MK_SYS_HALTED; the host handles it later on its workqueue (spec 1.2)."""
        if self.profile == "tree":
            self.spawn_exit(instance_id, "halt")
            return
        with self._lock:
            spawn = self._record(instance_id).spawn
            if spawn is None or not spawn.running:
                raise KernelError(errno.EINVAL, "no running spawn", instance_id=instance_id)
            started_at = spawn.started_at
        self._work.queue_work(lambda: self._spawn_halted(instance_id, started_at))

    def spawn_exit(self, instance_id: int, how: SpawnEnd) -> None:
        """Tree: the running spawn panics, powers off, reboots, halts or hangs now (spec 8.2.2).

        No host call follows: a panic or exit settles the instance LOADED once MK_SYS_HALTED is
        handled (a panic `panic=N` seconds later), a hang keeps it ACTIVE and silent.
        """
        if self.profile != "tree":
            raise KernelError(errno.EINVAL, "only the tree profile models a spawn's own exit", instance_id=instance_id)
        with self._mutation(touched=[instance_id]):
            inst = self._record(instance_id)
            spawn = inst.spawn
            if spawn is None or not spawn.running or spawn.end is not None:
                raise KernelError(errno.EINVAL, "no running spawn", instance_id=instance_id)
            self._arm_end_now(inst, spawn, how, self.clock())
            self._settle()

    def spawn_print(self, instance_id: int, data: bytes) -> int:
        """Tree: the running spawn writes `data` to mktty0; returns the bytes a reader got (8.8.4)."""
        with self._settled():
            inst = self._record(instance_id)
            if inst.spawn is None or not inst.spawn.running:
                raise KernelError(errno.EINVAL, "no running spawn", instance_id=instance_id)
            print_up_to(self.console, inst, self.clock())
            return self.console.emit(instance_id, data)

    def spawn_console_input(self, instance_id: int) -> bytes:
        """What the running spawn has read from its console since it started (spec 8.8.3)."""
        with self._settled():
            self._record(instance_id)
        return self.console.received(instance_id)

    def boot_device_tree(self, instance_id: int) -> bytes:
        """The boot device tree the running spawn was started with (spec 8.9)."""
        with self._settled():
            spawn = self._record(instance_id).spawn
            if spawn is None or not spawn.boot_tree:
                raise KernelError(errno.ENOENT, "the instance is not running", instance_id=instance_id)
            return spawn.boot_tree

    def instance_device_tree(self, name: str) -> bytes:
        """/sys/fs/multikernel/instances/<name>/device_tree: the instance as the kernel holds it now."""
        with self._settled():
            inst = self._by_name(name)
            key = (self._all_instances_generation, inst.id, self._instance_generations.get(inst.id, 0))
            cached = self._instance_trees.get(name)
            if cached is not None and cached[0] == key:
                return cached[1]
            if len(self._instance_trees) > 2 * len(self._model.instances):
                self._instance_trees.clear()  # names of removed instances go now and then
            tree = build_instance_tree(self.profile, self._view(inst))
            self._instance_trees[name] = (key, tree)
            return tree

    def host_netdevs(self) -> list[tuple[str, bool]]:
        """The host's virtio-net netdevs (spec 8.6.5): `mk-<9 chars of the name>-<index>` and carrier.

        Carrier is on while the spawn runs and answers: the simulated spawn driver sets DRIVER_OK
        with both queues enabled as soon as it boots.
        """
        with self._settled() as model:
            context = self._op_context(model)
            return [
                (f"mk-{inst.name[:9]}-{index}", inst.state == KState.ACTIVE and spawn_answers(context, inst))
                for inst in sorted(model.instances.values(), key=lambda i: i.id)
                for index, device in enumerate(inst.virtio)
                if device.device_id == 1
            ]

    # -- the console device's kernel side (mktty.ConsoleHost) -----------------------------------------

    def console_target(self, instance_id: int) -> ConsoleTarget | None:
        with self._settled() as model:
            inst = model.instances.get(instance_id)
            if inst is None:
                return None
            spawn = inst.spawn
            consuming = (
                inst.state == KState.ACTIVE
                and spawn is not None
                and spawn.running
                and not hung(spawn, self.clock())
            )
            return ConsoleTarget(has_ring=inst.kimage is not None and bool(inst.cpus), consuming=consuming)

    def console_sync(self, instance_id: int) -> None:
        self.console_sync_all([instance_id])

    def console_sync_all(self, instance_ids: list[int]) -> None:
        """What each spawn printed, handed to the device in one batch (the ticker's call, once a
        second for every connected instance)."""
        with self._settled() as model:
            now = self.clock()
            connected = self.console.connected_among(instance_ids)
            outputs = []
            for instance_id in instance_ids:
                inst = model.instances.get(instance_id)
                if inst is not None and inst.spawn is not None:
                    data = printed_by(inst, now, connected=instance_id in connected)
                    if data:
                        outputs.append((instance_id, data))
            self.console.emit_all(outputs)

    def spawn_stop_silently(self, instance_id: int) -> None:
        """The spawn dies without notice: CPUs parked, state still ACTIVE (spec 6.2 recovery)."""
        with self._mutation(touched=[instance_id]):
            spawn = self._record(instance_id).spawn
            if spawn is None:
                raise KernelError(errno.EINVAL, "no running spawn", instance_id=instance_id)
            spawn.running = False

    def _same_spawn(self, instance_id: int, started_at: float) -> InstanceRecord | None:
        inst = self._model.instances.get(instance_id)
        if inst is None or inst.spawn is None or inst.spawn.started_at != started_at:
            return None  # the spawn this work was about is gone
        return inst

    def _spawn_halted(self, instance_id: int, started_at: float) -> None:
        with self._mutation(touched=[instance_id]) as model:
            inst = self._same_spawn(instance_id, started_at)
            if inst is None:
                return
            before = inst.state
            inst.state = transition(model.profile, inst.state, KEvent.SPAWN_HALTED, instance_id=instance_id)
            inst.spawn = None
            event = self._event(inst, before, f"spawn sent MK_SYS_HALTED ({MK_SYS_HALTED:#x})")
        self._publish(event)

    def _spawn_failed(self, instance_id: int, started_at: float) -> None:
        with self._mutation(touched=[instance_id]) as model:
            inst = self._same_spawn(instance_id, started_at)
            if inst is None:
                return
            before = inst.state
            inst.state = transition(model.profile, inst.state, KEvent.FAULT_FAIL, instance_id=instance_id)
            inst.failure = "spawn kernel failed after start (fault injection)"
            if inst.spawn is not None:
                inst.spawn.running = False
            event = self._event(inst, before, inst.failure)
        self._publish(event)

    def _publish(self, event: KernelEvent | None) -> None:
        """rfc-v2 pushes kernel-initiated changes; the tree release raises no notification (8.1.2)."""
        if event is not None and self.profile == "rfc-v2":
            self.events.publish(event)

    def _event(self, inst: InstanceRecord, before: KState, reason: str) -> KernelEvent | None:
        if inst.state == before:
            return None
        return KernelEvent(
            id=inst.id,
            name=inst.name,
            from_state=status_string(self.profile, before),
            to_state=status_string(self.profile, inst.state),
            reason=reason,
        )

    def watch(self) -> EventStream:
        return self.events.subscribe()

    def flush(self) -> None:
        """Wait for queued kernel work (spawn messages) to finish."""
        self._work.flush()

    def close(self) -> None:
        self._closing.set()
        self.console.close()
        self._work.stop()
        self.events.close()
        with self._lock:
            if self._state_file is not None:
                self._state_file.close()
                self._state_file = None  # a closed kernel changes no more state
