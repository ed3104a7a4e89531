"""Check an explicit CPU list, or choose CPUs for a count (compact or spread over NUMA nodes)."""

from __future__ import annotations

import errno
from collections.abc import Collection, Sequence

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.raw_kernel import cpu_outside_pool_note, owned_cpu_note
from mkd.domain.requests import CpuAffinity
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile


def check_numa_nodes(draft: Draft, numa_nodes: Sequence[int] | None) -> tuple[int, ...] | None:
    if numa_nodes is None:
        return None
    node_count = draft.base.topology.numa_nodes
    seen: set[int] = set()
    for node in numa_nodes:
        if not 0 <= node < node_count:
            raise KernelError(
                errno.EINVAL, f"numa node {node} does not exist (the machine has nodes 0..{node_count - 1})"
            )
        if node in seen:
            raise KernelError(errno.EINVAL, f"numa node {node} is listed twice in numa_nodes")
        seen.add(node)
    if not seen:
        raise KernelError(errno.EINVAL, "numa_nodes is empty; omit it to allow every node")
    return tuple(numa_nodes)


def check_explicit_cpus(
    draft: Draft, cpus: Sequence[int], *, numa_nodes: Collection[int] | None, profile: KernelProfile
) -> tuple[int, ...]:
    """Refuse the first CPU that is repeated, absent, outside numa_nodes or the pool, or owned."""
    seen: set[int] = set()
    for cpu in cpus:
        if cpu in seen:
            raise KernelError(errno.EINVAL, f"cpu {cpu} is listed twice")
        seen.add(cpu)
        info = draft.base.cpu_info(cpu)
        if info is None:
            raise KernelError(errno.ENODEV, f"cpu {cpu} is not present on this machine")
        if numa_nodes is not None and info.numa_node not in numa_nodes:
            raise KernelError(
                errno.EINVAL, f"cpu {cpu} is on node {info.numa_node}, outside numa_nodes {list(numa_nodes)}"
            )
        if not draft.base.cpu_in_pool(cpu):
            raise KernelError(errno.EBUSY, f"cpu {cpu} is not in the pool; {cpu_outside_pool_note(profile)}")
        owner = draft.cpu_owner(cpu)
        if owner is not None:
            raise KernelError(
                errno.EBUSY, f"cpu {cpu} is owned by {owner.label()}; {owned_cpu_note(profile)}"
            )
    return tuple(cpus)


def _free_by_node(draft: Draft, nodes: Sequence[int], exclude: Collection[int]) -> dict[int, list[list[int]]]:
    """node -> its LLCs' free CPUs (each ascending), LLCs ordered most free first, then by id."""
    llcs_by_node = draft.base.llcs_by_node()
    free: dict[int, list[list[int]]] = {}
    for node in nodes:
        per_llc = [
            (llc, sorted(cpu for cpu in draft.free_cpus_in((node, llc)) if cpu not in exclude))
            for llc in llcs_by_node.get(node, ())
        ]
        per_llc.sort(key=lambda entry: (-len(entry[1]), entry[0]))
        free[node] = [cpus for _, cpus in per_llc]
    return free


def _shortage(count: int, free: int, nodes: Sequence[int], restricted: bool) -> KernelError:
    if not restricted:
        where = "in the pool"
    elif len(nodes) == 1:
        where = f"on node {nodes[0]}"
    else:
        where = "on nodes " + ", ".join(str(node) for node in nodes)
    return KernelError(errno.EBUSY, f"need {count} CPUs {where}, {free} free")


def choose_cpus(
    draft: Draft,
    count: int,
    *,
    numa_nodes: Sequence[int] | None,
    affinity: CpuAffinity,
    exclude: Collection[int] = (),
) -> tuple[int, ...]:
    """`count` free CPUs (not in `exclude`), deterministic for a given ledger.

    compact: fill the node with the most free CPUs, within it the LLC with the most, before the
    next (ties: lowest id), so a request that fits in one node gets one node.
    spread: round-robin over the allowed nodes, lowest free CPU of each in turn.
    """
    if count < 1:
        raise KernelError(errno.EINVAL, f"cpu_count {count} must be at least 1")
    nodes = list(numa_nodes) if numa_nodes is not None else sorted(draft.base.llcs_by_node())
    free = _free_by_node(draft, nodes, exclude)
    total_free = sum(len(cpus) for llcs in free.values() for cpus in llcs)
    if total_free < count:
        raise _shortage(count, total_free, nodes, numa_nodes is not None)
    if affinity == "spread":
        return _spread(free, count)
    return _compact(free, count)


def _compact(free: dict[int, list[list[int]]], count: int) -> tuple[int, ...]:
    chosen: list[int] = []
    node_order = sorted(free, key=lambda node: (-sum(len(cpus) for cpus in free[node]), node))
    for node in node_order:
        for llc_cpus in free[node]:
            chosen.extend(llc_cpus[: count - len(chosen)])
            if len(chosen) == count:
                return tuple(chosen)
    raise AssertionError("choose_cpus checked the total first")


def _spread(free: dict[int, list[list[int]]], count: int) -> tuple[int, ...]:
    queues = {node: sorted(cpu for cpus in llcs for cpu in cpus) for node, llcs in free.items()}
    positions = dict.fromkeys(queues, 0)
    chosen: list[int] = []
    while len(chosen) < count:
        for node in sorted(queues):
            if positions[node] < len(queues[node]) and len(chosen) < count:
                chosen.append(queues[node][positions[node]])
                positions[node] += 1
    return tuple(chosen)
