"""Topologies, pools and ledgers for the allocation tests."""

from __future__ import annotations

from collections.abc import Iterable

from mkd.domain.allocation import Holding, Ledger
from mkd.domain.requests import InstanceRequest, ResourceRequest
from mkd.kernel_types import CpuInfo, DeviceInfo, PoolSpec, Topology

MiB = 1 << 20
GiB = 1 << 30
POOL_BASE = 0x1_0000_0000


def make_topology(
    *,
    nodes: int = 2,
    llcs_per_node: int = 1,
    cpus_per_llc: int = 8,
    llc_way_mask: int = 0xFFFF,
    devices: Iterable[str] = ("0000:03:00.0", "0000:04:00.0", "serial0"),
    pool_bytes: int = 4 * GiB,
) -> Topology:
    """CPU ids 0..n-1 laid out node by node, LLC by LLC (llc ids are global, as in sysfs)."""
    cpus = []
    for node in range(nodes):
        for llc_in_node in range(llcs_per_node):
            llc = node * llcs_per_node + llc_in_node
            for index in range(cpus_per_llc):
                cpu = llc * cpus_per_llc + index
                cpus.append(CpuInfo(id=cpu, logical_id=cpu, numa_node=node, llc=llc))
    return Topology(
        cpus=tuple(cpus),
        memory_bytes=64 * GiB,
        numa_nodes=nodes,
        llc_way_mask=llc_way_mask,
        devices=tuple(DeviceInfo(name=name, type="pci" if ":" in name else "platform") for name in devices),
        pool_base=POOL_BASE,
        pool_bytes=pool_bytes,
    )


def make_pool(
    topology: Topology,
    *,
    exclude_cpus: Iterable[int] = (0,),
    memory_bytes: int = 4 * GiB,
    llc_way_mask: int | None = 0x0FFF,
    devices: Iterable[str] = ("0000:03:00.0", "serial0"),
) -> PoolSpec:
    """The usual baseline: every CPU but the host's CPU 0."""
    excluded = set(exclude_cpus)
    return PoolSpec(
        cpus=tuple(cpu.id for cpu in topology.cpus if cpu.id not in excluded),
        memory_base=POOL_BASE,
        memory_bytes=memory_bytes,
        llc_way_mask=llc_way_mask,
        devices=tuple(devices),
    )


def make_ledger(
    topology: Topology,
    pool: PoolSpec | None,
    holdings: Iterable[Holding] = (),
    *,
    per_node_memory: bool = False,
    max_instance_bytes: int | None = None,
) -> Ledger:
    """A ledger whose free memory is the pool minus the holdings (split evenly over nodes if asked)."""
    held = list(holdings)
    pool_memory = pool.memory_bytes if pool else 0
    free = pool_memory - sum(holding.memory_bytes for holding in held)
    by_node: dict[int, int] | None = None
    if per_node_memory:
        by_node = dict.fromkeys(range(topology.numa_nodes), pool_memory // topology.numa_nodes)
        for holding in held:
            for node, size in holding.numa_memory.items():
                by_node[node] -= size
    return Ledger(
        topology,
        pool,
        held,
        free_memory_bytes=free,
        free_memory_by_node=by_node,
        max_instance_bytes=max_instance_bytes,
    )


def holding(
    instance_id: int,
    name: str,
    cpus: Iterable[int] = (),
    *,
    memory_bytes: int = 0,
    llc_way_mask: int | None = None,
    devices: Iterable[str] = (),
    numa_memory: dict[int, int] | None = None,
) -> Holding:
    return Holding(
        id=instance_id,
        name=name,
        cpus=tuple(cpus),
        memory_bytes=memory_bytes,
        llc_way_mask=llc_way_mask,
        devices=tuple(devices),
        numa_memory=dict(numa_memory or {}),
    )


def request(name: str, instance_id: int | None = None, **resources: object) -> InstanceRequest:
    return InstanceRequest(name=name, id=instance_id, resources=ResourceRequest(**resources))  # type: ignore[arg-type]
