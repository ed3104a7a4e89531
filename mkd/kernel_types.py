"""The kernel interface's values: profiles, topology, pool and instance specs, kimages, segments,
events. The ground floor: imported by every layer, importing nothing of mkd (DESIGN "Recommended
layout")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KernelProfile = Literal["rfc-v2", "tree"]
Arch = Literal["x86_64", "arm64"]

# Spec 2.1: KEXEC_MK_ID carries the id in 11 flag bits, so ids are 1..2047; 0 is the host, and a
# larger id is masked by the kernel, never by the daemon (DESIGN "Ids and refs").
MK_ID_BITS = 11
MIN_INSTANCE_ID = 1
MAX_INSTANCE_ID = (1 << MK_ID_BITS) - 1

PAGE_SIZE = 4096
# rfc-v2 carries memory-bytes as a u32 (spec 5.2): the largest page-aligned u32.
U32_MEMORY_MAX = 0xFFFFF000
# Spec 5.1 rule 2 / 5.4: kernfs takes a root DTB or an overlay in one write of at most 1 MiB.
MAX_DT_WRITE_BYTES = 1 << 20
# Spec 5.3/5.5: numa-node ids must be < MAX_NUMNODES, 1 << CONFIG_NODES_SHIFT at its largest (10).
MAX_NUMNODES = 1 << 10


@dataclass(frozen=True)
class CpuInfo:
    id: int  # physical id (APIC id / MPIDR); the simulator uses physical == logical
    logical_id: int
    numa_node: int
    llc: int


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # platform device-name or PCI "DDDD:BB:SS.F"
    type: Literal["pci", "platform"]
    vendor_id: int | None = None
    device_id: int | None = None
    numa_node: int | None = None


@dataclass(frozen=True)
class Topology:
    cpus: tuple[CpuInfo, ...]
    memory_bytes: int  # machine RAM
    numa_nodes: int
    llc_way_mask: int  # all LLC ways the hardware has (resctrl cbm_mask)
    devices: tuple[DeviceInfo, ...]
    pool_base: int  # physical range reserved for multikernel (mkkernel_pool=); 0/0 when unknown
    pool_bytes: int


@dataclass(frozen=True)
class HostInfo:
    backend: Literal["simulated", "host"]
    kernel_profile: KernelProfile
    arch: Arch
    capabilities: dict[str, bool]  # halt, per_instance_unload, hot_update, numa, active_reported
    topology: Topology


@dataclass(frozen=True)
class MemChunk:
    base: int
    bytes: int
    numa_node: int | None = None


@dataclass(frozen=True)
class PoolSpec:
    """The baseline: what the operator reserves for multikernel instances."""

    cpus: tuple[int, ...]
    memory_base: int
    memory_bytes: int
    llc_way_mask: int | None = None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class PoolState:
    spec: PoolSpec | None  # None: no baseline applied yet
    chunks: tuple[MemChunk, ...]  # the global pool's physical chunks
    free_cpus: tuple[int, ...]
    free_memory_bytes: int
    free_llc_way_mask: int | None
    free_devices: tuple[str, ...]


@dataclass(frozen=True)
class InstanceSpec:
    """Resources of one instance as the kernel receives them (already validated by the daemon)."""

    id: int
    name: str
    cpus: tuple[int, ...]  # tree: first is the boot CPU; v2: stored as a set
    memory_bytes: int
    llc_way_mask: int | None = None
    devices: tuple[str, ...] = ()
    numa_node: int | None = None  # tree `numa-nodes` first entry: node to carve the pool from


@dataclass(frozen=True)
class Segment:
    kind: str  # "purgatory", "boot_params", "kernel", "initrd", "dtb", "control", "swap", ...
    mem: int
    memsz: int
    bufsz: int
    sha256: str  # of the bytes placed (bufsz bytes; memsz - bufsz zero fill not included)
    in_pool: bool = True  # False when v2 fell back to system RAM (spec §3.3)


@dataclass(frozen=True)
class Kimage:
    kernel_sha256: str
    initrd_sha256: str | None
    cmdline: str
    segments: tuple[Segment, ...]
    start: int  # image->start
    loader: str  # "bzImage64", "vmlinux", "arm64-image"
    spawnable: bool = True  # False: tree x86 bzImage has no mk_kernel_entry (spec 2.7.5 a)
    # DESIGN "Two backends": `kernel` when the kernel showed the segments, `computed` when the
    # daemon planned them with its own loaders (a real kernel shows only their count, spec 2.6).
    segments_source: Literal["kernel", "computed"] = "kernel"


@dataclass(frozen=True)
class KernelInstance:
    """An instance as the kernel sees it."""

    id: int
    name: str
    kernel_state: str  # raw status string: ready, loading, loaded, active, failed, empty
    cpus: tuple[int, ...]
    memory: tuple[MemChunk, ...]  # the instance pool's chunks
    memory_bytes: int
    llc_way_mask: int | None
    devices: tuple[str, ...]
    kimage: Kimage | None
    failure: str | None = None  # why the kernel/simulator says `failed`


@dataclass(frozen=True)
class LoadRequest:
    """kexec_file_load(kernel_fd, initrd_fd, cmdline, flags) with files instead of fds.

    kernel/initrd None mean fd -1. cmdline None means cmdline_len 0 (NULL pointer); otherwise the
    exact bytes passed, normally ending in NUL (the length counts it, spec 2.7.1 step 6).
    """

    kernel: Path | None
    initrd: Path | None
    cmdline: bytes | None
    flags: int  # full kexec_file_load flags, KEXEC_MULTIKERNEL | KEXEC_MK_ID(id) | ...
    kernel_sha256: str = ""
    initrd_sha256: str | None = None


@dataclass(frozen=True)
class KernelEvent:
    """A change the kernel made on its own (spawn halted itself, instance failed)."""

    id: int
    name: str
    from_state: str
    to_state: str
    reason: str = ""
