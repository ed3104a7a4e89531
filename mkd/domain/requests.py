"""What a client asks for, before allocation and validation (JSON and device-tree input share it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

# DESIGN "Running": loaders without a command-line limit of their own get this daemon cap (bytes,
# with the NUL).
MAX_CMDLINE_BYTES = 64 * 1024

CpuAffinity = Literal["compact", "spread"]
# DESIGN "Shapes": prefer-local (default) falls back to any node, local insists, interleave spreads.
MemoryPolicy = Literal["prefer-local", "local", "interleave"]


@dataclass(frozen=True)
class ResourceRequest:
    """Explicit resources (cpus, llc_way_mask) or counts to allocate (cpu_count, llc_ways)."""

    cpus: tuple[int, ...] | None = None
    cpu_count: int | None = None
    numa_nodes: tuple[int, ...] | None = None
    cpu_affinity: CpuAffinity = "compact"
    memory_bytes: int = 0
    memory_policy: MemoryPolicy = "prefer-local"
    llc_way_mask: int | None = None
    llc_ways: int | None = None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceRequest:
    name: str
    id: int | None
    resources: ResourceRequest
    origin: str = "json"  # where it came from, for messages: "json", "/instances/web", "fragment@0"


def resource_request_of(resources: dict[str, Any]) -> ResourceRequest:
    """A ResourceRequest from the create body's `resources` as stored (a declared spec's)."""

    def ints(key: str) -> tuple[int, ...] | None:
        value = resources.get(key)
        return tuple(int(v) for v in value) if value is not None else None

    return ResourceRequest(
        cpus=ints("cpus"), cpu_count=resources.get("cpu_count"), numa_nodes=ints("numa_nodes"),
        cpu_affinity=resources.get("cpu_affinity") or "compact",
        memory_bytes=int(resources.get("memory_bytes") or 0),
        memory_policy=resources.get("memory_policy") or "prefer-local",
        llc_way_mask=resources.get("llc_way_mask"), llc_ways=resources.get("llc_ways"),
        devices=tuple(resources.get("devices") or ()),
    )
