"""Check an explicit LLC way mask, or choose the lowest contiguous run of free ways."""

from __future__ import annotations

import errno

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.llc_ways import (
    U32_MAX,
    format_mask,
    largest_run,
    lowest_contiguous_run,
    way_indexes,
)
from mkd.errors import KernelError


def _pool_mask(draft: Draft) -> int:
    pool_mask = draft.base.pool_llc_mask
    if not pool_mask:
        raise KernelError(errno.EINVAL, "the pool reserves no LLC ways (its llc_way_mask is null)")
    return pool_mask


def check_explicit_mask(draft: Draft, mask: int) -> int:
    if not 0 <= mask <= U32_MAX:
        raise KernelError(errno.EINVAL, f"llc_way_mask {mask} is not a u32")
    if mask == 0:
        raise KernelError(errno.EINVAL, "llc_way_mask 0x0 is zero; omit it for no LLC ways")
    pool_mask = _pool_mask(draft)
    outside = mask & ~pool_mask
    if outside:
        raise KernelError(
            errno.EINVAL,
            f"llc_way_mask {format_mask(mask)} is not a subset of the pool's {format_mask(pool_mask)} "
            f"(ways {format_mask(outside)} are outside)",
        )
    taken = mask & ~draft.free_llc_mask()
    if taken:
        first_way = next(way_indexes(taken))
        owner = draft.way_owner(first_way)
        who = owner.label() if owner is not None else "another instance"
        owners_ways = sum(1 << way for way in way_indexes(taken) if draft.way_owner(way) is owner)
        raise KernelError(
            errno.EBUSY,
            f"llc_way_mask {format_mask(mask)} overlaps {who} on ways {format_mask(owners_ways)}",
        )
    return mask


def choose_ways(draft: Draft, count: int) -> int:
    if count < 1:
        raise KernelError(errno.EINVAL, f"llc_ways {count} must be at least 1")
    _pool_mask(draft)
    free = draft.free_llc_mask()
    mask = lowest_contiguous_run(free, count)
    if mask is None:
        raise KernelError(
            errno.EBUSY, f"need {count} contiguous LLC ways, largest free run is {largest_run(free)}"
        )
    return mask
