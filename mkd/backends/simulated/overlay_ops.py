"""Overlay ops on the model and their inverses (spec 5.4, 5.3, 3.1, 4).

Each item that changes something is recorded as an OverlayOp, so a failure part-way through
an op keeps what was applied (the kernel does not roll back) and a rollback undoes exactly that.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

__all__ = ["OpContext", "Target", "apply_op", "undo_op"]

from mkd.backends.simulated import hotplug, instance_rules, overlay_items, pool_rules
from mkd.backends.simulated.dt_blob import U64_INVALID, einval
from mkd.backends.simulated.global_pool import PoolChunk
from mkd.backends.simulated.hotplug import MemoryRange
from mkd.backends.simulated.model import InstanceRecord, KernelModel, OverlayOp
from mkd.backends.simulated.overlay_context import OpContext, instance_memory_carve, instance_memory_give
from mkd.backends.simulated.overlay_items import DeviceItem, MemoryItem
from mkd.backends.simulated.states import KEvent, KState, check
from mkd.devicetree.fdt import DtNode
from mkd.errors import KernelError
from mkd.kernel_types import PoolSpec
from mkd.kexec.mem_pool import GenPool

log = logging.getLogger(__name__)

RESOURCES = "/resources"
INSTANCES = "/instances"
INSTANCE_OPS = ("instance-create", "instance-remove")


@dataclass(frozen=True)
class Target:
    """A fragment's resolved target-path; `instance` is set for /instances/<name>."""

    path: str
    instance: str | None = None


def apply_op(ctx: OpContext, target: Target, kind: str, node: DtNode, applied: list[OverlayOp]) -> None:
    """Apply one op node of a fragment; every item that changed something is appended to `applied`."""
    model = ctx.model
    if kind in INSTANCE_OPS:
        if target.path != INSTANCES:
            raise einval(f"{kind} must target /instances, not {target.path}")
        if kind == "instance-create":
            spec = overlay_items.instance_create(node, model, ctx.settings)
            virtio = overlay_items.virtio_devices(node)
            instance_rules.create_tree(model, spec).virtio = virtio
            applied.append(OverlayOp(kind, target.path, instance=spec.name))
        else:
            name = overlay_items.instance_name(node)
            instance_rules.destroy(model, _instance(model, name).id)  # ACTIVE/LOADED: EBUSY
            applied.append(OverlayOp(kind, target.path, instance=name))
        return
    if target.path == INSTANCES:
        raise einval(f"{kind} cannot target /instances; name an instance or /resources")
    items = list(node.children())
    if target.instance is None:
        try:
            for item in items:
                op = _apply_pool_item(ctx, kind, item)
                if op is not None:
                    applied.append(op)
        finally:  # items applied before a failure stay applied
            _refresh_pool_spec(model)
        return
    inst = _instance(model, target.instance)
    check(model.profile, inst.state, KEvent.UPDATE, instance_id=inst.id)  # FAILED: EBUSY
    for item in items:
        applied.append(_apply_instance_item(ctx, inst, kind, item, target.path))


def undo_op(ctx: OpContext, op: OverlayOp) -> None:
    """The inverse of one applied item (rollback, spec 5.4)."""
    model = ctx.model
    if op.kind == "instance-create":
        inst = model.by_name(op.instance or "")
        if inst is None:
            log.warning("multikernel: rollback: instance %s is already gone", op.instance)
            return
        instance_rules.destroy(model, inst.id)  # ACTIVE/LOADED: EBUSY, vector 50
    elif op.kind == "instance-remove" or (op.kind == "memory-add" and op.instance is None):
        log.warning("multikernel: rollback of %s on %s is not supported; skipped", op.kind, op.target)
    elif op.instance is None:
        _undo_pool_item(ctx, op)
        _refresh_pool_spec(model)
    else:
        inst = _instance(model, op.instance)
        check(model.profile, inst.state, KEvent.UPDATE, instance_id=inst.id)
        _undo_instance_item(ctx, inst, op)


def _instance(model: KernelModel, name: str) -> InstanceRecord:
    inst = model.by_name(name)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance named {name}")
    return inst


# -- /resources: the pool ------------------------------------------------------------------------


def _apply_pool_item(ctx: OpContext, kind: str, item: DtNode) -> OverlayOp | None:
    model = ctx.model
    if kind in ("cpu-add", "cpu-remove"):
        cpu = overlay_items.cpu(item)
        changed = _pool_cpu_add(ctx, cpu) if kind == "cpu-add" else _pool_cpu_remove(model, cpu)
        return OverlayOp(kind, RESOURCES, cpu=cpu) if changed else None
    if kind in ("device-add", "device-remove"):
        device = overlay_items.device(item)
        if kind == "device-add":
            changed = _pool_device_add(ctx, device.name)
            if device.alias:  # spec 8.5.1: /aliases of the pool (driver is ignored here)
                model.pool_aliases[device.alias] = device.name
        else:
            changed = _pool_device_remove(model, device.name)
        return OverlayOp(kind, RESOURCES, device=device.name) if changed else None
    memory = overlay_items.memory(item)
    if kind == "memory-add":
        if memory.reg is not None or memory.size is None:
            raise einval(f"{memory.path}: a pool memory-add gives `size`; the pool picks the base")
        chunk = pool_rules.grow_chunk(model, memory.size, node=memory.numa_node, hint=None)
        return OverlayOp(kind, RESOURCES, chunks=[(chunk.base, chunk.size, chunk.node)])
    return OverlayOp(kind, RESOURCES, chunks=[_pool_chunk_remove(model, memory)])


