"""Turn one ResourceRequest into concrete resources against a draft, refusing the first problem."""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from mkd.domain.allocation.cpu_choice import check_explicit_cpus, check_numa_nodes, choose_cpus
from mkd.domain.allocation.devices import check_devices
from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.ledger import Holding
from mkd.domain.allocation.llc_choice import check_explicit_mask, choose_ways
from mkd.domain.allocation.llc_ways import way_indexes
from mkd.domain.allocation.memory import check_memory_size, place_memory
from mkd.domain.requests import ResourceRequest
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile


@dataclass(frozen=True)
class Resources:
    cpus: tuple[int, ...]
    memory_bytes: int
    llc_way_mask: int | None
    devices: tuple[str, ...]
    numa_memory: dict[int, int] = field(default_factory=dict)
    numa_node: int | None = None  # the one node a "local" instance lives on, for the kernel


def check_request_shape(request: ResourceRequest) -> None:
    """Fields that exclude each other (schema-level, before any ownership check)."""
    if request.cpus is not None and request.cpu_count is not None:
        raise KernelError(errno.EINVAL, "give either cpus or cpu_count, not both")
    if request.llc_way_mask is not None and request.llc_ways is not None:
        raise KernelError(errno.EINVAL, "give either llc_way_mask or llc_ways, not both")


def resolve_resources(
    draft: Draft,
    request: ResourceRequest,
    *,
    u32_memory: bool,
    profile: KernelProfile,
    current: Holding | None = None,
) -> Resources:
    """Validate and allocate in a fixed order: shape, memory size, CPUs, LLC ways, devices, memory.

    `current` (a resource update): its CPUs and LLC ways are kept where a count allows it, so
    an update moves as little as possible.
    """
    check_request_shape(request)
    check_memory_size(request.memory_bytes, u32_memory=u32_memory)
    numa_nodes = check_numa_nodes(draft, request.numa_nodes)
    cpus = _resolve_cpus(draft, request, numa_nodes, profile=profile, current=current)
    llc_way_mask = _resolve_ways(draft, request, current)
    devices = check_devices(draft, request.devices, profile=profile)
    cpu_nodes = sorted({info.numa_node for cpu in cpus if (info := draft.base.cpu_info(cpu)) is not None})
    numa_memory = place_memory(
        draft, request.memory_bytes, policy=request.memory_policy, cpu_nodes=cpu_nodes, numa_nodes=numa_nodes
    )
    return Resources(
        cpus=cpus,
        memory_bytes=request.memory_bytes,
        llc_way_mask=llc_way_mask,
        devices=devices,
        numa_memory=numa_memory,
        numa_node=_kernel_node(request, cpu_nodes, numa_nodes, numa_memory),
    )


def _kernel_node(
    request: ResourceRequest, cpu_nodes: list[int], numa_nodes: tuple[int, ...] | None, numa_memory: dict[int, int]
) -> int | None:
    """The node the kernel carves the instance pool from (spec 5.5: None = any node).

    Named when the memory is to be local to one node: always under `local` or explicit
    `numa_nodes`; under `prefer-local` only when the placement found room there.
    """
    if request.memory_policy == "interleave":
        return None
    home_nodes = cpu_nodes or list(numa_nodes or ())
    if len(home_nodes) != 1:
        return None
    home = home_nodes[0]
    if request.memory_policy == "local" or numa_nodes or request.memory_bytes == 0:
        return home
    return home if set(numa_memory) == {home} else None


def _resolve_cpus(
    draft: Draft,
    request: ResourceRequest,
    numa_nodes: tuple[int, ...] | None,
    *,
    profile: KernelProfile,
    current: Holding | None,
) -> tuple[int, ...]:
    if request.cpus is not None:
        return check_explicit_cpus(draft, request.cpus, numa_nodes=numa_nodes, profile=profile)
    if request.cpu_count is None:
        return ()
    if request.cpu_count < 1:
        raise KernelError(errno.EINVAL, f"cpu_count {request.cpu_count} must be at least 1")
    kept: tuple[int, ...] = ()
    if current is not None:
        # Keep the current CPUs (boot CPU first) that still satisfy numa_nodes.
        kept = tuple(
            cpu
            for cpu in current.cpus
            if (info := draft.base.cpu_info(cpu)) is not None
            and (numa_nodes is None or info.numa_node in numa_nodes)
        )[: request.cpu_count]
    missing = request.cpu_count - len(kept)
    if missing == 0:
        return kept
    if kept and numa_nodes is None and request.cpu_affinity == "compact":
        # Growing a compact instance: stay on the nodes it already runs on when they have room.
        home_nodes = tuple(sorted({info.numa_node for cpu in kept if (info := draft.base.cpu_info(cpu))}))
        try:
            return kept + choose_cpus(
                draft, missing, numa_nodes=home_nodes, affinity="compact", exclude=set(kept)
            )
        except KernelError:
            pass  # not enough there: any node will do
    if numa_nodes is None and request.cpu_affinity == "compact" and request.memory_policy != "interleave":
        # Local memory follows the CPUs: prefer nodes that can also hold the memory, so the CPUs
        # chosen are not on a node without pool memory when another node has both.
        roomy = _nodes_with_memory(draft, request.memory_bytes)
        if roomy:
            try:
                return kept + choose_cpus(draft, missing, numa_nodes=roomy, affinity="compact", exclude=set(kept))
            except KernelError:
                pass  # not enough CPUs there: choose as usual and let the memory check speak
    extra = choose_cpus(
        draft, missing, numa_nodes=numa_nodes, affinity=request.cpu_affinity, exclude=set(kept)
    )
    return kept + extra


def _nodes_with_memory(draft: Draft, memory_bytes: int) -> tuple[int, ...]:
    """Nodes with room for all of `memory_bytes` (empty when per-node memory is unknown or 0 asked)."""
    nodes = draft.memory_nodes()
    if not memory_bytes or nodes is None:
        return ()
    return tuple(n for n in nodes if (draft.free_memory_on(n) or 0) >= memory_bytes)


def _resolve_ways(draft: Draft, request: ResourceRequest, current: Holding | None) -> int | None:
    if request.llc_way_mask is not None:
        return check_explicit_mask(draft, request.llc_way_mask)
    if request.llc_ways is None:
        return None
    current_mask = current.llc_way_mask if current is not None else None
    if current_mask is not None and len(list(way_indexes(current_mask))) == request.llc_ways:
        return current_mask
    return choose_ways(draft, request.llc_ways)
