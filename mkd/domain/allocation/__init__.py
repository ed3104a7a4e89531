"""Whole-plan validation and automatic allocation of instance resources (pure, no I/O).

The daemon runs these checks before any kernel call, so a plan is refused all or nothing
with the nearest kernel errno instead of being half applied by a permissive kernel.
"""

from __future__ import annotations

from mkd.domain.allocation.ledger import Holding, Ledger
from mkd.domain.allocation.plan import PlannedInstance, plan_instance_holdings, plan_instances
from mkd.domain.allocation.pool_change import PoolDiff, plan_pool_change
from mkd.domain.allocation.update import ResourceDiff, plan_update

__all__ = [
    "Holding",
    "Ledger",
    "PlannedInstance",
    "PoolDiff",
    "ResourceDiff",
    "plan_instance_holdings",
    "plan_instances",
    "plan_pool_change",
    "plan_update",
]