def _undo_pool_item(ctx: OpContext, op: OverlayOp) -> None:
    model = ctx.model
    if op.kind == "cpu-add" and op.cpu is not None:
        _pool_cpu_remove(model, op.cpu)
    elif op.kind == "cpu-remove" and op.cpu is not None:
        _pool_cpu_add(ctx, op.cpu)
    elif op.kind == "device-add" and op.device is not None:
        _pool_device_remove(model, op.device)
    elif op.kind == "device-remove" and op.device is not None:
        _pool_device_add(ctx, op.device)
    else:  # memory-remove: take the same chunk back
        for base, size, node in op.chunks:
            if model.ram is None or node is None or not model.ram.mark_taken(base, size, node):
                raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} cannot return to the pool")
            model.pool.chunks.append(PoolChunk(base, size, node, GenPool(chunks=[(base, size)])))


def _pool_cpu_add(ctx: OpContext, cpu: int) -> bool:
    if cpu in ctx.model.pool_cpus:
        return False  # an ordered set: a duplicate is ignored (spec 4, inferred)
    if cpu == U64_INVALID or cpu >= ctx.settings.cpus or cpu in ctx.settings.offline_cpus:
        raise KernelError(errno.EINVAL, f"CPU {cpu} is not online in the host")  # spec 8.5.5
    ctx.model.pool_cpus.append(cpu)
    return True


def _pool_cpu_remove(model: KernelModel, cpu: int) -> bool:
    if cpu not in model.free_cpus():
        raise KernelError(errno.EBUSY, f"CPU {cpu} is not free in the pool")
    model.pool_cpus.remove(cpu)
    return True


def _pool_device_add(ctx: OpContext, device: str) -> bool:
    if device not in ctx.settings.devices:
        raise KernelError(errno.ENODEV, f"device {device} is not present")
    if device in ctx.model.pool_devices:
        return False  # -EEXIST is tolerated (spec 8.5.4)
    ctx.model.pool_devices.append(device)
    return True


def _pool_device_remove(model: KernelModel, device: str) -> bool:
    if device not in model.free_devices():
        raise KernelError(errno.EBUSY, f"device {device} is not free in the pool")
    model.pool_devices.remove(device)
    return True


def _pool_chunk_remove(model: KernelModel, memory: MemoryItem) -> tuple[int, int, int | None]:
    """mk_pool_mem_shrink: the item must name a whole chunk exactly (spec 3.1)."""
    if memory.reg is None:
        raise einval(f"{memory.path}: a pool memory-remove names its chunk with `reg`")
    base, size = memory.reg
    chunk = next((c for c in model.pool.chunks if (c.base, c.size) == (base, size)), None)
    if chunk is None:
        raise einval(f"{base:#x}+{size:#x} is not a chunk of the pool")
    if not chunk.is_whole_free():
        raise KernelError(errno.EBUSY, f"pool chunk {base:#x}+{size:#x} is in use")
    if len(model.pool.chunks) == 1 and model.pool_cpus:
        # the host park area of the pool's CPUs lives in pool memory (simulator: the last chunk)
        raise KernelError(errno.EBUSY, "removing the last pool chunk would strand the parked CPUs")
    model.pool.chunks.remove(chunk)
    assert model.ram is not None and chunk.node is not None
    model.ram.give_back(chunk.base, chunk.size, chunk.node)
    return chunk.base, chunk.size, chunk.node


def _refresh_pool_spec(model: KernelModel) -> None:
    """Keep the recorded baseline equal to what the pool now holds."""
    previous = model.pool_spec
    pool_rules.record_baseline(
        model,
        PoolSpec(
            cpus=tuple(model.pool_cpus),
            memory_base=model.pool.chunks[0].base if model.pool.chunks else 0,
            memory_bytes=model.pool.total_bytes(),
            llc_way_mask=None if previous is None else previous.llc_way_mask,
            devices=tuple(model.pool_devices),
        ),
    )


# -- /instances/<name>: one instance --------------------------------------------------------------
#
# An ACTIVE target goes through the spawn (hotplug, spec 8.7); any other state is bookkeeping
# (spec 8.6, 8.14 item 2). Instance memory-add ignores the base in both cases.


