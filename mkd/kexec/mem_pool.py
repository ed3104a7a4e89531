"""A gen_pool model: the multikernel pools' allocator (spec 3.1, 3.2).

Allocations never span two chunks, even adjacent ones, because the kernel keeps one bitmap per
chunk. Chunks are searched newest first: gen_pool_add() puts a chunk at the head of the pool's
list and the allocators walk that list in order. Within a chunk the search is first fit.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Any


class _Chunk:
    """One chunk and its free ranges as two parallel sorted lists of [start, end) addresses."""

    __slots__ = ("base", "size", "starts", "ends")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        self.starts: list[int] = [base]
        self.ends: list[int] = [base + size]

    @property
    def end(self) -> int:
        return self.base + self.size

    def is_free(self) -> bool:
        return self.starts == [self.base] and self.ends == [self.end]

    def take(self, index: int, addr: int, length: int) -> None:
        """Remove [addr, addr+length) from free range `index`, which contains it."""
        start, end = self.starts[index], self.ends[index]
        tail = addr + length
        if start == addr and end == tail:
            del self.starts[index]
            del self.ends[index]
        elif start == addr:
            self.starts[index] = tail
        elif end == tail:
            self.ends[index] = addr
        else:
            self.ends[index] = addr
            self.starts.insert(index + 1, tail)
            self.ends.insert(index + 1, end)

    def give_back(self, addr: int, length: int) -> None:
        """Return [addr, addr+length) to the free list; ValueError unless it is all allocated."""
        tail = addr + length
        if addr < self.base or tail > self.end:
            raise ValueError(f"range {addr:#x}+{length:#x} is not inside chunk {self.base:#x}+{self.size:#x}")
        index = bisect_right(self.starts, addr)
        if (index > 0 and self.ends[index - 1] > addr) or (index < len(self.starts) and self.starts[index] < tail):
            raise ValueError(f"range {addr:#x}+{length:#x} is (partly) free already")
        merge_left = index > 0 and self.ends[index - 1] == addr
        merge_right = index < len(self.starts) and self.starts[index] == tail
        if merge_left and merge_right:
            self.ends[index - 1] = self.ends[index]
            del self.starts[index]
            del self.ends[index]
        elif merge_left:
            self.ends[index - 1] = tail
        elif merge_right:
            self.starts[index] = addr
        else:
            self.starts.insert(index, addr)
            self.ends.insert(index, tail)


class GenPool:
    """gen_pool with `granule`-sized allocation units (min_alloc_order = PAGE_SHIFT, spec 3.2)."""

    def __init__(self, chunks: Iterable[tuple[int, int]] = (), granule: int = 4096) -> None:
        if granule <= 0 or granule & (granule - 1):
            raise ValueError("granule must be a power of two")
        self.granule = granule
        self._order = granule.bit_length() - 1
        self._added: list[_Chunk] = []  # insertion order; searched newest first
        self._by_base: list[_Chunk] = []  # sorted by base, for address lookups
        self._bases: list[int] = []
        self._avail = 0
        for base, size in chunks:
            self.add_chunk(base, size)

    # -- chunks --------------------------------------------------------------------------------

    def add_chunk(self, base: int, size: int) -> None:
        if size <= 0 or base < 0 or base % self.granule or size % self.granule:
            raise ValueError(f"chunk {base:#x}+{size:#x} must be non-empty and granule aligned")
        index = bisect_right(self._bases, base)
        if index > 0 and self._by_base[index - 1].end > base:
            raise ValueError(f"chunk {base:#x}+{size:#x} overlaps an existing chunk")
        if index < len(self._bases) and self._bases[index] < base + size:
            raise ValueError(f"chunk {base:#x}+{size:#x} overlaps an existing chunk")
        chunk = _Chunk(base, size)
        self._added.append(chunk)
        self._by_base.insert(index, chunk)
        self._bases.insert(index, base)
        self._avail += size

    def remove_chunk(self, base: int, size: int) -> None:
        """Drop a whole chunk (tree mk_pool_mem_shrink must name one exactly, spec 3.1)."""
        index = bisect_right(self._bases, base) - 1
        if index < 0 or self._bases[index] != base or self._by_base[index].size != size:
            raise ValueError(f"{base:#x}+{size:#x} is not a chunk of this pool")
        chunk = self._by_base[index]
        if not chunk.is_free():
            raise ValueError(f"chunk {base:#x}+{size:#x} still has allocations")
        del self._by_base[index]
        del self._bases[index]
        self._added.remove(chunk)
        self._avail -= size

    @property
    def chunks(self) -> list[tuple[int, int]]:
        return [(chunk.base, chunk.size) for chunk in self._by_base]

    def _chunk_at(self, addr: int) -> _Chunk | None:
        index = bisect_right(self._bases, addr) - 1
        if index < 0:
            return None
        chunk = self._by_base[index]
        return chunk if addr < chunk.end else None

    def _round(self, size: int) -> int:
        return (size + self.granule - 1) & ~(self.granule - 1)

    # -- allocation ----------------------------------------------------------------------------

    def alloc(self, size: int) -> int | None:
        """gen_pool_alloc: first fit, chunks newest first; None when nothing fits."""
        if size <= 0:
            return None
        length = self._round(size)
        for chunk in reversed(self._added):
            for index, (start, end) in enumerate(zip(chunk.starts, chunk.ends, strict=True)):
                if end - start >= length:
                    chunk.take(index, start, length)
                    self._avail -= length
                    return start
        return None

    def alloc_aligned(self, size: int, align: int) -> int | None:
        """multikernel_instance_alloc (spec 3.2): align <= 1 is plain first fit, else
        gen_pool_first_fit_align with max(align, granule)."""
        if align <= 1:
            return self.alloc(size)
        if size <= 0:
            return None
        align = max(align, self.granule)
        length = self._round(size)
        units = length >> self._order
        # The kernel aligns bitmap indices with a mask plus the chunk's offset within `align`, so a
        # non power-of-two alignment behaves like the kernel's (and may come back unaligned).
        mask = ((align + self.granule - 1) >> self._order) - 1
        for chunk in reversed(self._added):
            offset = (chunk.base & (align - 1)) >> self._order
            for index, (start, end) in enumerate(zip(chunk.starts, chunk.ends, strict=True)):
                if end - start < length:
                    continue  # cannot fit even unaligned
                first = (start - chunk.base) >> self._order
                candidate = ((first + offset + mask) & ~mask) - offset
                addr = chunk.base + (candidate << self._order)
                if addr + (units << self._order) <= end:
                    chunk.take(index, addr, length)
                    self._avail -= length
                    return addr
        return None

    def alloc_at(self, addr: int, size: int) -> bool:
        """Claim exactly [addr, addr+size) if it is free inside one chunk."""
        if size <= 0 or addr % self.granule:
            return False
        length = self._round(size)
        chunk = self._chunk_at(addr)
        if chunk is None:
            return False
        index = bisect_right(chunk.starts, addr) - 1
        if index < 0 or chunk.ends[index] < addr + length:
            return False
        chunk.take(index, addr, length)
        self._avail -= length
        return True

    def free(self, addr: int, size: int) -> None:
        """gen_pool_free; the kernel BUG()s on a bad free, we raise ValueError."""
        if size <= 0 or addr % self.granule:
            raise ValueError(f"bad free {addr:#x}+{size:#x}")
        length = self._round(size)
        chunk = self._chunk_at(addr)
        if chunk is None:
            raise ValueError(f"{addr:#x} is not inside this pool")
        chunk.give_back(addr, length)
        self._avail += length

    # -- accounting ----------------------------------------------------------------------------

    def avail(self) -> int:
        return self._avail

    def size(self) -> int:
        return sum(chunk.size for chunk in self._added)

    def free_ranges(self) -> list[tuple[int, int]]:
        """(base, size) of every free range, by address; ranges of adjacent chunks stay separate."""
        return [
            (start, end - start) for chunk in self._by_base for start, end in zip(chunk.starts, chunk.ends, strict=True)
        ]

    def copy(self) -> GenPool:
        return GenPool.from_json(self.to_json())

    def to_json(self) -> dict[str, Any]:
        return {
            "granule": self.granule,
            "chunks": [[chunk.base, chunk.size] for chunk in self._added],
            "free": [[base, size] for base, size in self.free_ranges()],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenPool:
        pool = cls(((int(base), int(size)) for base, size in data["chunks"]), granule=int(data["granule"]))
        free = {(int(base), int(size)) for base, size in data["free"]}
        # Rebuild the free lists exactly: start from "all allocated", then free the listed ranges.
        for chunk in pool._added:
            chunk.starts.clear()
            chunk.ends.clear()
        pool._avail = 0
        for base, size in sorted(free):
            pool.free(base, size)
        return pool

    def __repr__(self) -> str:
        return f"GenPool(chunks={self.chunks!r}, avail={self._avail:#x})"
