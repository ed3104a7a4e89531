"""Check the devices a request names."""

from __future__ import annotations

import errno
from collections.abc import Sequence

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.raw_kernel import device_unavailable_note
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile


def check_devices(draft: Draft, devices: Sequence[str], *, profile: KernelProfile) -> tuple[str, ...]:
    """Refuse the first device that is repeated, absent, outside the pool, or assigned."""
    seen: set[str] = set()
    for device in devices:
        if device in seen:
            raise KernelError(errno.EINVAL, f"device {device} is listed twice")
        seen.add(device)
        if not draft.base.device_known(device):
            raise KernelError(errno.ENODEV, f"device {device} is not present on this machine")
        if not draft.base.device_in_pool(device):
            raise KernelError(
                errno.EBUSY, f"device {device} is not in the pool; {device_unavailable_note(profile)}"
            )
        owner = draft.device_owner(device)
        if owner is not None:
            raise KernelError(errno.EBUSY, f"device {device} is assigned to {owner.label()}")
    return tuple(devices)
