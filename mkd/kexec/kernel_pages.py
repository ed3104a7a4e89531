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


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """(start, end) of the union of (base, size) ranges, sorted, overlapping and touching ones joined."""
    merged: list[tuple[int, int]] = []
    for base, size in sorted(r for r in ranges if r[1] > 0):
        if merged and base <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], base + size))
        else:
            merged.append((base, base + size))
    return merged


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
        blocked = _merged([*self.excluded, *((addr, length) for _, addr, length in self.taken), *avoid])
        for base, length in sorted(self.ram, reverse=True):
            top = base + length  # the gaps of this RAM range, from the highest down
            for start, end in reversed(blocked):
                if start >= top:
                    continue
                candidate = (top - size) & ~(PAGE_SIZE - 1)
                if candidate >= max(end, base):
                    return self._take(kind, candidate, size)
                top = start
                if top <= base:
                    break
            candidate = (top - size) & ~(PAGE_SIZE - 1)
            if top > base and candidate >= base:
                return self._take(kind, candidate, size)
        raise failure

    def _take(self, kind: str, addr: int, size: int) -> int:
        self.taken.append((kind, addr, size))
        return addr
