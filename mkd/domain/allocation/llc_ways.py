"""Bit arithmetic on LLC way masks (resctrl capacity bitmasks)."""

from __future__ import annotations

from collections.abc import Iterator

U32_MAX = 0xFFFFFFFF


def format_mask(mask: int) -> str:
    return f"{mask:#x}"


def way_indexes(mask: int) -> Iterator[int]:
    """Set bit positions of `mask`, lowest first."""
    while mask:
        lowest = mask & -mask
        yield lowest.bit_length() - 1
        mask ^= lowest


def runs(mask: int) -> Iterator[tuple[int, int]]:
    """(start, length) of each run of consecutive set bits, lowest first."""
    position = 0
    while mask >> position:
        if (mask >> position) & 1:
            start = position
            while (mask >> position) & 1:
                position += 1
            yield start, position - start
        else:
            position += 1


def largest_run(mask: int) -> int:
    return max((length for _, length in runs(mask)), default=0)


def lowest_contiguous_run(free_mask: int, count: int) -> int | None:
    """Mask of the lowest `count` consecutive free ways, or None when no run is long enough."""
    for start, length in runs(free_mask):
        if length >= count:
            return ((1 << count) - 1) << start
    return None
