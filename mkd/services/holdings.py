"""What instances hold, as the allocation ledger sees it, kept in step with the records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mkd.db import repository
from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.allocation.ledger import Holding, Ledger
from mkd.kernel_types import InstanceSpec, PoolState
from mkd.services.context import Daemon
from mkd.services.pool_spec import spec_of


def memory_by_node(chunks: Iterable[dict[str, Any]]) -> dict[int, int]:
    """Bytes per NUMA node of an instance's actual pool chunks (empty when nodes are unknown)."""
    by_node: dict[int, int] = {}
    for chunk in chunks:
        node = chunk.get("numa_node")
        if node is not None:
            by_node[int(node)] = by_node.get(int(node), 0) + int(chunk["bytes"])
    return by_node


def holding_of(record: InstanceRecord) -> Holding:
    res = record.resources
    return Holding(
        id=record.id,
        name=record.name,
        cpus=tuple(res.get("cpus", [])),
        memory_bytes=int(res.get("memory_bytes", 0)),
        llc_way_mask=res.get("llc_way_mask"),
        devices=tuple(res.get("devices", [])),
        numa_memory=memory_by_node(record.memory),
    )


def holdings_from_records(records: Iterable[InstanceRecord]) -> list[Holding]:
    return [holding_of(r) for r in records]


def resources_of(spec: InstanceSpec) -> dict[str, object]:
    return {
        "cpus": list(spec.cpus),
        "memory_bytes": spec.memory_bytes,
        "llc_way_mask": spec.llc_way_mask,
        "devices": list(spec.devices),
        "numa_node": spec.numa_node,
    }


def ledger_for(daemon: Daemon) -> Ledger:
    """The cached ledger, rebuilt from the records and the kernel's free memory when invalidated."""
    if daemon.ledger is None:
        with transaction(daemon.engine) as session:
            pool = spec_of(repository.get_pool(session=session))
            holdings = holdings_from_records(repository.list_instances(session=session))
        state = daemon.backend.read_pool()
        daemon.ledger = Ledger(
            daemon.host.topology, pool, holdings, free_memory_bytes=state.free_memory_bytes,
            free_memory_by_node=free_by_node(state, holdings),
        )
    return daemon.ledger


def free_by_node(state: PoolState, holdings: list[Holding]) -> dict[int, int] | None:
    """Free pool memory per NUMA node, when the kernel says which node each pool chunk is on."""
    if not state.chunks:
        return None
    free: dict[int, int] = {}
    for chunk in state.chunks:
        if chunk.numa_node is None:
            return None  # rfc-v2: one boot pool, no node
        free[chunk.numa_node] = free.get(chunk.numa_node, 0) + chunk.bytes
    for holding in holdings:
        for node, size in holding.numa_memory.items():
            free[node] = free.get(node, 0) - size
    return free
