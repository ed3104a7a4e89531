"""The kernel's own page allocator, as far as a multikernel load uses it.

Pages a load takes outside the instance pool: the tree's control and swap pages (spec 2.7.1 step
11, tree note), the tree's manifest and IPI ring pages (spec 2.4 step 4) and the v2 KHO FDT page
(spec 2.3 step 6, 6.4). The buddy allocator never hands out multikernel pool memory, so every pool
chunk (the global pool's and every instance pool's) and every page another kimage holds is
excluded. The simulator takes the highest free page so the result is deterministic.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import dataclass, field

from mkd.errors import KernelError

PAGE_SIZE = 4096


def _hit(ranges: Iterable[tuple[int, int]], first: int, last: int) -> tuple[int, int] | None:
    """The first (base, size) range that overlaps the inclusive [first, last]."""
    for base, size in ranges:
        if size and last >= base and first <= base + size - 1:
            return base, size
    return None


@dataclass
class KernelPages:
    """alloc_pages() for one kexec_file_load call. `failing` names allocations told to fail."""

    ram: tuple[tuple[int, int], ...]  # (base, size) of kernel RAM
    excluded: list[tuple[int, int]] = field(default_factory=list)  # pool chunks, pages held elsewhere
    failing: frozenset[str] = frozenset()  # fault injection: kinds whose allocation returns NULL
    taken: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, addr, size) handed out

    def alloc(self, kind: str, size: int, avoid: Iterable[tuple[int, int]] = ()) -> int:
        """`size` bytes (page multiple) not in `excluded`, not taken, not in `avoid`; else ENOMEM."""
        failure = KernelError(errno.ENOMEM, f"could not allocate the {kind} page(s)")
        if kind in self.failing:
            raise failure
        size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        blocked = [*self.excluded, *((addr, length) for _, addr, length in self.taken), *avoid]
        for base, length in sorted(self.ram, reverse=True):
            candidate = (base + length - size) & ~(PAGE_SIZE - 1)
            while candidate >= base:
                hit = _hit(blocked, candidate, candidate + size - 1)
                if hit is None:
                    self.taken.append((kind, candidate, size))
                    return candidate
                candidate = (hit[0] - size) & ~(PAGE_SIZE - 1)  # jump below what is in the way
        raise failure
