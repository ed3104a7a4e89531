"""Check a memory size and place it on NUMA nodes (DESIGN "Shapes": memory_policy)."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.sizes import format_bytes, is_page_aligned
from mkd.domain.requests import MemoryPolicy
from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE, U32_MEMORY_MAX


def check_memory_size(memory_bytes: int, *, u32_memory: bool) -> None:
    """Shape of memory_bytes: negative or unaligned is refused. Zero (no instance pool) is a
    device-tree input's right (spec 5.3: memory-bytes is optional); JSON's schema requires it."""
    if memory_bytes < 0:
        raise KernelError(errno.EINVAL, f"memory_bytes {memory_bytes} is negative")
    if not is_page_aligned(memory_bytes):
        raise KernelError(
            errno.EINVAL,
            f"memory_bytes {memory_bytes} is not a multiple of the {format_bytes(PAGE_SIZE)} page",
        )
    if u32_memory and memory_bytes > U32_MEMORY_MAX:
        raise KernelError(
            errno.EINVAL,
            f"memory_bytes {memory_bytes} does not fit rfc-v2's u32 memory-bytes (max {U32_MEMORY_MAX:#x})",
        )


def split_evenly(memory_bytes: int, nodes: Sequence[int]) -> dict[int, int]:
    """Whole pages per node; the remainder pages go to the lowest nodes."""
    pages, remainder = divmod(memory_bytes // PAGE_SIZE, len(nodes))
    return {node: (pages + (index < remainder)) * PAGE_SIZE for index, node in enumerate(sorted(nodes))}


def _fill_largest_first(draft: Draft, memory_bytes: int, nodes: Sequence[int]) -> dict[int, int]:
    """No node preference: take from the node with most free memory first (ties: lowest id)."""
    order = sorted(nodes, key=lambda node: (-(draft.free_memory_on(node) or 0), node))
    placed: dict[int, int] = {}
    remaining = memory_bytes
    for node in order:
        take = min(remaining, max(draft.free_memory_on(node) or 0, 0))
        take -= take % PAGE_SIZE
        if take:
            placed[node] = take
            remaining -= take
    if remaining:
        # Pages can't be split below a page; the total check already passed, so put the tail
        # on the first node and let the per-node check name it.
        placed[order[0]] = placed.get(order[0], 0) + remaining
    return placed


def _fits(draft: Draft, placed: dict[int, int]) -> bool:
    return all(size <= (draft.free_memory_on(node) or 0) for node, size in placed.items())


def place_memory(
    draft: Draft,
    memory_bytes: int,
    *,
    policy: MemoryPolicy,
    cpu_nodes: Sequence[int],
    numa_nodes: Sequence[int] | None,
) -> dict[int, int]:
    """Check memory is free and return bytes per node ({} when per-node memory is unknown).

    Spec 5.5: the kernel carves an instance pool from any node unless one is named. `local` and
    explicit `numa_nodes` name it and insist (ENOMEM naming the node); `prefer-local` takes the
    CPUs' nodes when they have room and any node otherwise, so the default never refuses what
    the kernel would accept; `interleave` spreads over the CPUs' nodes (or the nodes given).
    """
    if memory_bytes == 0:
        return {}
    most = draft.base.max_instance_bytes
    if most is not None and memory_bytes > most:
        raise KernelError(
            errno.ENOMEM,
            f"need {format_bytes(memory_bytes)}, at most {format_bytes(most)} fits in one instance",
        )
    free = draft.free_memory_bytes()
    if memory_bytes > free:
        raise KernelError(errno.ENOMEM, f"need {format_bytes(memory_bytes)}, {format_bytes(free)} free")
    known_nodes = draft.memory_nodes()
    if known_nodes is None:
        return {}
    if policy == "interleave":
        placed = split_evenly(memory_bytes, numa_nodes or cpu_nodes or known_nodes)
    elif numa_nodes or (policy == "local" and cpu_nodes):
        placed = split_evenly(memory_bytes, cpu_nodes or numa_nodes or ())
    elif cpu_nodes and _fits(draft, near := split_evenly(memory_bytes, cpu_nodes)):
        placed = near
    else:
        placed = _fill_largest_first(draft, memory_bytes, known_nodes)
    for node, size in sorted(placed.items()):
        node_free = draft.free_memory_on(node) or 0
        if size > node_free:
            raise KernelError(
                errno.ENOMEM,
                f"need {format_bytes(size)} on node {node}, {format_bytes(max(node_free, 0))} free",
            )
    return placed
