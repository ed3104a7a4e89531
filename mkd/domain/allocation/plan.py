"""Validate and allocate a whole plan of new instances, all or nothing."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.ledger import Holding, Ledger
from mkd.domain.allocation.names import check_id
from mkd.domain.allocation.resolve import resolve_resources
from mkd.domain.names import check_name
from mkd.domain.requests import InstanceRequest
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelProfile


@dataclass(frozen=True)
class PlannedInstance:
    """A validated instance: what the kernel receives and what the ledger will record."""

    spec: InstanceSpec
    holding: Holding


def plan_instances(
    ledger: Ledger, requests: Sequence[InstanceRequest], *, u32_memory: bool
) -> list[InstanceSpec]:
    """Kernel-ready specs for every request, or the first refusal; never mutates `ledger`."""
    return [planned.spec for planned in plan_instance_holdings(ledger, requests, u32_memory=u32_memory)]


def plan_instance_holdings(
    ledger: Ledger, requests: Sequence[InstanceRequest], *, u32_memory: bool
) -> list[PlannedInstance]:
    """Like plan_instances, with the holdings to `ledger.add` once the kernel accepted them.

    Requests are checked in order against the ledger plus the earlier requests of the plan,
    as the kernel would apply them, so a later instance sees what an earlier one took.
    """
    # rfc-v2 is the profile that carries memory-bytes as a u32.
    profile: KernelProfile = "rfc-v2" if u32_memory else "tree"
    draft = Draft(ledger)
    planned: list[PlannedInstance] = []
    for request in requests:
        try:
            planned.append(_plan_one(draft, request, u32_memory=u32_memory, profile=profile))
        except KernelError as error:
            if len(requests) > 1 or request.origin != "json":
                # Several instances in one body: say which one was refused.
                raise KernelError(
                    error.errno_code, f"{_where(request)}: {error.detail}", extra=error.extra
                ) from error
            raise
        draft.add(planned[-1].holding)
    return planned


def _where(request: InstanceRequest) -> str:
    return f"instance {request.name!r}" if request.origin == "json" else request.origin


def _plan_one(
    draft: Draft, request: InstanceRequest, *, u32_memory: bool, profile: KernelProfile
) -> PlannedInstance:
    check_name(request.name)
    if request.id is not None:
        check_id(request.id)
    same_name = draft.holding_named(request.name)
    if same_name is not None:
        raise KernelError(errno.EEXIST, f"name {request.name!r} is already used by {same_name.label()}")
    if request.id is not None:
        same_id = draft.holding(request.id)
        if same_id is not None:
            raise KernelError(errno.EEXIST, f"id {request.id} is already used by {same_id.label()}")
    if draft.base.pool is None:
        raise KernelError(errno.EINVAL, "no pool: apply a baseline (PUT /v1/pool) before creating instances")
    resources = resolve_resources(draft, request.resources, u32_memory=u32_memory, profile=profile)
    instance_id = request.id if request.id is not None else draft.lowest_free_id()
    spec = InstanceSpec(
        id=instance_id,
        name=request.name,
        cpus=resources.cpus,
        memory_bytes=resources.memory_bytes,
        llc_way_mask=resources.llc_way_mask,
        devices=resources.devices,
        numa_node=resources.numa_node,
    )
    return PlannedInstance(spec=spec, holding=Holding.from_spec(spec, resources.numa_memory))