def _apply_instance_item(ctx: OpContext, inst: InstanceRecord, kind: str, item: DtNode, target: str) -> OverlayOp:
    if kind in ("cpu-add", "cpu-remove"):
        cpu = overlay_items.cpu(item)
        _instance_cpu(ctx, inst, kind, cpu)
        return OverlayOp(kind, target, instance=inst.name, cpu=cpu)
    if kind in ("device-add", "device-remove"):
        device = overlay_items.device(item)
        _instance_device(ctx, inst, kind, device)
        return OverlayOp(kind, target, instance=inst.name, device=device.name)
    memory = overlay_items.memory(item)
    if kind == "memory-remove":
        if memory.reg is None:
            raise einval(f"{memory.path}: memory-remove names a range with `reg`")
        _instance_memory_remove(ctx, inst, MemoryRange(*memory.reg))
        return OverlayOp(kind, target, instance=inst.name, chunks=[(*memory.reg, None)])
    chunks = _instance_memory_add(ctx, inst, memory)
    return OverlayOp(kind, target, instance=inst.name, chunks=[(base, size, None) for base, size in chunks])


def _undo_instance_item(ctx: OpContext, inst: InstanceRecord, op: OverlayOp) -> None:
    inverse = {"cpu-add": "cpu-remove", "cpu-remove": "cpu-add", "device-add": "device-remove"}
    if op.cpu is not None:
        _instance_cpu(ctx, inst, inverse[op.kind], op.cpu)
    elif op.device is not None:
        _instance_device(ctx, inst, inverse.get(op.kind, "device-add"), DeviceItem(op.device))
    elif op.kind == "memory-add":
        for base, size, _ in reversed(op.chunks):
            _instance_memory_remove(ctx, inst, MemoryRange(base, size))
    else:
        for base, size, _ in reversed(op.chunks):
            if inst.state == KState.ACTIVE:
                hotplug.memory_add(ctx, inst, MemoryRange(base, size), None)
            else:
                _instance_memory_take(ctx.model, inst, base, size)


def _instance_cpu(ctx: OpContext, inst: InstanceRecord, kind: str, cpu: int) -> None:
    if inst.state == KState.ACTIVE:
        (hotplug.cpu_add if kind == "cpu-add" else hotplug.cpu_remove)(ctx, inst, cpu)
    elif kind == "cpu-add":
        # spec 4, 8.6.1: the CPU must be free in the pool and map to a logical CPU
        if cpu not in ctx.model.free_cpus() or cpu >= ctx.settings.cpus:
            raise KernelError(errno.EBUSY, f"CPU {cpu} is not free in the pool", instance_id=inst.id)
        inst.cpus.append(cpu)
    else:
        if cpu not in inst.cpus:  # spec 4 "Return": CPUs must belong to the instance
            raise KernelError(errno.EINVAL, f"CPU {cpu} does not belong to {inst.name}", instance_id=inst.id)
        inst.cpus.remove(cpu)  # even the last one (spec 8.7.5): a later start is EINVAL


def _instance_device(ctx: OpContext, inst: InstanceRecord, kind: str, device: DeviceItem) -> None:
    if inst.state == KState.ACTIVE:
        if kind == "device-add":
            hotplug.device_add(ctx, inst, device.name, device.driver)
        else:
            hotplug.device_remove(ctx, inst, device.name)
    elif kind == "device-add":  # `driver` is dropped and `alias` ignored on an instance (8.5.1)
        if device.name not in ctx.model.free_devices():
            raise KernelError(errno.EBUSY, f"device {device.name} is not free in the pool", instance_id=inst.id)
        inst.devices.append(device.name)
    else:
        if device.name not in inst.devices:
            raise KernelError(
                errno.EINVAL, f"device {device.name} does not belong to {inst.name}", instance_id=inst.id
            )
        inst.devices.remove(device.name)


def _instance_memory_add(ctx: OpContext, inst: InstanceRecord, memory: MemoryItem) -> list[tuple[int, int]]:
    base, size = memory.reg if memory.reg is not None else (0, memory.size)
    if size is None:
        raise einval(f"{memory.path}: memory-add needs `reg` or `size`")
    if inst.state == KState.ACTIVE:
        return hotplug.memory_add(ctx, inst, MemoryRange(base, size), memory.numa_node)
    return instance_memory_carve(ctx.model, inst, size, memory.numa_node)


def _instance_memory_remove(ctx: OpContext, inst: InstanceRecord, memory: MemoryRange) -> None:
    if inst.state == KState.ACTIVE:
        hotplug.memory_remove(ctx, inst, memory)
    else:
        instance_memory_give(ctx.model, inst, memory.base, memory.size)


def _instance_memory_take(model: KernelModel, inst: InstanceRecord, base: int, size: int) -> None:
    """Rollback of a memory-remove: the same region comes back from the pool."""
    if not model.pool.alloc_at(base, size):
        raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} is not free in the pool", instance_id=inst.id)
    inst.chunks.append((base, size))
    inst.pool.add_chunk(base, size)
