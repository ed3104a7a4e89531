"""Instance ids as DESIGN "Ids and refs" defines them."""

from __future__ import annotations

import errno

from mkd.errors import KernelError
from mkd.kernel_types import MAX_INSTANCE_ID, MIN_INSTANCE_ID


def check_id(instance_id: int) -> None:
    if not MIN_INSTANCE_ID <= instance_id <= MAX_INSTANCE_ID:
        raise KernelError(errno.EINVAL, f"id {instance_id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}")


def lowest_clear_id(used_ids: int) -> int:
    """Lowest id in MIN_INSTANCE_ID..MAX_INSTANCE_ID whose bit is clear in `used_ids`, or ENOSPC.

    A bitmask keeps this O(id space) whatever the number of instances.
    """
    all_ids = ((1 << (MAX_INSTANCE_ID + 1)) - 1) & ~((1 << MIN_INSTANCE_ID) - 1)
    free = all_ids & ~used_ids
    if free == 0:
        raise KernelError(errno.ENOSPC, f"all {MAX_INSTANCE_ID} instance ids are in use")
    return (free & -free).bit_length() - 1
