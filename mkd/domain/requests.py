"""What a client asks for, before allocation and validation (JSON and device-tree input share it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CpuAffinity = Literal["compact", "spread"]
MemoryPolicy = Literal["local", "interleave"]


@dataclass(frozen=True)
class ResourceRequest:
    """Explicit resources (cpus, llc_way_mask) or counts to allocate (cpu_count, llc_ways)."""

    cpus: tuple[int, ...] | None = None
    cpu_count: int | None = None
    numa_nodes: tuple[int, ...] | None = None
    cpu_affinity: CpuAffinity = "compact"
    memory_bytes: int = 0
    memory_policy: MemoryPolicy = "local"
    llc_way_mask: int | None = None
    llc_ways: int | None = None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class InstanceRequest:
    name: str
    id: int | None
    resources: ResourceRequest
    origin: str = "json"  # where it came from, for messages: "json", "/instances/web", "fragment@0"
