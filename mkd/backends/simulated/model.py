"""The simulated kernel's state: pool, instances, kimages. Plain data, no rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mkd.backends.simulated.global_pool import GlobalPool, Ram
from mkd.backends.simulated.states import KState
from mkd.kernel_types import KernelProfile, Kimage, PoolSpec
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.segments import SegmentSource


@dataclass
class KimageRecord:
    """A loaded kimage: what /proc/kimage, the spawn and kimage_free need."""

    mk_id: int
    kimage: Kimage
    sources: list[SegmentSource]  # kept load-time buffers, one per segment (spec 2.4 step 6)
    pool_allocations: list[tuple[int, int]]  # (addr, size) taken from the instance pool
    control_pages: list[tuple[int, int, bool]]  # (addr, size, in_pool), spec 3.4
    nr_segments: int  # real segments (kimage.segments also lists control pages)
    cmdline: bytes  # the kept command line, as copied from the caller
    kernel_pages: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, addr, size): manifest, ipi, kho_fdt


@dataclass
class SpawnRecord:
    """A simulated spawned kernel (started by reboot MULTIKERNEL).

    What the spawn does on its own is stored as times, and the kernel applies it when it is next
    looked at (no thread per spawn): `ends_at` is when MK_SYS_HALTED settles it LOADED (spec
    8.4), `hangs_at` when it stops answering and printing (spec 8.2.2 "hangs").
    """

    started_at: float  # time.time() of the spawn
    running: bool = True  # False: CPUs parked while the state still says ACTIVE
    ends_at: float | None = None
    end: str | None = None  # how it ends: panic, poweroff, reboot, halt (faults.SPAWN_ENDS)
    end_noticed_at: float | None = None  # when it panicked or ran poweroff (console output)
    hangs_at: float | None = None
    boot_tree: bytes = b""  # the boot device tree built at this start (spec 8.9)
    boot_cpus: list[int] = field(default_factory=list)  # CPU phys ids the spawn enumerated (8.9.2)
    boot_devices: list[str] = field(default_factory=list)  # devices that were nodes of its boot tree
    printed_s: int = 0  # console: uptime lines already printed
    end_printed: bool = False  # console: the panic trace or exit line is out
    drivers: dict[str, str] = field(default_factory=dict)  # device -> driver override (8.7.6)


@dataclass
class VirtioDevice:
    """A virtio device of an instance (`virtio/<name>@<n>`, spec 5.3, 8.6.5)."""

    name: str  # the node name, e.g. net@0
    device_id: int  # 1 = net, the only in-tree backend
    queues: int
    queue_size: int = 256


@dataclass
class InstanceRecord:
    id: int
    name: str
    state: KState
    cpus: list[int]  # tree: first is the boot CPU; v2: kept sorted (a cpumask)
    chunks: list[tuple[int, int]]  # the instance pool's chunks, in carving order
    pool: GenPool  # free space of the instance pool
    llc_way_mask: int | None = None
    devices: list[str] = field(default_factory=list)
    numa_node: int | None = None
    kimage: KimageRecord | None = None
    dangling_kimage: bool = False  # v2 bug-compatible error path (spec 2.3 note)
    failure: str | None = None
    spawn: SpawnRecord | None = None
    virtio: list[VirtioDevice] = field(default_factory=list)

    @property
    def memory_bytes(self) -> int:
        return sum(size for _, size in self.chunks)

    @property
    def has_kimage(self) -> bool:
        return self.kimage is not None or self.dangling_kimage


TxStatus = Literal["pending", "applied", "failed", "removed"]


@dataclass
class OverlayOp:
    """One applied item of an overlay transaction and what undoing it needs (spec 5.4)."""

    kind: str  # the op node: instance-create, cpu-add, memory-remove, ...
    target: str  # target-path of its fragment
    instance: str | None = None  # the instance it changed, by name
    cpu: int | None = None
    device: str | None = None
    chunks: list[tuple[int, int, int | None]] = field(default_factory=list)  # memory moved: base, size, node


@dataclass
class OverlayTx:
    """overlays/tx_<id> (spec 5.4): its files and the ops a rollback undoes, newest last."""

    id: int
    status: TxStatus
    instance: str  # the `instance` file: target-path of the first fragment, or "unknown"
    resources: str  # the `resources` file: the root `mk,resources` string, or "unknown"
    dtbo: bytes  # the blob as written
    applied: list[OverlayOp] = field(default_factory=list)
    error: str | None = None  # why applying or rolling back stopped (the kernel only logs it)


@dataclass
class KernelModel:
    profile: KernelProfile
    pool: GlobalPool
    ram: Ram | None  # tree only: where new pool chunks come from
    pool_spec: PoolSpec | None = None
    pool_cpus: list[int] = field(default_factory=list)  # baseline CPUs (free ∪ lent)
    pool_devices: list[str] = field(default_factory=list)
    pool_llc_way_mask: int | None = None
    pool_aliases: dict[str, str] = field(default_factory=dict)  # /aliases: alias -> device (spec 8.5.1)
    instances: dict[int, InstanceRecord] = field(default_factory=dict)
    kexec_image_slot: int | None = None  # v2 bug-compatible: mk_id installed as kexec_image
    next_tx: int = 1  # tree overlay transaction counter (pre-incremented: first is tx_2)
    overlays: dict[int, OverlayTx] = field(default_factory=dict)  # tree overlays/tx_<id>, by id

    def by_name(self, name: str) -> InstanceRecord | None:
        return next((inst for inst in self.instances.values() if inst.name == name), None)

    def lent_cpus(self) -> set[int]:
        return {cpu for inst in self.instances.values() for cpu in inst.cpus}

    def lent_devices(self) -> set[str]:
        return {dev for inst in self.instances.values() for dev in inst.devices}

    def lent_llc_ways(self) -> int:
        mask = 0
        for inst in self.instances.values():
            mask |= inst.llc_way_mask or 0
        return mask

    def free_cpus(self) -> list[int]:
        lent = self.lent_cpus()
        return [cpu for cpu in self.pool_cpus if cpu not in lent]

    def free_devices(self) -> list[str]:
        lent = self.lent_devices()
        return [dev for dev in self.pool_devices if dev not in lent]

    def lowest_free_id(self) -> int:
        """Tree `instance-create` without `id`: lowest free id >= 1 (spec 5.3, vector 45)."""
        candidate = 1
        while candidate in self.instances:
            candidate += 1
        return candidate
