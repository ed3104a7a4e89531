"""The global multikernel memory pool (spec 3.1) and instance-pool carving (spec 3.2).

The pool is a list of chunks, each with its own gen_pool of 4 KiB granules. rfc-v2 has one
chunk (the boot pool, or the baseline range inside it); tree grows and shrinks whole chunks
taken from the simulated page allocator (`Ram`), one allocator per NUMA node.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE as PAGE_SIZE
from mkd.kexec.mem_pool import GenPool

SZ_256K = 256 << 10
SZ_1M = 1 << 20


@dataclass
class PoolChunk:
    base: int
    size: int
    node: int | None
    allocator: GenPool  # what is still free in this chunk

    @property
    def end(self) -> int:
        return self.base + self.size

    def is_whole_free(self) -> bool:
        return self.allocator.avail() == self.size


class GlobalPool:
    def __init__(self, chunks: list[PoolChunk] | None = None) -> None:
        self.chunks: list[PoolChunk] = chunks or []

    @classmethod
    def single(cls, base: int, size: int, node: int | None = None) -> GlobalPool:
        return cls([PoolChunk(base, size, node, GenPool(chunks=[(base, size)]))])

    def total_bytes(self) -> int:
        return sum(chunk.size for chunk in self.chunks)

    def avail_bytes(self, node: int | None = None) -> int:
        return sum(chunk.allocator.avail() for chunk in self.chunks if node is None or chunk.node == node)

    def chunk_at(self, addr: int) -> PoolChunk | None:
        return next((c for c in self.chunks if c.base <= addr < c.end), None)

    def alloc(self, size: int, node: int | None = None) -> int | None:
        """multikernel_alloc: first fit, newest chunk first like gen_pool (of `node`, when given)."""
        for chunk in reversed(self.chunks):
            if node is not None and chunk.node != node:
                continue
            addr = chunk.allocator.alloc(size)
            if addr is not None:
                return addr
        return None

    def alloc_at(self, addr: int, size: int) -> bool:
        chunk = self.chunk_at(addr)
        return chunk is not None and addr + size <= chunk.end and chunk.allocator.alloc_at(addr, size)

    def free(self, addr: int, size: int) -> None:
        chunk = self.chunk_at(addr)
        if chunk is None or addr + size > chunk.end:
            raise ValueError(f"range {addr:#x}+{size:#x} is not inside one pool chunk")
        chunk.allocator.free(addr, size)

    def carve(self, size: int, node: int | None = None) -> list[tuple[int, int]]:
        """multikernel_create_instance_pool (spec 3.2): the chunks of a new instance pool.

        Try the whole remaining size, else 1 MiB, else 256 KiB, else one page; any failure frees
        everything taken so far and the caller returns ENOMEM.
        """
        taken: list[tuple[int, int]] = []
        remaining = size
        while remaining > 0:
            for attempt in (remaining, SZ_1M, SZ_256K, PAGE_SIZE):
                if attempt > remaining:
                    continue
                addr = self.alloc(attempt, node)
                if addr is not None:
                    taken.append((addr, attempt))
                    remaining -= attempt
                    break
            else:
                for addr, chunk_size in taken:
                    self.free(addr, chunk_size)
                where = "" if node is None else f" on NUMA node {node}"
                raise KernelError(errno.ENOMEM, f"cannot carve {size:#x} bytes from the multikernel pool{where}")
        return taken

    def copy(self) -> GlobalPool:
        return GlobalPool([PoolChunk(c.base, c.size, c.node, c.allocator.copy()) for c in self.chunks])


class Ram:
    """The simulated page allocator the tree pool grows from (mk_pool_mem_grow), per NUMA node."""

    def __init__(self, nodes: list[GenPool]) -> None:
        self.nodes = nodes

    @classmethod
    def for_nodes(cls, ranges: list[tuple[int, int]], floor: int) -> Ram:
        """One allocator per NUMA node over its [start, end) RAM, above `floor`.

        The page allocator never hands the multikernel pool low memory, so chunks come from
        above `floor` (the configured pool base); a node entirely below it has nothing to give.
        """
        nodes: list[GenPool] = []
        for start, end in ranges:
            start = max(start, floor)
            nodes.append(GenPool(chunks=[(start, end - start)] if end > start else []))
        return cls(nodes)

    def node_of(self, addr: int) -> int | None:
        for node, allocator in enumerate(self.nodes):
            if any(base <= addr < base + size for base, size in allocator.chunks):
                return node
        return None

    def take(self, size: int, node: int | None, hint: int | None) -> tuple[int, int] | None:
        """mk_pool_mem_grow: a new chunk (base, node); the kernel picks the base, `hint` first."""
        if hint is not None:
            hinted_node = self.node_of(hint)
            if hinted_node is not None and (node is None or node == hinted_node):
                if self.nodes[hinted_node].alloc_at(hint, size):
                    return hint, hinted_node
        candidates = range(len(self.nodes)) if node is None else [node] if 0 <= node < len(self.nodes) else []
        for candidate in candidates:
            addr = self.nodes[candidate].alloc(size)
            if addr is not None:
                return addr, candidate
        return None

    def give_back(self, base: int, size: int, node: int) -> None:
        self.nodes[node].free(base, size)

    def mark_taken(self, base: int, size: int, node: int) -> bool:
        return self.nodes[node].alloc_at(base, size)
