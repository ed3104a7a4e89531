"""Resource ops on an existing instance (tree overlays on /instances/<name>, spec 5.4).

The ops run in the kernel's order: memory removed, memory added, CPUs removed, CPUs added,
devices removed, devices added. A running spawn must ACK each op. The caller works on a copy of
the model, so a refusal at any op leaves the kernel unchanged.
"""

from __future__ import annotations

import errno

from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.global_pool import PAGE_SIZE
from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.backends.simulated.states import KEvent, Outcome, check
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec
from mkd.kexec.mem_pool import GenPool


class _Ops:
    """Counts ops and asks the running spawn for its ACK before each one."""

    def __init__(self, inst: InstanceRecord, needs_ack: bool, faults: Faults) -> None:
        self.inst = inst
        self.needs_ack = needs_ack
        self.faults = faults
        self.count = 0

    def begin(self, what: str) -> None:
        self.count += 1
        if self.needs_ack and not self.faults.update_ack:
            raise KernelError(errno.EBUSY, f"spawn kernel NACKed {what}", instance_id=self.inst.id)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def _remove_memory(model: KernelModel, inst: InstanceRecord, size: int) -> None:
    """Trim `size` bytes off the newest chunks; memory holding a segment cannot go (EBUSY)."""
    chunks = list(inst.chunks)
    removed: list[tuple[int, int]] = []
    remaining = size
    while remaining:
        base, chunk_size = chunks.pop()
        if chunk_size <= remaining:
            removed.append((base, chunk_size))
            remaining -= chunk_size
        else:
            kept = chunk_size - remaining
            chunks.append((base, kept))
            removed.append((base + kept, remaining))
            remaining = 0
    held = inst.kimage.pool_allocations if inst.kimage is not None else []
    for gone in removed:
        for allocation in held:
            if _overlaps(gone, allocation):
                raise KernelError(
                    errno.EBUSY,
                    f"memory {gone[0]:#x}+{gone[1]:#x} holds a kimage segment",
                    instance_id=inst.id,
                )
    pool = GenPool(chunks=chunks)
    for addr, alloc_size in held:
        pool.alloc_at(addr, alloc_size)
    inst.chunks, inst.pool = chunks, pool
    for base, gone_size in removed:
        model.pool.free(base, gone_size)


def _add_memory(model: KernelModel, inst: InstanceRecord, size: int) -> None:
    if size > model.pool.avail_bytes():
        raise KernelError(errno.ENOMEM, f"{size:#x} bytes exceed what the pool has available", instance_id=inst.id)
    for base, chunk_size in model.pool.carve(size, inst.numa_node):
        inst.chunks.append((base, chunk_size))
        inst.pool.add_chunk(base, chunk_size)


def update(model: KernelModel, spec: InstanceSpec, faults: Faults) -> bool:
    """Apply the difference between the instance and `spec`; returns whether anything changed."""
    inst = model.instances.get(spec.id)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance {spec.id}", instance_id=spec.id)
    outcome = check(model.profile, inst.state, KEvent.UPDATE, instance_id=spec.id)
    if spec.name != inst.name:
        raise KernelError(errno.EINVAL, "an instance cannot be renamed", instance_id=spec.id)
    if spec.memory_bytes % PAGE_SIZE:
        raise KernelError(errno.EINVAL, "memory-bytes must be a page multiple", instance_id=spec.id)
    ops = _Ops(inst, outcome is Outcome.VIA_ACK, faults)
    current = inst.memory_bytes
    if spec.memory_bytes < current:
        ops.begin("memory-remove")
        _remove_memory(model, inst, current - spec.memory_bytes)
    elif spec.memory_bytes > current:
        ops.begin("memory-add")
        _add_memory(model, inst, spec.memory_bytes - current)
    wanted = list(dict.fromkeys(spec.cpus))
    leaving = [cpu for cpu in inst.cpus if cpu not in wanted]
    if leaving:
        ops.begin("cpu-remove")
        inst.cpus = [cpu for cpu in inst.cpus if cpu in wanted]
    joining = [cpu for cpu in wanted if cpu not in inst.cpus]
    if joining:
        ops.begin("cpu-add")
        free = set(model.free_cpus())
        busy = [cpu for cpu in joining if cpu not in free]
        if busy:
            raise KernelError(errno.EBUSY, f"CPUs {busy} are not free in the pool", instance_id=spec.id)
        inst.cpus.extend(joining)
    leaving_devices = [d for d in inst.devices if d not in spec.devices]
    if leaving_devices:
        ops.begin("device-remove")
        inst.devices = [d for d in inst.devices if d in spec.devices]
    joining_devices = [d for d in dict.fromkeys(spec.devices) if d not in inst.devices]
    if joining_devices:
        ops.begin("device-add")
        free_devices = set(model.free_devices())
        busy_devices = [d for d in joining_devices if d not in free_devices]
        if busy_devices:
            raise KernelError(errno.EBUSY, f"devices {busy_devices} are not free in the pool", instance_id=spec.id)
        inst.devices.extend(joining_devices)
    if spec.llc_way_mask != inst.llc_way_mask:
        ops.begin("llc-way-mask")
        _set_llc(model, inst, spec.llc_way_mask)
    return ops.count > 0


def _set_llc(model: KernelModel, inst: InstanceRecord, mask: int | None) -> None:
    """spec 4.1 (documented, errno inferred)."""
    if mask is not None:
        if mask == 0 or model.pool_llc_way_mask is None or mask & ~model.pool_llc_way_mask:
            raise KernelError(errno.EINVAL, f"llc-way-mask {mask:#x} is zero or not a subset of the baseline")
        others = 0
        for other in model.instances.values():
            if other.id != inst.id:
                others |= other.llc_way_mask or 0
        if mask & others:
            raise KernelError(errno.EBUSY, f"llc-way-mask {mask:#x} overlaps another instance's ways")
    inst.llc_way_mask = mask
