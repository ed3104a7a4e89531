"""The machine as /sys/devices/system/{cpu,node}, /sys/bus/pci and resctrl describe it."""

from __future__ import annotations

from pathlib import Path

from mkd.backends.host.procfs import Procfs
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


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class SysTopology:
    """Reads the topology under a /sys root (injectable for tests)."""

    def __init__(self, sys_root: Path, procfs: Procfs) -> None:
        self.sys_root = sys_root
        self.procfs = procfs

    @property
    def cpu_dir(self) -> Path:
        return self.sys_root / "devices" / "system" / "cpu"

    @property
    def node_dir(self) -> Path:
        return self.sys_root / "devices" / "system" / "node"

    def present_cpus(self) -> list[int]:
        text = _read(self.cpu_dir / "present")
        if text:
            return parse_cpu_list(text)
        return sorted(
            int(entry.name[3:])
            for entry in self._entries(self.cpu_dir)
            if entry.name.startswith("cpu") and entry.name[3:].isdigit()
        )

    def numa_of_cpus(self) -> dict[int, int]:
        nodes: dict[int, int] = {}
        for node_id in self.numa_nodes():
            for cpu in parse_cpu_list(_read(self.node_dir / f"node{node_id}" / "cpulist") or ""):
                nodes[cpu] = node_id
        return nodes

    def numa_nodes(self) -> list[int]:
        return sorted(
            int(entry.name[4:])
            for entry in self._entries(self.node_dir)
            if entry.name.startswith("node") and entry.name[4:].isdigit()
        )

    def llc_of(self, cpu: int) -> int:
        """Id of the last-level cache of a CPU: the highest cache level's `id` (0 when unknown)."""
        best_level, best_id = -1, 0
        for index in self._entries(self.cpu_dir / f"cpu{cpu}" / "cache"):
            level = _read(index / "level")
            cache_id = _read(index / "id")
            if level and level.isdigit() and int(level) > best_level:
                best_level = int(level)
                best_id = int(cache_id) if cache_id and cache_id.isdigit() else 0
        return best_id

    def llc_way_mask(self) -> int:
        # resctrl's L3 cbm_mask is every way the hardware can allocate (spec 4.1).
        text = _read(self.sys_root / "fs" / "resctrl" / "info" / "L3" / "cbm_mask")
        return int(text, 16) if text else 0

    def pci_devices(self) -> list[DeviceInfo]:
        devices = []
        for entry in self._entries(self.sys_root / "bus" / "pci" / "devices"):
            node = _read(entry / "numa_node")
            devices.append(
                DeviceInfo(
                    name=entry.name,
                    type="pci",
                    vendor_id=_hex_or_none(_read(entry / "vendor")),
                    device_id=_hex_or_none(_read(entry / "device")),
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

    @staticmethod
    def _entries(directory: Path) -> list[Path]:
        try:
            return sorted(directory.iterdir())
        except OSError:
            return []


def _hex_or_none(text: str | None) -> int | None:
    if not text:
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None
