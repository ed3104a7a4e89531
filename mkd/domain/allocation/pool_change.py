"""Validate a new baseline (PUT /v1/pool) against the hardware and what instances hold."""

from __future__ import annotations

import errno
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mkd.domain.allocation.ledger import Holding
from mkd.domain.allocation.llc_ways import format_mask
from mkd.domain.allocation.sizes import format_bytes, is_page_aligned
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile, MemChunk, PoolSpec, PoolState, Topology


@dataclass(frozen=True)
class PoolDiff:
    cpus_added: tuple[int, ...]
    cpus_removed: tuple[int, ...]
    memory_base_changed: bool
    memory_bytes_delta: int
    llc_changed: bool
    devices_added: tuple[str, ...]
    devices_removed: tuple[str, ...]
    created: bool = False  # there was no baseline before

    def is_empty(self) -> bool:
        return not (
            self.created
            or self.cpus_added
            or self.cpus_removed
            or self.memory_base_changed
            or self.memory_bytes_delta
            or self.llc_changed
            or self.devices_added
            or self.devices_removed
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "cpus_added": list(self.cpus_added),
            "cpus_removed": list(self.cpus_removed),
            "memory_base_changed": self.memory_base_changed,
            "memory_bytes_delta": self.memory_bytes_delta,
            "llc_changed": self.llc_changed,
            "devices_added": list(self.devices_added),
            "devices_removed": list(self.devices_removed),
        }


def _labels(holdings: Iterable[Holding]) -> str:
    return ", ".join(holding.label() for holding in holdings)


def _check_members(items: Iterable[object], present: Collection[object], what: str) -> None:
    """Each listed once (EINVAL) and present on this machine (ENODEV)."""
    seen: set[object] = set()
    for item in items:
        if item in seen:
            raise KernelError(errno.EINVAL, f"pool {what} {item} is listed twice")
        seen.add(item)
        if item not in present:
            raise KernelError(errno.ENODEV, f"pool {what} {item} is not present on this machine")


def _check_shape(topology: Topology, new: PoolSpec) -> None:
    _check_members(new.cpus, {cpu.id for cpu in topology.cpus}, "cpu")
    if new.llc_way_mask is not None:
        outside = new.llc_way_mask & ~topology.llc_way_mask
        if new.llc_way_mask <= 0 or outside:
            raise KernelError(
                errno.EINVAL,
                f"pool llc_way_mask {format_mask(new.llc_way_mask)} is not a non-zero subset of the "
                f"hardware's {format_mask(topology.llc_way_mask)}",
            )
    if new.memory_bytes <= 0 or not is_page_aligned(new.memory_bytes):
        raise KernelError(
            errno.EINVAL, f"pool memory_bytes {new.memory_bytes} must be a non-zero multiple of 4 KiB"
        )
    if new.memory_base < 0 or not is_page_aligned(new.memory_base):
        raise KernelError(errno.EINVAL, f"pool memory_base {new.memory_base:#x} is not page aligned")
    _check_members(new.devices, {device.name for device in topology.devices}, "device")


def _check_boot_reservation(topology: Topology, new: PoolSpec) -> None:
    """rfc-v2: the baseline must lie inside the mkkernel_pool= reservation (spec §3.1, mid)."""
    if topology.pool_bytes == 0:
        return  # reservation unknown to the backend: the kernel will judge
    if new.memory_bytes > topology.pool_bytes:
        raise KernelError(
            errno.ERANGE,
            f"pool memory_bytes {format_bytes(new.memory_bytes)} exceeds the "
            f"{format_bytes(topology.pool_bytes)} mkkernel_pool= reservation",
        )
    reservation_end = topology.pool_base + topology.pool_bytes
    if new.memory_base < topology.pool_base or new.memory_base + new.memory_bytes > reservation_end:
        raise KernelError(
            errno.EINVAL,
            f"pool memory {new.memory_base:#x}-{new.memory_base + new.memory_bytes:#x} lies outside the "
            f"mkkernel_pool= reservation {topology.pool_base:#x}-{reservation_end:#x}",
        )


