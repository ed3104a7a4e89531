"""The machine as /sys/devices/system/{cpu,node}, /sys/bus/pci and resctrl describe it."""

from __future__ import annotations

from mkd.backends.host.procfs import Procfs
from mkd.backends.kernel_io import KernelIO, join
from mkd.kernel_types import CpuInfo, DeviceInfo, Topology


def parse_cpu_list(text: str) -> list[int]:
    """A kernel cpulist ("0-3,8,10-11") as sorted ids."""
    ids: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        ids.update(range(int(low), int(high or low) + 1))
    return sorted(ids)


class SysTopology:
    """Reads the topology under /sys through the kernel interface."""

    cpu_dir = "/sys/devices/system/cpu"
    node_dir = "/sys/devices/system/node"

    def __init__(self, io: KernelIO, procfs: Procfs) -> None:
        self.io = io
        self.procfs = procfs

    def _read(self, path: str) -> str | None:
        try:
            return self.io.read(path).decode(errors="replace").strip()
        except OSError:
            return None

    def _entries(self, directory: str) -> list[str]:
        try:
            return sorted(self.io.listdir(directory))
        except OSError:
            return []

    def present_cpus(self) -> list[int]:
        text = self._read(join(self.cpu_dir, "present"))
        if text:
            return parse_cpu_list(text)
        return sorted(
            int(entry[3:]) for entry in self._entries(self.cpu_dir) if entry.startswith("cpu") and entry[3:].isdigit()
        )

    def numa_of_cpus(self) -> dict[int, int]:
        nodes: dict[int, int] = {}
        for node_id in self.numa_nodes():
            for cpu in parse_cpu_list(self._read(join(self.node_dir, f"node{node_id}", "cpulist")) or ""):
                nodes[cpu] = node_id
        return nodes

    def numa_nodes(self) -> list[int]:
        return sorted(
            int(entry[4:]) for entry in self._entries(self.node_dir) if entry.startswith("node") and entry[4:].isdigit()
        )

    def llc_of(self, cpu: int) -> int:
        """Id of the last-level cache of a CPU: the highest cache level's `id` (0 when unknown)."""
        best_level, best_id = -1, 0
        cache = join(self.cpu_dir, f"cpu{cpu}", "cache")
        for index in self._entries(cache):
            level = self._read(join(cache, index, "level"))
            cache_id = self._read(join(cache, index, "id"))
            if level and level.isdigit() and int(level) > best_level:
                best_level = int(level)
                best_id = int(cache_id) if cache_id and cache_id.isdigit() else 0
        return best_id

    def llc_way_mask(self) -> int:
        # resctrl's L3 cbm_mask is every way the hardware can allocate (spec 4.1).
        text = self._read("/sys/fs/resctrl/info/L3/cbm_mask")
        return int(text, 16) if text else 0

    def pci_devices(self) -> list[DeviceInfo]:
        devices = []
        pci = "/sys/bus/pci/devices"
        for entry in self._entries(pci):
            node = self._read(join(pci, entry, "numa_node"))
            devices.append(
                DeviceInfo(
                    name=entry,
                    type="pci",
                    vendor_id=_hex_or_none(self._read(join(pci, entry, "vendor"))),
                    device_id=_hex_or_none(self._read(join(pci, entry, "device"))),
                    numa_node=int(node) if node and node.lstrip("-").isdigit() and int(node) >= 0 else None,
                )
            )
        return devices

    def cpus(self, *, physical_ids: dict[int, int]) -> tuple[CpuInfo, ...]:
        numa = self.numa_of_cpus()
        return tuple(
            CpuInfo(
                id=physical_ids.get(logical, logical),
                logical_id=logical,
                numa_node=numa.get(logical, 0),
                llc=self.llc_of(logical),
            )
            for logical in self.present_cpus()
        )

    def topology(self, *, pool_base: int, pool_bytes: int) -> Topology:
        # The tree names CPUs by physical id (x86 APIC id, spec 4); /proc/cpuinfo is the only
        # unprivileged source. Without it (arm64: MPIDR is not exported) physical = logical.
        cpus = self.cpus(physical_ids=self.procfs.apic_ids())
        return Topology(
            cpus=cpus,
            memory_bytes=self.procfs.memory_bytes(),
            numa_nodes=max(1, len(self.numa_nodes())),
            llc_way_mask=self.llc_way_mask(),
            devices=tuple(self.pci_devices()),
            pool_base=pool_base,
            pool_bytes=pool_bytes,
        )


def _hex_or_none(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None
