"""Overlay ops on the model and their inverses (spec 5.4, 5.3, 3.1, 4).

Each item that changes something is recorded as an OverlayOp, so a failure part-way through
an op keeps what was applied (the kernel does not roll back) and a rollback undoes exactly that.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from mkd.backends.simulated import instance_rules, overlay_items, pool_rules
from mkd.backends.simulated.dt_blob import U64_INVALID, einval
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.global_pool import PoolChunk
from mkd.backends.simulated.model import InstanceRecord, KernelModel, OverlayOp
from mkd.backends.simulated.overlay_items import MemoryItem
from mkd.backends.simulated.states import KEvent, Outcome, check
from mkd.config import SimulatorSettings
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


@dataclass(frozen=True)
class OpContext:
    model: KernelModel
    settings: SimulatorSettings
    faults: Faults


def apply_op(ctx: OpContext, target: Target, kind: str, node: DtNode, applied: list[OverlayOp]) -> None:
    """Apply one op node of a fragment; every item that changed something is appended to `applied`."""
    model = ctx.model
    if kind in INSTANCE_OPS:
        if target.path != INSTANCES:
            raise einval(f"{kind} must target /instances, not {target.path}")
        if kind == "instance-create":
            spec = overlay_items.instance_create(node, model)
            instance_rules.create_tree(model, spec)
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
    _spawn_acks(ctx, inst, kind)
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
        _spawn_acks(ctx, inst, f"undo of {op.kind}")
        _undo_instance_item(ctx, inst, op)


def _instance(model: KernelModel, name: str) -> InstanceRecord:
    inst = model.by_name(name)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance named {name}")
    return inst


def _spawn_acks(ctx: OpContext, inst: InstanceRecord, what: str) -> None:
    """Instance ops go to a running spawn as MK_RES_* messages and wait for its ACK (spec 5.4)."""
    outcome = check(ctx.model.profile, inst.state, KEvent.UPDATE, instance_id=inst.id)
    if outcome is Outcome.VIA_ACK and not ctx.faults.update_ack:
        raise KernelError(errno.EBUSY, f"spawn kernel NACKed {what}", instance_id=inst.id)


# -- /resources: the pool ------------------------------------------------------------------------


def _apply_pool_item(ctx: OpContext, kind: str, item: DtNode) -> OverlayOp | None:
    model = ctx.model
    if kind in ("cpu-add", "cpu-remove"):
        cpu = overlay_items.cpu(item)
        changed = _pool_cpu_add(ctx, cpu) if kind == "cpu-add" else _pool_cpu_remove(model, cpu)
        return OverlayOp(kind, RESOURCES, cpu=cpu) if changed else None
    if kind in ("device-add", "device-remove"):
        device = overlay_items.device(item)
        changed = _pool_device_add(ctx, device) if kind == "device-add" else _pool_device_remove(model, device)
        return OverlayOp(kind, RESOURCES, device=device) if changed else None
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
    if cpu == U64_INVALID or cpu >= ctx.settings.cpus:
        raise KernelError(errno.ENODEV, f"CPU {cpu} is not present")
    if cpu in ctx.model.pool_cpus:
        return False  # an ordered set: a duplicate is ignored (spec 4, inferred)
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
        return False
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


def _apply_instance_item(ctx: OpContext, inst: InstanceRecord, kind: str, item: DtNode, target: str) -> OverlayOp:
    model = ctx.model
    if kind in ("cpu-add", "cpu-remove"):
        cpu = overlay_items.cpu(item)
        if kind == "cpu-add":
            _instance_cpu_add(ctx, inst, cpu)
        else:
            _instance_cpu_remove(inst, cpu)
        return OverlayOp(kind, target, instance=inst.name, cpu=cpu)
    if kind in ("device-add", "device-remove"):
        device = overlay_items.device(item)
        if kind == "device-add":
            _instance_device_add(model, inst, device)
        else:
            _instance_device_remove(inst, device)
        return OverlayOp(kind, target, instance=inst.name, device=device)
    memory = overlay_items.memory(item)
    if kind == "memory-remove":
        if memory.reg is None:
            raise einval(f"{memory.path}: memory-remove names a range with `reg`")
        _instance_memory_give(model, inst, *memory.reg)
        return OverlayOp(kind, target, instance=inst.name, chunks=[(*memory.reg, None)])
    if memory.reg is not None:
        _instance_memory_take(model, inst, *memory.reg)
        return OverlayOp(kind, target, instance=inst.name, chunks=[(*memory.reg, None)])
    if memory.size is None:
        raise einval(f"{memory.path}: memory-add needs `reg` or `size`")
    chunks = _instance_memory_carve(model, inst, memory.size, memory.numa_node)
    return OverlayOp(kind, target, instance=inst.name, chunks=[(base, size, None) for base, size in chunks])


def _undo_instance_item(ctx: OpContext, inst: InstanceRecord, op: OverlayOp) -> None:
    model = ctx.model
    if op.kind == "cpu-add" and op.cpu is not None:
        _instance_cpu_remove(inst, op.cpu)
    elif op.kind == "cpu-remove" and op.cpu is not None:
        _instance_cpu_add(ctx, inst, op.cpu)
    elif op.kind == "device-add" and op.device is not None:
        _instance_device_remove(inst, op.device)
    elif op.kind == "device-remove" and op.device is not None:
        _instance_device_add(model, inst, op.device)
    else:
        for base, size, _ in reversed(op.chunks):
            if op.kind == "memory-add":
                _instance_memory_give(model, inst, base, size)
            else:
                _instance_memory_take(model, inst, base, size)


def _instance_cpu_add(ctx: OpContext, inst: InstanceRecord, cpu: int) -> None:
    # spec 4: the CPU must be free in the pool and map to a logical CPU
    if cpu not in ctx.model.free_cpus() or cpu >= ctx.settings.cpus:
        raise KernelError(errno.EBUSY, f"CPU {cpu} is not free in the pool", instance_id=inst.id)
    inst.cpus.append(cpu)


def _instance_cpu_remove(inst: InstanceRecord, cpu: int) -> None:
    if cpu not in inst.cpus:  # spec 4 "Return": CPUs must belong to the instance
        raise KernelError(errno.EINVAL, f"CPU {cpu} does not belong to {inst.name}", instance_id=inst.id)
    inst.cpus.remove(cpu)


def _instance_device_add(model: KernelModel, inst: InstanceRecord, device: str) -> None:
    if device not in model.free_devices():
        raise KernelError(errno.EBUSY, f"device {device} is not free in the pool", instance_id=inst.id)
    inst.devices.append(device)


def _instance_device_remove(inst: InstanceRecord, device: str) -> None:
    if device not in inst.devices:
        raise KernelError(errno.EINVAL, f"device {device} does not belong to {inst.name}", instance_id=inst.id)
    inst.devices.remove(device)


def _instance_memory_take(model: KernelModel, inst: InstanceRecord, base: int, size: int) -> None:
    if not model.pool.alloc_at(base, size):
        raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} is not free in the pool", instance_id=inst.id)
    inst.chunks.append((base, size))
    inst.pool.add_chunk(base, size)


def _instance_memory_carve(
    model: KernelModel, inst: InstanceRecord, size: int, node: int | None
) -> list[tuple[int, int]]:
    if size > model.pool.avail_bytes():  # spec 3.2 pre-check
        raise KernelError(errno.ENOMEM, f"{size:#x} bytes exceed what the pool has available", instance_id=inst.id)
    chunks = model.pool.carve(size, inst.numa_node if node is None else node)
    for base, chunk_size in chunks:
        inst.chunks.append((base, chunk_size))
        inst.pool.add_chunk(base, chunk_size)
    return chunks


def _instance_memory_give(model: KernelModel, inst: InstanceRecord, base: int, size: int) -> None:
    """Simulator: an instance memory-remove names one of the instance's chunks exactly."""
    if (base, size) not in inst.chunks:
        raise einval(f"{base:#x}+{size:#x} is not a memory chunk of {inst.name}")
    try:
        inst.pool.remove_chunk(base, size)
    except ValueError as exc:  # a kimage segment or control page lives there
        raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} is in use", instance_id=inst.id) from exc
    inst.chunks.remove((base, size))
    model.pool.free(base, size)
