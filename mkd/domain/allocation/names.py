"""Instance names and ids as DESIGN "Ids and refs" defines them."""

from __future__ import annotations

import errno
import re

from mkd.errors import KernelError

MIN_INSTANCE_ID = 1
# 11 flag bits carry the id in kexec_file_load; 0 is the host.
MAX_INSTANCE_ID = 2047
MAX_NAME_LENGTH = 31

_NAME_CHARS = re.compile(r"[A-Za-z0-9,._+-]+")


def check_name(name: str) -> None:
    """Refuse a name that is not a DT node name, with EINVAL."""
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise KernelError(errno.EINVAL, f"name {name!r} must be 1-{MAX_NAME_LENGTH} characters")
    if _NAME_CHARS.fullmatch(name) is None:
        bad = next(char for char in name if _NAME_CHARS.fullmatch(char) is None)
        raise KernelError(
            errno.EINVAL, f"name {name!r} has {bad!r}; allowed are letters, digits and , . _ + -"
        )
    if name.isdigit():
        # A numeric name could not be told apart from an id in a {ref}.
        raise KernelError(errno.EINVAL, f"name {name!r} is purely numeric")
    if name in (".", ".."):
        # The host backend joins names into sysfs paths (issue 11): these name directories.
        raise KernelError(errno.EINVAL, f"name {name!r} names a directory in a path, not an instance")


def check_id(instance_id: int) -> None:
    if not MIN_INSTANCE_ID <= instance_id <= MAX_INSTANCE_ID:
        raise KernelError(errno.EINVAL, f"id {instance_id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}")


def lowest_clear_id(used_ids: int) -> int:
    """Lowest id in 1..2047 whose bit is clear in `used_ids`, or ENOSPC.

    A bitmask keeps this O(id space) whatever the number of instances.
    """
    all_ids = ((1 << (MAX_INSTANCE_ID + 1)) - 1) & ~1
    free = all_ids & ~used_ids
    if free == 0:
        raise KernelError(errno.ENOSPC, f"all {MAX_INSTANCE_ID} instance ids are in use")
    return (free & -free).bit_length() - 1
