"""What the raw kernel would have done with a request the daemon refuses (for `detail`)."""

from __future__ import annotations

from mkd.kernel_types import KernelProfile


def owned_cpu_note(profile: KernelProfile) -> str:
    if profile == "rfc-v2":
        return "the raw rfc-v2 kernel would share it between both instances"
    return "the raw tree kernel would create the instance without it"


def cpu_outside_pool_note(profile: KernelProfile) -> str:
    if profile == "rfc-v2":
        return "the raw rfc-v2 kernel would take it from the host anyway"
    return "the raw tree kernel would create the instance without it"


def device_unavailable_note(profile: KernelProfile) -> str:
    if profile == "rfc-v2":
        return "the raw rfc-v2 kernel does not assign devices"
    return "the raw tree kernel would create the instance without it"
