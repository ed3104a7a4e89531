"""What instances hold, as the allocation ledger sees it, kept in step with the records."""

from __future__ import annotations

from collections.abc import Iterable

from mkd.backends.base import InstanceSpec
from mkd.db import repository
from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.allocation.ledger import Holding, Ledger
from mkd.services.context import Daemon
from mkd.services.pool_spec import spec_of


def holding_of(record: InstanceRecord) -> Holding:
    res = record.resources
    return Holding(
        id=record.id,
        name=record.name,
        cpus=tuple(res.get("cpus", [])),
        memory_bytes=int(res.get("memory_bytes", 0)),
        llc_way_mask=res.get("llc_way_mask"),
        devices=tuple(res.get("devices", [])),
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
        by_node: dict[int, int] = {}
        daemon.ledger = Ledger(
            daemon.host.topology, pool, holdings, free_memory_bytes=state.free_memory_bytes,
            free_memory_by_node=by_node or None,
        )
    return daemon.ledger
