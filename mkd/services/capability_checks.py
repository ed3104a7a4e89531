"""Requests the running kernel would ignore or cannot do safely are refused before any kernel
call (DESIGN "Two kernel generations": nothing the kernel would ignore is accepted silently)."""

from __future__ import annotations

import errno

from mkd.errors import KernelError
from mkd.services.context import Daemon


def refuse_llc_without_capability(
    daemon: Daemon, llc_way_mask: int | None, what: str, *, llc_ways: int | None = None
) -> None:
    """LLC ways (a mask, or a count to allocate) where the kernel has no `llc_way_masks` (rfc-v2,
    and the tree release, which does not read `llc-way-mask`, spec 8.6.3) are EOPNOTSUPP."""
    if (llc_way_mask is None and llc_ways is None) or daemon.host.capabilities.get("llc_way_masks", False):
        return
    asked = f"LLC way mask {llc_way_mask:#x}" if llc_way_mask is not None else f"{llc_ways} LLC ways"
    raise KernelError(
        errno.EOPNOTSUPP,
        f"{what} asks for {asked}, but the {daemon.host.kernel_profile} kernel has no llc_way_masks "
        "capability: it would ignore them (spec 8.6.3; [simulator] llc_way_masks = true models the "
        "kernel that reads the mask)",
    )


def refuse_memory_hot_add(daemon: Daemon, *, active: bool, current_bytes: int, wanted_bytes: int) -> None:
    """Memory hot-add to an ACTIVE instance only with `[daemon] hotplug_memory_active`: the
    release allocates by size after the spawn onlined the range at its own address (spec 8.7.3)."""
    if not active or wanted_bytes <= current_bytes or daemon.settings.daemon.hotplug_memory_active:
        return
    raise KernelError(
        errno.EOPNOTSUPP,
        f"adding {wanted_bytes - current_bytes} bytes of memory to an ACTIVE instance is off: the kernel "
        "allocates the range by size, not at the address the spawn onlined (spec 8.7.3); "
        "[daemon] hotplug_memory_active = true allows it",
    )
