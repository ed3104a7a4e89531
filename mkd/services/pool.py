"""The pool (baseline) definition: read, and reconcile idempotently."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mkd.crash_points import crash_point
from mkd.db import repository
from mkd.db.session import transaction
from mkd.domain.allocation.pool_change import plan_pool_change
from mkd.errors import KernelError
from mkd.kernel_types import PoolSpec, PoolState
from mkd.services.capability_checks import refuse_llc_without_capability
from mkd.services.context import Daemon
from mkd.services.holdings import holdings_from_records
from mkd.services.pool_spec import spec_of, store_pool
from mkd.services.read_model import Serialised
from mkd.services.records import check_if_match
from mkd.services.signals import POOL_CHANGED


def pool_etag(spec: PoolSpec | None) -> str:
    """Identifies the pool definition (not the response body): same definition, same ETag."""
    canonical = json.dumps(_spec_json(spec), sort_keys=True).encode()
    return '"' + hashlib.sha256(canonical).hexdigest()[:32] + '"'


def _spec_json(spec: PoolSpec | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    return {
        "cpus": sorted(spec.cpus),
        "memory_base": spec.memory_base,
        "memory_bytes": spec.memory_bytes,
        "llc_way_mask": spec.llc_way_mask,
        "devices": sorted(spec.devices),
    }


def pool_public(spec: PoolSpec | None, state: PoolState) -> dict[str, Any]:
    return {
        "cpus": list(spec.cpus) if spec else [],
        "memory_base": spec.memory_base if spec else 0,
        "memory_bytes": spec.memory_bytes if spec else 0,
        "llc_way_mask": spec.llc_way_mask if spec else None,
        "devices": list(spec.devices) if spec else [],
        "chunks": [{"base": c.base, "bytes": c.bytes, "numa_node": c.numa_node} for c in state.chunks],
        # Without a baseline nothing is offered to instances, whatever the boot pool holds.
        "free": {
            "cpus": list(state.free_cpus) if spec else [],
            "memory_bytes": state.free_memory_bytes if spec else 0,
            "llc_way_mask": state.free_llc_way_mask if spec else None,
            "devices": list(state.free_devices) if spec else [],
        },
    }


def get_pool(*, daemon: Daemon) -> tuple[dict[str, Any], str]:
    with transaction(daemon.engine) as session:
        spec = spec_of(repository.get_pool(session=session))
    return pool_public(spec, daemon.backend.read_pool()), pool_etag(spec)


def read_pool(*, daemon: Daemon) -> Serialised:
    """GET /v1/pool through the read model: serialised again only after a recorded change."""
    return daemon.reads.pool(lambda: get_pool(daemon=daemon))


def current_spec(*, daemon: Daemon) -> PoolSpec | None:
    with transaction(daemon.engine) as session:
        return spec_of(repository.get_pool(session=session))


@dataclass(frozen=True)
class PoolPutResult:
    created: bool
    changed: bool
    diff: dict[str, Any]
    pool: dict[str, Any]
    etag: str


def put_pool(*, daemon: Daemon, spec: PoolSpec, dry_run: bool, if_match: str | None = None) -> PoolPutResult:
    with daemon.kernel_lock:
        with transaction(daemon.engine) as session:
            record = repository.get_pool(session=session)
            current = spec_of(record)
            holdings = holdings_from_records(repository.list_instances(session=session))
        check_if_match(if_match, pool_etag(current))
        refuse_llc_without_capability(daemon, spec.llc_way_mask, "the pool")
        state = daemon.backend.read_pool()
        diff = plan_pool_change(
            daemon.host.topology, current, spec, holdings,
            profile=daemon.host.kernel_profile, pool_state=state,
        )
        created = current is None
        changed = created or not diff.is_empty()
        if dry_run or not changed:
            shown = pool_public(spec if dry_run else current, state)
            return PoolPutResult(created=False, changed=changed, diff=diff.to_json(), pool=shown,
                                 etag=pool_etag(spec if dry_run else current))
        new_state = daemon.backend.apply_pool(spec)
        crash_point("pool.after_kernel")
        with transaction(daemon.engine) as session:
            store_pool(session, spec)
        daemon.ledger = None
        daemon.signals.notify([POOL_CHANGED])
        return PoolPutResult(created=created, changed=True, diff=diff.to_json(),
                             pool=pool_public(spec, new_state), etag=pool_etag(spec))


def require_pool(spec: PoolSpec | None) -> PoolSpec:
    if spec is None:
        raise KernelError("EINVAL", "no pool is defined yet: PUT /v1/pool first")
    return spec
