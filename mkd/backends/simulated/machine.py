"""The simulated machine: CPUs, NUMA nodes, LLCs, RAM and devices, from [simulator] settings."""

from __future__ import annotations

import re

from mkd.config import SimulatorSettings
from mkd.kernel_types import CpuInfo, DeviceInfo, Topology

_PCI_ID = re.compile(r"^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def cpu_numa_node(cpu: int, settings: SimulatorSettings) -> int:
    """NUMA node of a CPU: ids are split into equal consecutive runs, one per node."""
    return cpu * settings.numa_nodes // settings.cpus


def _cpu_llc(cpu: int, settings: SimulatorSettings) -> int:
    node = cpu_numa_node(cpu, settings)
    first_of_node = -(-node * settings.cpus // settings.numa_nodes)  # ceil: first cpu mapped to node
    cpus_in_node = sum(1 for c in range(settings.cpus) if cpu_numa_node(c, settings) == node)
    position = cpu - first_of_node
    return node * settings.llc_per_node + position * settings.llc_per_node // max(cpus_in_node, 1)


def device_info(name: str) -> DeviceInfo:
    """A device named in settings: "DDDD:BB:SS.F" is PCI, anything else a platform device."""
    return DeviceInfo(name=name, type="pci" if _PCI_ID.match(name) else "platform")


def memory_numa_node(addr: int, settings: SimulatorSettings) -> int:
    """NUMA node of a physical address: RAM is split into equal consecutive slices, one per node."""
    return min(max(addr, 0) * settings.numa_nodes // settings.memory_bytes, settings.numa_nodes - 1)


def node_memory_ranges(settings: SimulatorSettings) -> list[tuple[int, int]]:
    """[start, end) of every node's RAM slice, page aligned."""
    page = 4096
    return [
        (
            settings.memory_bytes * node // settings.numa_nodes // page * page,
            settings.memory_bytes * (node + 1) // settings.numa_nodes // page * page,
        )
        for node in range(settings.numa_nodes)
    ]


def build_topology(settings: SimulatorSettings) -> Topology:
    cpus = tuple(
        CpuInfo(id=cpu, logical_id=cpu, numa_node=cpu_numa_node(cpu, settings), llc=_cpu_llc(cpu, settings))
        for cpu in range(settings.cpus)
    )
    return Topology(
        cpus=cpus,
        memory_bytes=settings.memory_bytes,
        numa_nodes=settings.numa_nodes,
        llc_way_mask=(1 << settings.llc_ways) - 1,
        devices=tuple(device_info(name) for name in settings.devices),
        pool_base=settings.pool_base,
        pool_bytes=settings.pool_bytes,
    )
