"""PoolSpec from the stored pool record."""

from __future__ import annotations

from mkd.backends.base import PoolSpec
from mkd.db.models import PoolRecord


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
