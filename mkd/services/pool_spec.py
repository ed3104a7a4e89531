"""PoolSpec from the stored pool record."""

from __future__ import annotations

from sqlmodel import Session

from mkd.db import repository
from mkd.db.models import PoolRecord, utcnow
from mkd.kernel_types import PoolSpec


def spec_of(record: PoolRecord | None) -> PoolSpec | None:
    if record is None:
        return None
    return PoolSpec(
        cpus=tuple(record.cpus),
        memory_base=record.memory_base,
        memory_bytes=record.memory_bytes,
        llc_way_mask=record.llc_way_mask,
        devices=tuple(record.devices),
    )


def store_pool(session: Session, spec: PoolSpec) -> PoolRecord:
    """Write `spec` as the pool definition (one row), bumping its version."""
    record = repository.get_pool(session=session)
    if record is None:
        record = PoolRecord(id=1, memory_base=spec.memory_base, memory_bytes=spec.memory_bytes, version=0)
    record.cpus = list(spec.cpus)
    record.memory_base = spec.memory_base
    record.memory_bytes = spec.memory_bytes
    record.llc_way_mask = spec.llc_way_mask
    record.devices = list(spec.devices)
    record.version += 1
    record.updated_at = utcnow()
    session.add(record)
    return record