def _check_held(new: PoolSpec, holdings: Sequence[Holding]) -> None:
    """Refuse to take away anything an instance holds, naming the first holder."""
    new_cpus, new_devices = set(new.cpus), set(new.devices)
    new_mask = new.llc_way_mask or 0
    for holding in holdings:
        for cpu in holding.cpus:
            if cpu not in new_cpus:
                raise KernelError(
                    errno.EBUSY, f"cpu {cpu} is held by {holding.label()}; it must stay in the pool"
                )
        held_ways = (holding.llc_way_mask or 0) & ~new_mask
        if held_ways:
            raise KernelError(
                errno.EBUSY,
                f"llc ways {format_mask(held_ways)} are held by {holding.label()}; "
                "they must stay in the pool",
            )
        for device in holding.devices:
            if device not in new_devices:
                raise KernelError(
                    errno.EBUSY, f"device {device} is held by {holding.label()}; it must stay in the pool"
                )
    held_memory = sum(holding.memory_bytes for holding in holdings)
    if new.memory_bytes < held_memory:
        holders = [holding for holding in holdings if holding.memory_bytes]
        raise KernelError(
            errno.EBUSY,
            f"pool memory_bytes {format_bytes(new.memory_bytes)} is less than the "
            f"{format_bytes(held_memory)} held by {_labels(holders)}",
        )


def _check_tree_shrink(shrink: int, pool_state: PoolState, holdings: Sequence[Holding]) -> None:
    """tree: memory-remove names whole chunks, and only free memory can go (spec §3.1, §5.4).

    Chunks are given back newest first; the shrink must be exactly a run of whole chunks.
    """
    if shrink > pool_state.free_memory_bytes:
        holders = [holding for holding in holdings if holding.memory_bytes]
        raise KernelError(
            errno.EBUSY,
            f"shrinking the pool by {format_bytes(shrink)} needs that much free, "
            f"{format_bytes(pool_state.free_memory_bytes)} is free (held by {_labels(holders) or 'nobody'})",
        )
    remaining = shrink
    removed: list[MemChunk] = []
    for chunk in reversed(pool_state.chunks):
        if chunk.bytes <= remaining:
            removed.append(chunk)
            remaining -= chunk.bytes
        if remaining == 0:
            return
    chunks = ", ".join(f"{chunk.base:#x} ({format_bytes(chunk.bytes)})" for chunk in pool_state.chunks)
    raise KernelError(
        errno.EBUSY,
        f"shrinking the pool by {format_bytes(shrink)} is not whole free chunks; the chunks are {chunks}",
    )


def plan_pool_change(
    topology: Topology,
    current: PoolSpec | None,
    new: PoolSpec,
    holdings: Iterable[Holding],
    *,
    profile: KernelProfile,
    pool_state: PoolState | None,
) -> PoolDiff:
    """What changes between `current` and `new`, or the first reason `new` is refused."""
    held = list(holdings)
    _check_shape(topology, new)
    if profile == "rfc-v2":
        _check_boot_reservation(topology, new)
    _check_held(new, held)
    old_cpus = set(current.cpus) if current else set()
    old_devices = set(current.devices) if current else set()
    memory_delta = new.memory_bytes - (current.memory_bytes if current else 0)
    base_changed = current is not None and current.memory_base != new.memory_base
    memory_holders = [holding for holding in held if holding.memory_bytes]
    if profile == "rfc-v2" and current is not None and base_changed and memory_holders:
        # v2 carves instance memory from one range; moving it would pull memory from under them.
        raise KernelError(
            errno.EBUSY,
            f"pool memory_base cannot move from {current.memory_base:#x} to {new.memory_base:#x} while "
            f"{_labels(memory_holders)} hold pool memory",
        )
    if profile == "tree" and memory_delta < 0 and pool_state is not None:
        _check_tree_shrink(-memory_delta, pool_state, held)
    return PoolDiff(
        cpus_added=tuple(cpu for cpu in new.cpus if cpu not in old_cpus),
        cpus_removed=tuple(sorted(old_cpus - set(new.cpus))),
        memory_base_changed=base_changed,
        memory_bytes_delta=memory_delta,
        llc_changed=current is not None and current.llc_way_mask != new.llc_way_mask,
        devices_added=tuple(device for device in new.devices if device not in old_devices),
        devices_removed=tuple(sorted(old_devices - set(new.devices))),
        created=current is None,
    )
